//! The `Cache` handle over the in-memory backend: typed access, corrupt
//! entries, key safety, L1, single-flight, locks, capability checks and
//! degradation when the backend fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit_core::ConfigSource;
use cachekit_core::ReliabilityLayer;
use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::{Fault, FaultyBackend, PlainBackend};
use cachekit_core::{
    Backend, Cache, Capability, ConfigOrigin, Error, KeyTtl, L1Config, MemoryBackend,
    ReliabilityConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

fn cache_over(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .shared_backend(backend)
        .namespace("test")
        .config(ConfigSource::defaults_only())
        .build()
        .expect("valid cache")
}

#[tokio::test]
async fn typed_round_trip_and_delete() {
    let cache = cache_over(Arc::new(MemoryBackend::new()));
    let ada = Profile {
        id: 1,
        name: "Ada".into(),
    };
    assert_eq!(cache.get::<Profile>("p1").await.unwrap(), None);
    cache.set("p1", &ada, None).await.unwrap();
    assert_eq!(cache.get::<Profile>("p1").await.unwrap(), Some(ada));
    assert!(cache.exists("p1").await.unwrap());
    assert!(cache.delete("p1").await.unwrap());
    assert_eq!(cache.get::<Profile>("p1").await.unwrap(), None);
    assert!(!cache.exists("p1").await.unwrap());
}

#[tokio::test]
async fn corrupt_and_foreign_entries_are_misses() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = cache_over(backend.clone());
    let key = cache.backend_key("p");
    backend
        .set(
            &key,
            Bytes::from_static(b"\x00garbage from another program"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get::<Profile>("p").await.unwrap(),
        None,
        "garbage is a miss"
    );
    let loads = AtomicUsize::new(0);
    let value = cache
        .get_or_insert_with("p", None, || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Profile {
                id: 2,
                name: "Bo".into(),
            }
        })
        .await;
    assert_eq!(value.id, 2);
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "a corrupt entry runs the loader"
    );
    assert_eq!(
        cache.get::<Profile>("p").await.unwrap(),
        Some(value),
        "and is replaced"
    );

    cache.set("n", &5u64, None).await.unwrap();
    assert_eq!(
        cache.get::<Profile>("n").await.unwrap(),
        None,
        "another type is a miss"
    );
    let stats = cache.stats();
    assert!(stats.misses >= 2, "{stats:?}");
}

#[tokio::test]
async fn hostile_keys_reach_the_backend_safe_and_distinct() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = cache_over(backend.clone());
    let long = "k".repeat(1000);
    let keys = ["a b", "a\r\nset x 0 0 1\r\n", long.as_str(), "ключ", "a_b"];
    for (i, key) in keys.iter().enumerate() {
        cache.set(key, &i, None).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(cache.get::<usize>(key).await.unwrap(), Some(i), "{key:?}");
        let wire = cache.backend_key(key);
        assert!(
            wire.len() <= 250 && wire.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{wire:?}"
        );
    }
    assert_eq!(backend.len(), keys.len());
}

#[tokio::test]
async fn l1_serves_repeat_reads_and_is_bounded() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = Cache::builder()
        .shared_backend(backend.clone())
        .namespace("l1")
        .l1(L1Config {
            max_entries: 2,
            ..L1Config::default()
        })
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    for key in ["a", "b", "c"] {
        cache.set(key, &key, None).await.unwrap();
    }
    // L1 holds at most two (which two is its eviction policy's choice);
    // the backend holds all three.
    for key in ["c", "b", "a"] {
        assert_eq!(
            cache.get::<String>(key).await.unwrap().as_deref(),
            Some(key)
        );
    }
    let stats = cache.stats();
    assert_eq!(stats.l1_hits + stats.l2_hits, 3, "{stats:?}");
    assert!(
        stats.l1_hits <= 2,
        "L1 is bounded to two entries: {stats:?}"
    );
    // What was just read is served from L1 again.
    for _ in 0..3 {
        assert_eq!(
            cache.get::<String>("a").await.unwrap().as_deref(),
            Some("a")
        );
    }
    assert_eq!(
        cache.stats().l1_hits,
        stats.l1_hits + 3,
        "{:?}",
        cache.stats()
    );
}

#[tokio::test]
async fn ttl_jitter_spreads_every_ttl_written_and_is_bounded() {
    let cache = Cache::builder()
        .backend(MemoryBackend::new())
        .namespace("jitter")
        .ttl_jitter(10)
        .default_ttl(Duration::from_secs(100))
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let mut ttls = Vec::new();
    for n in 0..200 {
        let key = format!("k{n}");
        if n % 2 == 0 {
            cache.set(&key, &n, None).await.unwrap();
        } else {
            let loaded = cache
                .get_or_insert_with(&key, None, || async move { n })
                .await;
            assert_eq!(loaded, n);
        }
        match cache.ttl(&key).await.unwrap() {
            KeyTtl::Expires(left) => ttls.push(left),
            other => panic!("{key}: {other:?}"),
        }
    }
    let (low, high) = (Duration::from_secs(89), Duration::from_secs(110));
    assert!(
        ttls.iter().all(|ttl| (low..=high).contains(ttl)),
        "{ttls:?}"
    );
    assert!(
        ttls.iter().any(|ttl| *ttl < Duration::from_secs(95)),
        "{ttls:?}"
    );
    assert!(
        ttls.iter().any(|ttl| *ttl > Duration::from_secs(105)),
        "{ttls:?}"
    );
    // No expiry stays none.
    cache
        .set("forever", &1u8, Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(cache.ttl("forever").await.unwrap(), KeyTtl::Forever);

    let error = Cache::builder()
        .backend(MemoryBackend::new())
        .ttl_jitter(51)
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap_err();
    match &error {
        Error::Config {
            setting, origin, ..
        } => {
            assert_eq!(setting, "ttl_jitter");
            assert_eq!(origin, &ConfigOrigin::Code);
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("51"), "{error}");
}

#[tokio::test]
async fn l1_copy_does_not_outlive_the_entry_ttl() {
    let cache = Cache::builder()
        .backend(MemoryBackend::new())
        .namespace("l1ttl")
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    cache
        .set("k", &1u8, Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_run_the_loader_once() {
    for backend in [
        Arc::new(MemoryBackend::new()) as Arc<dyn Backend>,
        Arc::new(PlainBackend(MemoryBackend::new())),
    ] {
        let cache = cache_over(backend.clone());
        let loads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with("hot", None, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            "expensive".to_string()
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), "expensive");
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "backend {}",
            backend.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_lock_serialises_loads_across_caches() {
    // Two caches over one backend stand for two processes: their in-process
    // single-flight is separate, so only the backend lock can de-duplicate.
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (one, two) = (cache_over(backend.clone()), cache_over(backend));
    let loads = Arc::new(AtomicUsize::new(0));
    let load = |loads: Arc<AtomicUsize>| async move {
        loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        7u32
    };
    let (a, b) = tokio::join!(
        one.get_or_insert_with("shared", None, || load(loads.clone())),
        two.get_or_insert_with("shared", None, || load(loads.clone())),
    );
    assert_eq!((a, b), (7, 7));
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the second cache waits for the first's value"
    );
}

#[tokio::test]
async fn fallible_loader_caches_only_ok() {
    let cache = cache_over(Arc::new(MemoryBackend::new()));
    let failed: Result<u8, &str> = cache
        .try_get_or_insert_with("r", None, || async { Err("db down") })
        .await;
    assert_eq!(failed, Err("db down"));
    assert_eq!(
        cache.get::<u8>("r").await.unwrap(),
        None,
        "errors are not cached"
    );
    let ok: Result<u8, &str> = cache
        .try_get_or_insert_with("r", None, || async { Ok(3) })
        .await;
    assert_eq!(ok, Ok(3));
    let cached: Result<u8, &str> = cache
        .try_get_or_insert_with("r", None, || async { Ok(99) })
        .await;
    assert_eq!(cached, Ok(3));
}

#[tokio::test]
async fn lock_ttl_and_touch_are_unsupported_without_the_capability() {
    let cache = cache_over(Arc::new(PlainBackend(MemoryBackend::new())));
    cache.set("k", &1u8, None).await.unwrap();
    for (result, capability) in [
        (
            cache.lock("k", Duration::from_secs(1)).await.map(drop),
            Capability::Lock,
        ),
        (cache.ttl("k").await.map(drop), Capability::TtlInspect),
        (cache.touch("k", None).await.map(drop), Capability::Touch),
    ] {
        match result {
            Err(
                error @ Error::Unsupported {
                    backend: "plain",
                    capability: c,
                },
            ) if c == capability => {
                let message = error.to_string();
                assert!(
                    message.contains("plain") && message.contains("use"),
                    "{message}"
                );
            }
            other => panic!("{capability:?}: expected Unsupported, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn lock_ttl_and_touch_work_with_the_capability() {
    let cache = cache_over(Arc::new(MemoryBackend::new()));
    cache
        .set("k", &1u8, Some(Duration::from_secs(100)))
        .await
        .unwrap();
    assert!(
        matches!(cache.ttl("k").await.unwrap(), KeyTtl::Expires(d) if d <= Duration::from_secs(100))
    );
    assert!(cache.touch("k", Some(Duration::ZERO)).await.unwrap());
    assert_eq!(cache.ttl("k").await.unwrap(), KeyTtl::Forever);
    let guard = cache.lock("k", Duration::from_secs(10)).await.unwrap();
    assert!(matches!(
        cache.lock("k", Duration::from_secs(10)).await,
        Err(Error::LockContended { .. })
    ));
    assert!(guard.release().await.unwrap());
    drop(cache.lock("k", Duration::from_secs(10)).await.unwrap());
}

#[tokio::test]
async fn default_ttl_applies_and_zero_means_forever() {
    let cache = Cache::builder()
        .backend(MemoryBackend::new())
        .default_ttl(Duration::from_secs(50))
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    cache.set("d", &1u8, None).await.unwrap();
    assert!(
        matches!(cache.ttl("d").await.unwrap(), KeyTtl::Expires(d) if d <= Duration::from_secs(50))
    );
    cache.set("z", &1u8, Some(Duration::ZERO)).await.unwrap();
    assert_eq!(cache.ttl("z").await.unwrap(), KeyTtl::Forever);
}

#[tokio::test]
async fn value_over_the_backend_limit_is_refused_with_size_and_limit() {
    let cache = cache_over(Arc::new(MemoryBackend::with_limits(100, 4096)));
    let big = vec![7u8; 10_000];
    match cache.set("big", &big, None).await {
        Err(Error::ValueTooLarge { size, limit }) => assert!(size > limit, "{size} vs {limit}"),
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    // A cached function still returns its value, uncached.
    let value = cache
        .get_or_insert_with("big", None, || async { big.clone() })
        .await;
    assert_eq!(value, big);
}

fn failing_cache(fault: Fault) -> (Cache, FaultyBackend<MemoryBackend>) {
    let backend = FaultyBackend::new(MemoryBackend::new());
    backend.set_fault(fault);
    let guarded = ReliabilityLayer::new(ReliabilityConfig {
        timeout: Duration::from_millis(100),
        failure_threshold: 3,
        cool_down: Duration::from_millis(300),
        retries: 0,
        ..ReliabilityConfig::default()
    })
    .layer(Arc::new(backend.clone()));
    let cache = Cache::builder()
        .shared_backend(guarded)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    (cache, backend)
}

#[tokio::test]
async fn cached_calls_degrade_when_the_backend_is_down_or_hangs() {
    for fault in [Fault::Down, Fault::Hang] {
        let (cache, backend) = failing_cache(fault);
        let loads = AtomicUsize::new(0);
        let started = std::time::Instant::now();
        for _ in 0..5 {
            let value = cache
                .get_or_insert_with("k", None, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    "fresh".to_string()
                })
                .await;
            assert_eq!(value, "fresh", "{fault:?}");
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            5,
            "{fault:?}: each call runs uncached"
        );
        eprintln!(
            "measured: backend {fault:?}: five cached calls, uncached: {:?}",
            started.elapsed()
        );
        assert!(cache.stats().errors >= 3, "{fault:?}: failures are counted");
        let explicit = cache.get::<String>("k").await;
        assert!(
            matches!(
                explicit,
                Err(Error::Unavailable { .. } | Error::Timeout { .. })
            ),
            "{fault:?}: explicit calls return the error, got {explicit:?}"
        );

        // Recovery: once the breaker's probe succeeds, values are cached again.
        backend.set_fault(Fault::None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = cache.get::<String>("k").await;
        cache
            .get_or_insert_with("k", None, || async { "stored".to_string() })
            .await;
        assert_eq!(
            cache.get::<String>("k").await.unwrap().as_deref(),
            Some("stored"),
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn open_breaker_skips_a_hanging_backend_at_once() {
    let (cache, _backend) = failing_cache(Fault::Hang);
    for _ in 0..3 {
        let _ = cache.get::<u8>("k").await;
    }
    let started = std::time::Instant::now();
    let value = cache.get_or_insert_with("k", None, || async { 1u8 }).await;
    assert_eq!(value, 1);
    eprintln!(
        "measured: open breaker over a hanging backend: cached call: {:?}",
        started.elapsed()
    );
    // Not a timing assertion on performance: an open breaker must not wait
    // for the 100 ms operation timeout at all; 90 ms leaves room for a slow machine.
    assert!(
        started.elapsed() < Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_entry_written_by_another_type_is_a_miss_never_wrong_data() {
    let cache = cache_over(Arc::new(MemoryBackend::new()));
    // A deploy changes `fn label(n) -> u64` into `-> String`.
    cache
        .set("label", &1_700_000_000_000_u64, None)
        .await
        .unwrap();
    let label = cache
        .get_or_insert_with("label", None, || async { "fresh".to_string() })
        .await;
    assert_eq!(label, "fresh");

    // A struct's fields reordered: bincode alone would swap them.
    #[derive(Serialize)]
    struct Before {
        id: u64,
        name: String,
        email: String,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename = "Before")]
    struct After {
        id: u64,
        email: String,
        name: String,
    }
    let before = Before {
        id: 1,
        name: "Ada".into(),
        email: "ada@example.com".into(),
    };
    cache.set("user", &before, None).await.unwrap();
    assert_eq!(cache.get::<After>("user").await.unwrap(), None);
}

#[tokio::test]
async fn ttls_and_leases_beyond_the_clock_do_not_panic() {
    let cache = cache_over(Arc::new(MemoryBackend::new()));
    cache.set("k", &1_u8, Some(Duration::MAX)).await.unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    assert!(cache.touch("k", Some(Duration::MAX)).await.unwrap());
    let guard = cache.lock("k", Duration::MAX).await.unwrap();
    assert!(guard.release().await.unwrap());
    let value = Cache::builder()
        .backend(MemoryBackend::new())
        .lock_lease(Duration::MAX)
        .default_ttl(Duration::MAX)
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
        .get_or_insert_with("k", None, || async { 2_u8 })
        .await;
    assert_eq!(value, 2);
}

/// The in-memory backend, declaring (and enforcing) keys of at most 72
/// bytes: memcached's limit with a 178-byte key prefix.
#[derive(Debug)]
struct ShortKeys(MemoryBackend);

#[cachekit_core::backend::async_trait]
impl Backend for ShortKeys {
    fn name(&self) -> &'static str {
        "short-keys"
    }
    fn capabilities(&self) -> cachekit_core::Capabilities {
        cachekit_core::Capabilities {
            max_key_len: 72,
            ..MemoryBackend::CAPABILITIES
        }
    }
    async fn get(&self, key: &str) -> cachekit_core::Result<Option<Bytes>> {
        cachekit_core::key::validate(key, 72)?;
        self.0.get(key).await
    }
    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> cachekit_core::Result<()> {
        cachekit_core::key::validate(key, 72)?;
        self.0.set(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> cachekit_core::Result<bool> {
        cachekit_core::key::validate(key, 72)?;
        self.0.delete(key).await
    }
    async fn exists(&self, key: &str) -> cachekit_core::Result<bool> {
        cachekit_core::key::validate(key, 72)?;
        self.0.exists(key).await
    }
    async fn health(&self) -> cachekit_core::Result<cachekit_core::Health> {
        Ok(cachekit_core::Health::new(self.name()))
    }
}

#[tokio::test]
async fn keys_fit_the_backend_limit_whatever_the_namespace() {
    let cache = Cache::builder()
        .backend(ShortKeys(MemoryBackend::new()))
        .namespace("n".repeat(64))
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    for key in ["42", &"k".repeat(100), "has space"] {
        cache.set(key, &1_u8, None).await.unwrap();
        assert_eq!(cache.get::<u8>(key).await.unwrap(), Some(1), "{key}");
        assert!(
            cache.backend_key(key).len() <= 72 - 5,
            "room for the lock mark"
        );
    }
}

/// Counts the WARN events of this thread's subscriber.
struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn an_outage_warns_once_per_interval_not_once_per_call() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(CountWarnings(warnings.clone()));
    let _scope = tracing::subscriber::set_default(subscriber);
    let (cache, _backend) = failing_cache(Fault::Down);
    for _ in 0..100 {
        assert_eq!(
            cache.get_or_insert_with("k", None, || async { 1_u8 }).await,
            1
        );
    }
    let warned = warnings.load(Ordering::SeqCst);
    // The failed read (once) and the breaker opening (once).
    assert!((1..=2).contains(&warned), "{warned} warnings for 100 calls");
}

#[tokio::test]
async fn caches_that_name_no_backend_share_the_process_one() {
    let build = || Cache::builder().namespace("shared").build().unwrap();
    let (first, second) = (build(), build());
    first.set("k", &7_u32, None).await.unwrap();
    assert_eq!(
        second.get::<u32>("k").await.unwrap(),
        Some(7),
        "one backend instance, as for cached functions"
    );
    assert!(Arc::ptr_eq(first.backend(), second.backend()), "one layer");
}
