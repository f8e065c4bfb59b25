//! Hit and miss counters of a cache.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a cache's counters. Each call of a cache that looks up a
/// value (`get`, `get_or_insert_with`, a cached function) counts one of
/// `l1_hits`, `l2_hits`, `misses` and `coalesced`, the same way on every
/// backend; a lookup that fails at the backend counts in `errors` instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Calls answered by the in-process L1 tier.
    pub l1_hits: u64,
    /// Calls answered by an entry in the backend (read, or, on a backend
    /// with a lock, stored by another process while this one waited).
    pub l2_hits: u64,
    /// Calls that found no usable entry (absent, expired, unreadable, or
    /// written by another type) and did not share another caller's load:
    /// `get` returned `None`, or the caller ran the loader.
    pub misses: u64,
    /// Calls that waited for another caller's load of the same key in this
    /// process (single-flight) and returned its value.
    pub coalesced: u64,
    /// Times a loader ran (each after a miss).
    pub loads: u64,
    /// Backend operations that failed (unavailable, timed out, refused), and
    /// cached calls that ran uncached because the backend could not be built.
    pub errors: u64,
}

/// The live counters behind [`CacheStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            l1_hits: self.l1_hits.load(Ordering::Relaxed),
            l2_hits: self.l2_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
