//! The process snapshot, [`stats()`]: every cached function, every live
//! [`Cache`](crate::Cache), every backend in use, the L1 tiers, and the
//! events backends count ([`count_event`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::{CacheStats, Counters};
use crate::BreakerState;
use crate::l1::L1;

/// Counters of the whole process, from [`stats()`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// The sum of [`Stats::caches`].
    pub total: CacheStats,
    /// Each cached function called so far and each [`Cache`](crate::Cache)
    /// alive now, by name; caches of one namespace are summed.
    pub caches: Vec<NamedStats>,
    /// Each backend in use (behind its reliability layer).
    pub backends: Vec<BackendStats>,
    /// Each L1 tier: one per cache with L1, and one per cached function with L1.
    pub l1: Vec<L1Stats>,
    /// Events that backends count, such as memcached servers ejected.
    pub events: Vec<EventStats>,
}

/// The counters of one cache or cached function.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamedStats {
    /// A cache's namespace, or a cached function's path
    /// (`my_crate::users::profile`): the `cache` label of the metrics.
    pub name: String,
    /// Whether it is a cached function.
    pub function: bool,
    /// Its counters.
    pub stats: CacheStats,
}

/// The counters of one backend, kept by its reliability layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// The backend's name (`memcached`, `redis`, `file`, `memory`).
    pub backend: &'static str,
    /// Where its circuit breaker stands.
    pub breaker: BreakerState,
    /// Times its breaker opened.
    pub breaker_opened: u64,
    /// Operations asked of it (each counts once, retries included).
    pub operations: u64,
    /// Operations that failed, by kind (`timeout`, `unavailable`, ...: see
    /// `docs/observability.md`); kinds with none are left out.
    pub errors: Vec<(&'static str, u64)>,
}

/// The size of one L1 tier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct L1Stats {
    /// The cache's namespace, or the cached function's path.
    pub name: String,
    /// Entries held.
    pub entries: u64,
    /// Bytes charged for them.
    pub bytes: u64,
    /// Entries dropped to keep within the bounds.
    pub evictions: u64,
}

/// How often a backend's own event happened (see [`count_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// The metric's name, such as `cachekit_memcached_ejections_total`.
    pub name: &'static str,
    /// Its labels, such as `("server", "10.0.0.1:11211")`.
    pub labels: Vec<(&'static str, String)>,
    /// How often it happened.
    pub count: u64,
}

/// A snapshot of the process's counters: every cached function called so
/// far, every [`Cache`](crate::Cache) alive, every backend in use, the L1
/// tiers and the backends' events. Counts of a cache that was dropped
/// leave it (the exported metrics keep them); those of cached functions
/// never do. What each counter means is on [`CacheStats`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachekit_core::Result<()> {
/// let cache = cachekit_core::Cache::builder().namespace("stats-doc").build()?;
/// cache.get_or_insert_with("k", None, || async { 1 }).await;
/// let stats = cachekit_core::stats();
/// let mine = stats.caches.iter().find(|c| c.name == "stats-doc").unwrap();
/// assert_eq!((mine.stats.misses, mine.stats.loads), (1, 1));
/// # Ok(())
/// # }
/// ```
pub fn stats() -> Stats {
    let mut named: BTreeMap<(String, bool), CacheStats> = BTreeMap::new();
    for (name, stats) in crate::cached_fn::all_stats() {
        *named.entry((name, true)).or_default() += stats;
    }
    for counters in live(&CACHES) {
        *named.entry((counters.name.clone(), false)).or_default() += counters.snapshot();
    }
    let mut total = CacheStats::default();
    let caches = named
        .into_iter()
        .map(|((name, function), stats)| {
            total += stats;
            NamedStats {
                name,
                function,
                stats,
            }
        })
        .collect();
    let mut l1: Vec<L1Stats> = live(&TIERS)
        .iter()
        .map(|(name, tier)| tier.stats(name))
        .collect();
    l1.extend(crate::cached_fn::l1_stats());
    Stats {
        total,
        caches,
        backends: crate::layer::in_use().iter().map(|l| l.stats()).collect(),
        l1,
        events: lock(&EVENTS)
            .iter()
            .map(|((name, labels), &count)| EventStats {
                name,
                labels: labels.clone(),
                count,
            })
            .collect(),
    }
}

impl<V: crate::store::StoreValue> L1<V> {
    /// The tier's size, named `name`.
    pub(crate) fn stats(&self, name: &str) -> L1Stats {
        let (entries, bytes, evictions) = self.size();
        L1Stats {
            name: name.to_owned(),
            entries: entries as u64,
            bytes: bytes as u64,
            evictions,
        }
    }
}

/// Counts one event of a backend's own, for [`stats()`] and, with the
/// `metrics` feature, as the counter `name` with `labels`: a memcached
/// server ejected (`cachekit_memcached_ejections_total`, `server`), a Redis
/// connection made again (`cachekit_redis_reconnects_total`). Name it
/// `cachekit_<backend>_<event>s_total`, after the Prometheus conventions.
/// For rare events: each call takes a lock.
pub fn count_event(name: &'static str, labels: &[(&'static str, &str)]) {
    let owned = labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
    *lock(&EVENTS).entry((name, owned)).or_default() += 1;
    #[cfg(feature = "metrics")]
    metrics::counter!(name, super::export::labels(labels)).increment(1);
}

/// Keeps a cache's counters (and its L1 tier) in the process snapshot
/// while the cache lives.
pub(crate) fn register_cache(counters: &Arc<Counters>, l1: Option<&Arc<L1>>) {
    lock(&CACHES).push(Arc::downgrade(counters));
    if let Some(l1) = l1 {
        l1.export_as(&counters.name);
        lock(&TIERS).push((counters.name.clone(), Arc::downgrade(l1)));
    }
}

/// The live caches' counters.
static CACHES: Mutex<Vec<Weak<Counters>>> = Mutex::new(Vec::new());
/// The live caches' L1 tiers, by the cache's name.
static TIERS: Mutex<Vec<(String, Weak<L1>)>> = Mutex::new(Vec::new());
/// The backends' events, by name and labels.
type EventKey = (&'static str, Vec<(&'static str, String)>);
static EVENTS: Mutex<BTreeMap<EventKey, u64>> = Mutex::new(BTreeMap::new());

/// What a registry of weak references still holds, dropping the rest.
trait Registered {
    type Live;
    fn upgrade(&self) -> Option<Self::Live>;
}

impl Registered for Weak<Counters> {
    type Live = Arc<Counters>;
    fn upgrade(&self) -> Option<Arc<Counters>> {
        Weak::upgrade(self)
    }
}

impl Registered for (String, Weak<L1>) {
    type Live = (String, Arc<L1>);
    fn upgrade(&self) -> Option<(String, Arc<L1>)> {
        Some((self.0.clone(), self.1.upgrade()?))
    }
}

fn live<R: Registered>(registry: &Mutex<Vec<R>>) -> Vec<R::Live> {
    let mut registry = lock(registry);
    let mut alive = Vec::with_capacity(registry.len());
    registry.retain(|entry| match entry.upgrade() {
        Some(live) => {
            alive.push(live);
            true
        }
        None => false,
    });
    alive
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
