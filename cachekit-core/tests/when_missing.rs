//! Runs every row of `CAPABILITY_USES` (the table docs/backends.md is
//! generated from) against a backend that lacks the capability, so that
//! what the page says an operation does is what it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cachekit_core::__private::{CAPABILITY_USES, CapabilityUse, WhenMissing};
use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::PlainBackend;
use cachekit_core::{
    Backend, Cache, Capabilities, Capability, ConfigSource, Error, Health, MemoryBackend, Result,
    Revalidate,
};

/// A backend without expiry (nor anything optional): the in-process store
/// with its TTL capability taken away.
#[derive(Debug)]
struct NoTtlBackend(MemoryBackend);

#[async_trait]
impl Backend for NoTtlBackend {
    fn name(&self) -> &'static str {
        "no-ttl"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_key_len: self.0.capabilities().max_key_len,
            ..Capabilities::NONE
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.get(key).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        assert_eq!(ttl, None, "a TTL reached a backend without expiry");
        self.0.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.0.delete(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.0.exists(key).await
    }

    async fn health(&self) -> Result<Health> {
        Ok(Health::new(self.name()))
    }
}

/// A cache over a backend that lacks `capability`, and no L1 (so that every
/// call reaches the backend).
fn cache_without(capability: Capability) -> Cache {
    let backend: Arc<dyn Backend> = match capability {
        Capability::Ttl => Arc::new(NoTtlBackend(MemoryBackend::new())),
        _ => Arc::new(PlainBackend(MemoryBackend::new())),
    };
    assert!(!backend.capabilities().has(capability));
    Cache::builder()
        .shared_backend(backend)
        .namespace("missing")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .expect("valid cache")
}

/// Runs `row`'s operation without its capability: `Err(error)` for an
/// operation that failed, `Ok(loads)` (how many times its loader ran) for
/// one that answered.
async fn run(row: &CapabilityUse) -> std::result::Result<usize, Error> {
    let cache = cache_without(row.needs);
    let ttl = Some(Duration::from_secs(60));
    match row.operation {
        "`Cache::lock`, `Cache::lock_wait`" => {
            let wait = cache.lock_wait("k", Duration::from_secs(1), Duration::from_millis(10));
            let error = wait.await.expect_err("lock_wait without a lock");
            assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
            cache.lock("k", Duration::from_secs(1)).await.map(|_| 0)
        }
        "`Cache::ttl`" => cache.ttl("k").await.map(|_| 0),
        "`Cache::touch`" => cache.touch("k", ttl).await.map(|_| 0),
        "`Cache::set` with a TTL (or a default TTL)" => cache.set("k", &1u8, ttl).await.map(|_| 0),
        "`#[cache]` functions, `Cache::get_or_insert_with` on a miss" => {
            let loads = Arc::new(AtomicUsize::new(0));
            let callers = (0..16).map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with("hot", None, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            7u8
                        })
                        .await
                })
            });
            for caller in callers.collect::<Vec<_>>() {
                assert_eq!(caller.await.expect("caller"), 7);
            }
            Ok(loads.load(Ordering::SeqCst))
        }
        "stale-while-revalidate and early refresh (`#[cache(stale = ...)]`, `Cache::get_or_revalidate`)" =>
        {
            let (ttl, stale) = (
                Some(Duration::from_millis(50)),
                Revalidate::stale(Duration::from_secs(30)),
            );
            let first = cache
                .get_or_revalidate("stale", ttl, stale, || async { 1u8 })
                .await;
            assert_eq!(first, 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let loads = Arc::new(AtomicUsize::new(0));
            let callers = (0..16).map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_revalidate("stale", ttl, stale, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            2u8
                        })
                        .await
                })
            });
            for caller in callers.collect::<Vec<_>>() {
                assert_eq!(caller.await.expect("caller"), 1, "served stale");
            }
            for _ in 0..100 {
                if cache.get::<u8>("stale").await.expect("get") == Some(2) {
                    return Ok(loads.load(Ordering::SeqCst));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the stale entry was never refreshed");
        }
        "`#[cache(ttl = ...)]` functions, `Cache::get_or_insert_with` with a TTL" => {
            let loads = AtomicUsize::new(0);
            for _ in 0..2 {
                let value = cache
                    .get_or_insert_with("k", ttl, || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        7u8
                    })
                    .await;
                assert_eq!(value, 7);
            }
            assert_eq!(
                cache.get::<u8>("k").await.expect("get"),
                None,
                "nothing stored"
            );
            Ok(loads.load(Ordering::SeqCst))
        }
        other => panic!("no case runs the operation {other}: add one here"),
    }
}

#[tokio::test]
async fn every_operation_does_without_its_capability_what_the_table_says() {
    for row in CAPABILITY_USES {
        let outcome = run(row).await;
        match (row.without, outcome) {
            (
                WhenMissing::Unsupported,
                Err(Error::Unsupported {
                    capability,
                    backend,
                }),
            ) => {
                assert_eq!(capability, row.needs, "{}", row.operation);
                assert!(backend == "plain" || backend == "no-ttl", "{backend}");
            }
            (WhenMissing::FallsBack(_), Ok(loads)) => match row.needs {
                // Sixteen concurrent callers, one load: single-flight (or
                // one refresh of a stale entry).
                Capability::Lock => assert_eq!(loads, 1, "{}", row.operation),
                // Two calls in a row, two loads: nothing was stored.
                Capability::Ttl => assert_eq!(loads, 2, "{}", row.operation),
                other => panic!("no fallback check for {other:?}: add one here"),
            },
            (expected, outcome) => {
                panic!(
                    "{}: the table says {expected:?}, got {outcome:?}",
                    row.operation
                )
            }
        }
    }
}
