//! What cachekit counts, and the snapshots of it: per cache
//! ([`Cache::stats`](crate::Cache::stats)), per cached function
//! (`name_stats()`) and for the process ([`stats()`]). With the `metrics`
//! feature, every counter also goes to the `metrics` facade under the name
//! in `docs/observability.md`.

mod count;
mod per_thread;
mod process;

use std::sync::Arc;

#[cfg(feature = "metrics")]
pub(crate) use count::export;
pub(crate) use count::{Count, HotCount};
pub(crate) use per_thread::PerThread;
pub(crate) use process::register_cache;
pub use process::{BackendStats, EventStats, L1Stats, NamedStats, Stats, count_event, stats};

/// A snapshot of a cache's counters, defined the same way on every backend.
///
/// Each lookup (`get`, `get_or_insert_with`, a call of a cached function)
/// counts exactly one of `l1_hits`, `l2_hits`, `misses` and `coalesced`:
/// their sum is the number of lookups. A lookup that fails at the backend
/// counts in `errors` too (and then as a miss when it runs the loader).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered by the in-process L1 tier.
    pub l1_hits: u64,
    /// Lookups answered by an entry in the backend (read, or, on a backend
    /// with a lock, stored by another process while this one waited).
    pub l2_hits: u64,
    /// Lookups that found no usable entry (absent, expired, unreadable, or
    /// written by another type) and did not share another caller's load:
    /// `get` returned `None`, or the caller ran the loader.
    pub misses: u64,
    /// Lookups that waited for another caller's load of the same key in this
    /// process (single-flight) and returned its value: neither a hit nor a
    /// miss, and no load.
    pub coalesced: u64,
    /// Of `l2_hits`, the entries served stale, past their TTL within their
    /// stale window, while a refresh ran (see [`Revalidate`](crate::Revalidate)).
    pub stale_hits: u64,
    /// Times a loader ran (after a miss, or to refresh an entry).
    pub loads: u64,
    /// Of `loads`, the background refreshes of stale entries, or of fresh
    /// ones picked for early refresh.
    pub refreshes: u64,
    /// Loads whose loader returned an error (an `Err` of a fallible loader
    /// or cached function), which is not stored.
    pub load_errors: u64,
    /// Entries read from the backend that did not decrypt (tampered,
    /// written unencrypted, or under a master key not configured), with
    /// encryption on: each is a miss, or with `fail_closed` an error.
    pub undecryptable: u64,
    /// Backend operations that failed (unavailable, timed out, refused), and
    /// cached calls that ran uncached because the backend could not be built.
    pub errors: u64,
    /// Bytes of entries read from the backend (envelopes included).
    pub bytes_read: u64,
    /// Bytes of entries written to the backend (envelopes included).
    pub bytes_written: u64,
}

impl std::ops::AddAssign for CacheStats {
    fn add_assign(&mut self, other: CacheStats) {
        self.l1_hits += other.l1_hits;
        self.l2_hits += other.l2_hits;
        self.misses += other.misses;
        self.coalesced += other.coalesced;
        self.stale_hits += other.stale_hits;
        self.loads += other.loads;
        self.refreshes += other.refreshes;
        self.load_errors += other.load_errors;
        self.undecryptable += other.undecryptable;
        self.errors += other.errors;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
    }
}

impl CacheStats {
    /// Lookups counted: hits of both tiers, misses and coalesced waits.
    pub fn lookups(&self) -> u64 {
        self.l1_hits + self.l2_hits + self.misses + self.coalesced
    }

    /// The share of lookups answered without a load (L1 and backend hits
    /// and coalesced waits); `None` before the first lookup.
    pub fn hit_ratio(&self) -> Option<f64> {
        let lookups = self.lookups();
        (lookups > 0).then(|| (lookups - self.misses) as f64 / lookups as f64)
    }
}

/// The live counters behind [`CacheStats`], of one cache or of the
/// functions' L1 hits, labelled `cache` = [`Counters::name`].
#[derive(Debug)]
pub(crate) struct Counters {
    /// The cache's namespace, or the cached function's path.
    pub(crate) name: String,
    pub(crate) l1_hits: HotCount,
    pub(crate) l2_hits: Count,
    pub(crate) misses: Count,
    pub(crate) coalesced: Count,
    pub(crate) stale_hits: Count,
    pub(crate) loads: Count,
    pub(crate) refreshes: Count,
    pub(crate) load_errors: Count,
    pub(crate) undecryptable: Count,
    pub(crate) errors: Count,
    pub(crate) bytes_read: Count,
    pub(crate) bytes_written: Count,
}

impl Counters {
    /// Counters at zero for the cache or function `name`.
    pub(crate) fn new(name: &str) -> Arc<Self> {
        let labels = [("cache", name)];
        let count = |metric| Count::new(metric, &labels);
        Arc::new(Counters {
            name: name.to_owned(),
            l1_hits: HotCount::new("cachekit_l1_hits_total", &labels),
            l2_hits: count("cachekit_backend_hits_total"),
            misses: count("cachekit_misses_total"),
            coalesced: count("cachekit_coalesced_total"),
            stale_hits: count("cachekit_stale_hits_total"),
            loads: count("cachekit_loads_total"),
            refreshes: count("cachekit_refreshes_total"),
            load_errors: count("cachekit_load_errors_total"),
            undecryptable: count("cachekit_undecryptable_total"),
            errors: count("cachekit_errors_total"),
            bytes_read: count("cachekit_bytes_read_total"),
            bytes_written: count("cachekit_bytes_written_total"),
        })
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            l1_hits: self.l1_hits.get(),
            l2_hits: self.l2_hits.get(),
            misses: self.misses.get(),
            coalesced: self.coalesced.get(),
            stale_hits: self.stale_hits.get(),
            loads: self.loads.get(),
            refreshes: self.refreshes.get(),
            load_errors: self.load_errors.get(),
            undecryptable: self.undecryptable.get(),
            errors: self.errors.get(),
            bytes_read: self.bytes_read.get(),
            bytes_written: self.bytes_written.get(),
        }
    }
}
