//! The in-process tier in front of the backend, in its two uses (see
//! [`L1`]); `docs/guide.md` ("L1, the in-process tier") explains both to
//! users.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::store::{Check, Expiry, Found, Store, StoreValue};

/// Limits of the L1 tier. The defaults suit a service process: 10,000
/// entries, 64 MiB, and copies kept at most 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Config {
    /// Most entries held.
    pub max_entries: usize,
    /// Most bytes held (keys, values and a small per-entry overhead). The
    /// bytes are split over up to 16 shards, so one copy may take a
    /// sixteenth of them, less its key and 64 bytes (just under 4 MiB of
    /// the default 64 MiB); a larger result is not kept in process and is
    /// read from the backend.
    pub max_bytes: usize,
    /// Longest an in-process copy lives, whatever the entry's TTL. This bounds
    /// how long a process can serve a value that another process has since
    /// deleted or replaced in a shared backend.
    pub max_ttl: Duration,
}

/// Builder-style setters, one per field.
impl L1Config {
    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets [`max_ttl`](Self::max_ttl).
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }
}

impl Default for L1Config {
    fn default() -> Self {
        L1Config {
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_ttl: Duration::from_secs(60),
        }
    }
}

/// Recent entries in process: a [`Cache`](crate::Cache) keeps verified
/// payloads (envelope stripped) under backend keys; a cached function keeps
/// its decoded results under its serialized arguments (an `L1` of its own,
/// see `cached_fn::kept`), so that its hit builds no backend key and
/// decodes nothing. Two kinds, because they hold different things: bytes
/// any type may decode, against one function's values.
///
/// A copy lives until the earliest of: `max_ttl`, the TTL it was written
/// with, the expiry recorded in the entry's envelope by whichever process
/// wrote it, and a notice from the backend that the entry changed elsewhere
/// ([`L1::invalidate`]). So an L1 copy never outlives its L2 entry.
///
/// A copy read from the backend before a notice must not be kept after it:
/// a filler takes a [`Ticket`] before its backend call and fills with it;
/// the fill does not stay if any notice came in between (see [`L1::fill`]).
#[derive(Debug)]
pub(crate) struct L1<V: StoreValue = Bytes> {
    store: Store<[u8], V>,
    max_ttl: Duration,
    /// How many notices were applied; a fill keeps its copy only if none
    /// came since its ticket. Cached functions' L1s share one count.
    notices: Arc<AtomicU64>,
    /// Where its size is exported, once it has a name ([`L1::export_as`]).
    #[cfg(feature = "metrics")]
    exported: std::sync::OnceLock<crate::stats::export::L1Gauges>,
}

/// What [`L1::ticket`] gives and [`L1::fill`] takes: the notices applied
/// when a backend read or write began.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl<V: StoreValue> L1<V> {
    pub(crate) fn new(config: L1Config) -> Self {
        Self::sharing_notices(config, Arc::default())
    }

    /// An `L1` whose fills a notice counted in `notices` stops, whichever
    /// tier sharing the count it was applied to.
    pub(crate) fn sharing_notices(config: L1Config, notices: Arc<AtomicU64>) -> Self {
        L1 {
            store: Store::new(config.max_entries, config.max_bytes),
            max_ttl: config.max_ttl,
            notices,
            #[cfg(feature = "metrics")]
            exported: std::sync::OnceLock::new(),
        }
    }

    /// With the `metrics` feature, exports this tier's size under the
    /// label `cache`, updated at every change a write, a removal or an
    /// eviction makes (an expired copy leaves the count when a lookup finds
    /// it or it is pushed out). Without it, does nothing.
    pub(crate) fn export_as(&self, cache: &str) {
        #[cfg(feature = "metrics")]
        {
            let gauges = self
                .exported
                .get_or_init(|| crate::stats::export::L1Gauges::new(cache));
            gauges.report(self.size());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = cache;
    }

    /// Reports the size after a change, if exported.
    #[inline]
    fn changed(&self) {
        #[cfg(feature = "metrics")]
        if let Some(gauges) = self.exported.get() {
            gauges.report(self.size());
        }
    }

    /// Taken before the backend call whose result is to be kept.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.notices.load(Ordering::SeqCst))
    }

    /// Keeps `value`, read or written with the backend since `ticket`, as
    /// [`L1::insert`] does, unless a notice came since: the copy may be
    /// older than the change the notice announced. Conservative: a notice
    /// about any key drops the fills in flight for every key.
    pub(crate) fn fill(
        &self,
        ticket: Ticket,
        key: impl AsRef<[u8]>,
        value: V,
        expires_at: Option<SystemTime>,
    ) {
        let key = key.as_ref();
        if self.notices.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        self.insert(key, value, expires_at);
        // A notice between the check and the insert has removed nothing yet
        // or removed before the insert: check again after it.
        if self.notices.load(Ordering::SeqCst) != ticket.0 {
            self.store.remove(key);
        }
    }

    /// Drops the copy under `key` on a notice that its entry changed
    /// elsewhere, and the fills in flight (see [`L1::fill`]).
    pub(crate) fn invalidate(&self, key: impl AsRef<[u8]>) {
        self.notices.fetch_add(1, Ordering::SeqCst);
        self.store.remove(key.as_ref());
        self.changed();
    }

    /// Drops every copy on a notice that any entry may have changed.
    pub(crate) fn invalidate_all(&self) {
        self.notices.fetch_add(1, Ordering::SeqCst);
        self.store.clear();
        self.changed();
    }

    #[inline]
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Option<V> {
        let key = key.as_ref();
        self.store.get(key).map(|(payload, _)| payload)
    }

    /// The copy under `key`, if `check` takes it (see [`Store::get_if`]).
    #[inline]
    pub(crate) fn get_if(&self, key: &[u8], check: impl FnOnce(&V) -> Check) -> Option<V> {
        match self.store.get_if(key, check) {
            Found::Taken(value, _) => Some(value),
            Found::Nothing => None,
            Found::Removed => {
                self.changed();
                None
            }
        }
    }

    /// This tier, counting its hits (see [`L1::hits`]).
    pub(crate) fn counting_hits(mut self) -> Self {
        self.store = self.store.counting_hits();
        self
    }

    /// Copies taken by [`L1::get`] and [`L1::get_if`] so far, if counted.
    pub(crate) fn hits(&self) -> u64 {
        self.store.hits()
    }

    /// Keeps `value` until the earliest of `max_ttl` and `expires_at`; an
    /// entry already expired is not kept. Only for a value that comes from
    /// no backend call; others are kept with [`L1::fill`].
    fn insert(&self, key: impl AsRef<[u8]>, mut value: V, expires_at: Option<SystemTime>) {
        let key = key.as_ref();
        let ttl = match expires_at {
            None => self.max_ttl,
            Some(at) => match at.duration_since(SystemTime::now()) {
                Ok(left) if !left.is_zero() => left.min(self.max_ttl),
                _ => {
                    self.store.remove(key);
                    return;
                }
            },
        };
        let ttl = match value.expiry(ttl) {
            Expiry::ByStore => Some(ttl),
            Expiry::Itself => None,
            Expiry::Over => {
                self.store.remove(key);
                return;
            }
        };
        self.store.insert(key, value, ttl);
        self.changed();
    }

    pub(crate) fn remove(&self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        self.store.remove(key);
        self.changed();
    }

    /// Drops every copy.
    pub(crate) fn clear(&self) {
        self.store.clear();
        self.changed();
    }

    /// Entries held, bytes charged for them, and entries evicted so far.
    pub(crate) fn size(&self) -> (usize, usize, u64) {
        (self.store.len(), self.store.bytes(), self.store.evictions())
    }

    pub(crate) fn contains(&self, key: impl AsRef<[u8]>) -> bool {
        let key = key.as_ref();
        self.store.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn copy_never_outlives_its_l2_expiry_or_max_ttl() {
        let l1 = L1::new(L1Config {
            max_ttl: Duration::from_secs(60),
            ..L1Config::default()
        });
        let soon = SystemTime::now() + Duration::from_secs(5);
        l1.insert(b"short", Bytes::from_static(b"v"), Some(soon));
        l1.insert(b"long", Bytes::from_static(b"v"), None);
        l1.insert(
            b"gone",
            Bytes::from_static(b"v"),
            Some(SystemTime::now() - Duration::from_secs(1)),
        );
        assert!(l1.contains(b"short") && l1.contains(b"long"));
        assert!(!l1.contains(b"gone"), "an expired entry is not kept");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            l1.get(b"short").is_none(),
            "L1 copy must not outlive the L2 entry"
        );
        assert!(l1.get(b"long").is_some());
        tokio::time::advance(Duration::from_secs(55)).await;
        assert!(l1.get(b"long").is_none(), "max_ttl bounds every copy");
    }

    #[test]
    fn a_fill_that_began_before_a_notice_is_not_kept() {
        let l1: L1 = L1::new(L1Config::default());
        let value = Bytes::from_static(b"old");
        let before = l1.ticket();
        l1.invalidate(b"other");
        l1.fill(before, b"k", value.clone(), None);
        assert!(!l1.contains(b"k"), "read before a notice, kept after it");
        l1.fill(l1.ticket(), b"k", value, None);
        assert!(l1.contains(b"k"), "a fill with no notice since is kept");
        l1.invalidate(b"k");
        assert!(!l1.contains(b"k"), "a notice drops the copy");
    }
}
