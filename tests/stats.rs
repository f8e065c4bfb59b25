//! One scenario, counted the same on every backend: in-process memory, a
//! real memcached, a real redis-server and a directory. Each runs it
//! through a `Cache` with L1 (and a second cache over the same backend),
//! a `Cache` without L1, and two `#[cache]` functions (with and without
//! L1, re-pointed at the backend by `scoped_backend`): a miss and its load,
//! an L1 hit, a backend hit, a `get` of an absent key, twenty concurrent
//! callers of one slow key (one load, nineteen coalesced waiters), and a
//! fallible loader's `Err`. The counters must be the hand-computed ones,
//! and identical on the four backends, whether the backend has a lock
//! (memory, redis, file: the load runs under it) or not (memcached).
//! Then `cachekit::stats()` must list every cache, both functions and the
//! four backends, with `total` the sum of its caches.
//!
//! One test drives everything in order: cached functions and scopes are
//! the process's, and the process snapshot is checked at the end.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cachekit::backends::file::{FileBackend, FileBackendConfig};
use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::backends::redis::{RedisBackend, RedisBackendConfig};
use cachekit::testing::scoped_backend;
use cachekit::{Backend, BreakerState, Cache, CacheStats, ConfigSource, L1Config, cache};
use cachekit_core::backend::testkit::{ServerKind, ServerProcess};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    name: String,
}

fn item(id: u64) -> Item {
    Item {
        id,
        name: format!("item {id}"),
    }
}

/// Concurrent callers of the slow key.
const CALLERS: u64 = 20;
/// The id the slow loads load.
const HOT: u64 = 7;
/// The id whose load fails.
const FAILING: u64 = 13;
/// Longest wait for anything the test waits for: a task, the callers.
const BOUND: Duration = Duration::from_secs(60);

/// The operations asked so far of the one backend named `backend` in use
/// (counted by its reliability layer once each operation has answered).
fn operations(backend: &str) -> u64 {
    let stats = cachekit::stats();
    let mut found = stats.backends.iter().filter(|b| b.backend == backend);
    let one = found.next().unwrap_or_else(|| panic!("{backend}: in use"));
    assert!(found.next().is_none(), "one {backend} backend in use");
    one.operations
}

/// Where the slow load waits: until `target` operations of `backend` have
/// answered, that is until every other caller has read the key (and found
/// nothing), and so waits on this load instead of arriving after it.
#[derive(Debug, Clone, Copy)]
struct Gate {
    backend: &'static str,
    target: u64,
}

impl Gate {
    /// The gate of a slow key loaded by the cache over `backend` (with a
    /// lock or not), opened by the reads of [`CALLERS`] callers. Each caller
    /// reads the key once; the leader, on a backend with a lock, also takes
    /// the lock and reads the key again before it loads. Read before the
    /// callers start.
    fn new(backend: &'static str, lock: bool) -> Gate {
        let leader_extra = if lock { 2 } else { 0 };
        Gate {
            backend,
            target: operations(backend) + CALLERS + leader_extra,
        }
    }

    /// Waits (bounded) for the other callers. Once a caller's read has
    /// answered, it joins the load in flight without waiting on anything
    /// else; the pause after covers the few instructions in between.
    async fn wait(self) {
        let mut waited = Duration::ZERO;
        while operations(self.backend) < self.target && waited < BOUND {
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += Duration::from_millis(5);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gate of the cached functions' slow loads, set before their callers start.
static FN_GATE: Mutex<Option<Gate>> = Mutex::new(None);
/// Loads of the cached functions.
static FN_LOADS: AtomicU64 = AtomicU64::new(0);

/// The body of both cached functions.
async fn load_fn(id: u64) -> Result<Item, String> {
    FN_LOADS.fetch_add(1, Ordering::SeqCst);
    if id == FAILING {
        return Err(format!("item {id} cannot be loaded"));
    }
    if id == HOT {
        let gate = *FN_GATE.lock().unwrap_or_else(PoisonError::into_inner);
        gate.expect("the gate is set before the slow calls")
            .wait()
            .await;
    }
    Ok(item(id))
}

#[cache(namespace = "stats-fn")]
async fn kept(id: u64) -> Result<Item, String> {
    load_fn(id).await
}

#[cache(namespace = "stats-fn", l1 = false)]
async fn unkept(id: u64) -> Result<Item, String> {
    load_fn(id).await
}

/// Runs `call` from [`CALLERS`] tasks at once and checks that each got `expected`.
async fn concurrently<F, Fut>(call: F, expected: &Item)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Item> + Send + 'static,
{
    let tasks: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(call())).collect();
    for task in tasks {
        let value = tokio::time::timeout(BOUND, task)
            .await
            .expect("a caller of the slow key finished in time")
            .expect("a caller of the slow key did not panic");
        assert_eq!(&value, expected);
    }
}

/// [`CALLERS`] concurrent calls of the cached function `function` on the
/// slow key, over the backend `name`: one load.
async fn slow_calls<F, Fut>(name: &'static str, lock: bool, function: F)
where
    F: Fn(u64) -> Fut + Copy,
    Fut: Future<Output = Result<Item, String>> + Send + 'static,
{
    *FN_GATE.lock().unwrap() = Some(Gate::new(name, lock));
    let before = FN_LOADS.load(Ordering::SeqCst);
    let call = || {
        let called = function(HOT);
        async move { called.await.expect("the slow load succeeds") }
    };
    concurrently(call, &item(HOT)).await;
    assert_eq!(
        FN_LOADS.load(Ordering::SeqCst),
        before + 1,
        "{name}: one slow load"
    );
}

/// A cache over `backend` in `namespace`, with L1 or without.
fn cache_over(backend: &Arc<dyn Backend>, namespace: &str, l1: bool) -> Cache {
    let builder = Cache::builder()
        .shared_backend(Arc::clone(backend))
        .namespace(namespace)
        .config(ConfigSource::defaults_only());
    let builder = if l1 {
        builder.l1(L1Config::default())
    } else {
        builder.without_l1()
    };
    builder.build().expect("a valid cache")
}

/// What one backend counted.
#[derive(Debug, Clone, PartialEq)]
struct Counted {
    /// The cache with L1.
    with_l1: CacheStats,
    /// The second cache over the backend, in the same namespace.
    reader: CacheStats,
    /// The cache without L1.
    without_l1: CacheStats,
    /// `kept` (L1) and `unkept` (no L1), in the scope of the backend.
    kept: CacheStats,
    unkept: CacheStats,
    /// Sizes of the entries, read from the backend past cachekit: item 1
    /// and the hot item, of the caches and of the functions.
    entry: u64,
    hot_entry: u64,
    fn_entry: u64,
    fn_hot_entry: u64,
}

/// The caches kept alive until the process snapshot is checked.
struct Alive {
    caches: Vec<Cache>,
}

/// The scenario on `backend` (named `name`); the caches stay in `kept_alive`.
async fn scenario(
    name: &'static str,
    backend: Arc<dyn Backend>,
    kept_alive: &mut Alive,
) -> Counted {
    assert_eq!(backend.name(), name);
    let lock = backend.capabilities().lock;
    let with_l1 = cache_over(&backend, "stats-l1", true);
    let reader = cache_over(&backend, "stats-l1", true);
    let without_l1 = cache_over(&backend, "stats-plain", false);
    let loads = Arc::new(AtomicU64::new(0));

    for cache in [&with_l1, &without_l1] {
        let loaded = || {
            let loads = Arc::clone(&loads);
            move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                item(1)
            }
        };
        let before = loads.load(Ordering::SeqCst);
        // A miss, and its load.
        assert_eq!(cache.get_or_insert_with("a", None, loaded()).await, item(1));
        // An L1 hit, or with no L1 a backend hit.
        assert_eq!(cache.get_or_insert_with("a", None, loaded()).await, item(1));
        assert_eq!(loads.load(Ordering::SeqCst), before + 1, "{name}: one load");
        // A miss of `get`.
        assert_eq!(cache.get::<Item>("absent").await.unwrap(), None);
        // One slow load, shared by every caller.
        let gate = Gate::new(name, lock);
        let before = loads.load(Ordering::SeqCst);
        let call = || {
            let (cache, loads) = (cache.clone(), Arc::clone(&loads));
            async move {
                let load = || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    gate.wait().await;
                    item(HOT)
                };
                cache.get_or_insert_with("hot", None, load).await
            }
        };
        concurrently(call, &item(HOT)).await;
        assert_eq!(
            loads.load(Ordering::SeqCst),
            before + 1,
            "{name}: one slow load"
        );
    }
    // A backend hit of a second cache (its L1 is empty).
    assert_eq!(reader.get::<Item>("a").await.unwrap(), Some(item(1)));

    // The cached functions, re-pointed at the backend.
    let scope = scoped_backend(Arc::clone(&backend));
    let before = FN_LOADS.load(Ordering::SeqCst);
    assert_eq!(kept(1).await, Ok(item(1))); // a miss
    assert_eq!(kept(1).await, Ok(item(1))); // an L1 hit
    assert_eq!(unkept(1).await, Ok(item(1))); // a miss
    assert_eq!(unkept(1).await, Ok(item(1))); // a backend hit
    assert_eq!(
        FN_LOADS.load(Ordering::SeqCst),
        before + 2,
        "{name}: loaded once each"
    );
    slow_calls(name, lock, kept).await;
    slow_calls(name, lock, unkept).await;
    // Failing loads last: on a backend with a lock, the lock of a failed
    // load is released by a task of its own, an operation that would
    // otherwise be counted while a gate counts the callers' reads.
    let failed = Err(format!("item {FAILING} cannot be loaded"));
    assert_eq!(kept(FAILING).await, failed);
    assert_eq!(unkept(FAILING).await, failed);
    let (kept_stats, unkept_stats) = (kept_stats(), unkept_stats());
    drop(scope);

    for cache in [&with_l1, &without_l1] {
        let before = loads.load(Ordering::SeqCst);
        let failing = || async { Err::<Item, _>(format!("item {FAILING} cannot be loaded")) };
        let result = cache.try_get_or_insert_with("failing", None, failing).await;
        assert_eq!(result, failed);
        assert_eq!(
            loads.load(Ordering::SeqCst),
            before,
            "{name}: not this loader"
        );
    }

    // The entries' sizes, read past cachekit.
    let size = |key: String| {
        let backend = Arc::clone(&backend);
        async move {
            let entry = backend.get(&key).await.unwrap();
            entry
                .unwrap_or_else(|| panic!("{name}: {key} stored"))
                .len() as u64
        }
    };
    let counted = Counted {
        with_l1: with_l1.stats(),
        reader: reader.stats(),
        without_l1: without_l1.stats(),
        kept: kept_stats,
        unkept: unkept_stats,
        entry: size(with_l1.backend_key("a")).await,
        hot_entry: size(with_l1.backend_key("hot")).await,
        fn_entry: size("stats-fn:kept:01".into()).await,
        fn_hot_entry: size(format!("stats-fn:kept:{HOT:02x}")).await,
    };
    assert_eq!(
        size(without_l1.backend_key("a")).await,
        counted.entry,
        "{name}: one entry's size in both namespaces"
    );
    kept_alive.caches.extend([with_l1, reader, without_l1]);
    counted
}

/// Counters with the given counts, no errors and no bytes.
fn counts(
    l1_hits: u64,
    l2_hits: u64,
    misses: u64,
    coalesced: u64,
    loads: u64,
    load_errors: u64,
) -> CacheStats {
    // `CacheStats` is non-exhaustive: set field by field.
    let mut stats = CacheStats::default();
    stats.l1_hits = l1_hits;
    stats.l2_hits = l2_hits;
    stats.misses = misses;
    stats.coalesced = coalesced;
    stats.loads = loads;
    stats.load_errors = load_errors;
    stats
}

/// `stats` without its bytes, and the bytes apart.
fn split(mut stats: CacheStats) -> (CacheStats, (u64, u64)) {
    let bytes = (stats.bytes_read, stats.bytes_written);
    stats.bytes_read = 0;
    stats.bytes_written = 0;
    (stats, bytes)
}

/// Checks what one backend counted against the hand-computed counts.
fn check(name: &str, counted: &Counted) {
    let waiters = CALLERS - 1;
    // with L1: "a" missed and loaded, then an L1 hit; "absent", "hot" and
    // "failing" missed; the slow key loaded once, its other callers
    // coalesced; "failing" loaded and failed.
    let (with_l1, bytes) = split(counted.with_l1);
    assert_eq!(with_l1, counts(1, 0, 4, waiters, 3, 1), "{name}: with L1");
    // Wrote "a" and "hot"; read nothing: every backend read found nothing.
    let written = counted.entry + counted.hot_entry;
    assert_eq!(bytes, (0, written), "{name}: with L1, bytes");
    let (reader, bytes) = split(counted.reader);
    assert_eq!(reader, counts(0, 1, 0, 0, 0, 0), "{name}: reader");
    assert_eq!(bytes, (counted.entry, 0), "{name}: reader, bytes");
    // Without L1, the second lookup of "a" is a backend hit.
    let (without_l1, bytes) = split(counted.without_l1);
    assert_eq!(
        without_l1,
        counts(0, 1, 4, waiters, 3, 1),
        "{name}: without L1"
    );
    assert_eq!(bytes, (counted.entry, written), "{name}: without L1, bytes");
    // The functions: the same but for `get`, which they have not.
    let fn_written = counted.fn_entry + counted.fn_hot_entry;
    let (kept, bytes) = split(counted.kept);
    assert_eq!(kept, counts(1, 0, 3, waiters, 3, 1), "{name}: kept");
    assert_eq!(bytes, (0, fn_written), "{name}: kept, bytes");
    let (unkept, bytes) = split(counted.unkept);
    assert_eq!(unkept, counts(0, 1, 3, waiters, 3, 1), "{name}: unkept");
    assert_eq!(
        bytes,
        (counted.fn_entry, fn_written),
        "{name}: unkept, bytes"
    );
    assert!(counted.entry > 0 && counted.hot_entry > 0 && counted.fn_entry > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_counts_alike() {
    let memcached_server = ServerProcess::start(ServerKind::Memcached);
    let redis_server = ServerProcess::start(ServerKind::Redis);
    let dir = tempfile::tempdir().unwrap();
    let memcached = MemcachedBackendConfig::default().servers([memcached_server.address()]);
    let redis = RedisBackendConfig::default().url(format!("redis://{}/0", redis_server.address()));
    let backends: [(&'static str, Arc<dyn Backend>); 4] = [
        ("memory", Arc::new(cachekit::MemoryBackend::new())),
        (
            "memcached",
            Arc::new(MemcachedBackend::new(memcached).unwrap()),
        ),
        ("redis", Arc::new(RedisBackend::new(redis).unwrap())),
        (
            "file",
            Arc::new(FileBackend::new(FileBackendConfig::default().cache_dir(dir.path())).unwrap()),
        ),
    ];
    let locks: Vec<bool> = backends
        .iter()
        .map(|(_, b)| b.capabilities().lock)
        .collect();
    assert_eq!(
        locks,
        [true, false, true, true],
        "the waiters are compared on backends with a lock and without"
    );

    let mut kept_alive = Alive { caches: Vec::new() };
    let mut seen = Vec::new();
    for (name, backend) in &backends {
        let counted = scenario(name, Arc::clone(backend), &mut kept_alive).await;
        eprintln!("{name}: {counted:#?}");
        check(name, &counted);
        seen.push((*name, counted));
    }
    // Identical everywhere, bytes included: every backend is handed the
    // same envelopes and hands them back unchanged.
    for (name, counted) in &seen[1..] {
        assert_eq!(counted, &seen[0].1, "{name} counts as {} does", seen[0].0);
    }

    // The process snapshot.
    let stats = cachekit::stats();
    eprintln!("{stats:#?}");
    let named = |name: &str, function: bool| {
        let found: Vec<_> = stats.caches.iter().filter(|c| c.name == name).collect();
        assert_eq!(found.len(), 1, "{name} listed once: {:?}", stats.caches);
        assert_eq!(found[0].function, function, "{name}: a function or not");
        found[0].stats
    };
    let sum = |each: fn(&Counted) -> CacheStats| {
        let mut sum = CacheStats::default();
        for (_, counted) in &seen {
            sum += each(counted);
        }
        sum
    };
    // Caches of one namespace are summed: the four backends' and, in
    // `stats-l1`, the reader's too.
    let mut l1_namespace = sum(|c| c.with_l1);
    l1_namespace += sum(|c| c.reader);
    assert_eq!(named("stats-l1", false), l1_namespace);
    assert_eq!(named("stats-plain", false), sum(|c| c.without_l1));
    // A function's counters in the process snapshot are all its calls'
    // since the process began, the scopes' included.
    assert_eq!(named("stats::kept", true), sum(|c| c.kept));
    assert_eq!(named("stats::unkept", true), sum(|c| c.unkept));
    assert_eq!(stats.caches.len(), 4, "no other cache: {:?}", stats.caches);
    let mut total = CacheStats::default();
    for cache in &stats.caches {
        total += cache.stats;
    }
    assert_eq!(stats.total, total, "total: the sum of the caches");

    for (name, _) in &backends {
        let found: Vec<_> = stats
            .backends
            .iter()
            .filter(|b| b.backend == *name)
            .collect();
        assert_eq!(found.len(), 1, "{name} in use once: {:?}", stats.backends);
        let backend = found[0];
        assert!(backend.operations > 0, "{name}: {backend:?}");
        assert_eq!(backend.breaker, BreakerState::Closed, "{name}: {backend:?}");
        assert_eq!(backend.breaker_opened, 0, "{name}: {backend:?}");
        assert!(backend.errors.is_empty(), "{name}: {backend:?}");
    }
    // An L1 tier per cache with one (the four backends' `stats-l1` and
    // their readers), and one per cached function that keeps copies, named
    // by its path (empty now: each scope's end dropped its copies).
    let tiers = stats.l1.iter().filter(|t| t.name == "stats-l1").count();
    assert_eq!(tiers, 8, "{:?}", stats.l1);
    assert!(
        stats.l1.iter().any(|t| t.name == "stats::kept"),
        "{:?}",
        stats.l1
    );
    assert!(
        !stats.l1.iter().any(|t| t.name == "stats::unkept"),
        "`l1 = false` keeps no tier: {:?}",
        stats.l1
    );
    drop(kept_alive);
}
