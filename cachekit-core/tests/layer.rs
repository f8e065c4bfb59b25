//! The reliability layer over a backend that fails on demand: retries of
//! idempotent operations, none of a lock, none for a backend that retries
//! itself, and one breaker for every cache over one backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use cachekit_core::ConfigSource;
use cachekit_core::backend::{Bytes, Lock, async_trait};
use cachekit_core::{Backend, Cache, Capabilities, Error, LockToken, MemoryBackend, Result};
use cachekit_core::{CircuitOpen, ReliabilityConfig, ReliabilityLayer};

/// The in-memory backend, failing its next `failures` operations (with a
/// temporary error), and counting every operation it is asked.
#[derive(Debug, Default)]
struct Flaky {
    memory: MemoryBackend,
    failures: AtomicU32,
    asked: AtomicU32,
    retries_itself: AtomicBool,
}

impl Flaky {
    fn attempt(&self) -> Result<()> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match failing {
            Ok(_) => Err(Error::unavailable("flaky", "injected")),
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl Backend for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn capabilities(&self) -> Capabilities {
        MemoryBackend::CAPABILITIES
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.attempt()?;
        self.memory.get(key).await
    }
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.attempt()?;
        self.memory.set(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.attempt()?;
        self.memory.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.attempt()?;
        self.memory.exists(key).await
    }
    async fn health(&self) -> Result<cachekit_core::Health> {
        Ok(cachekit_core::Health::new(self.name()))
    }
    fn retries_itself(&self) -> bool {
        self.retries_itself.load(Ordering::SeqCst)
    }
    fn as_lock(&self) -> Option<&dyn Lock> {
        Some(self)
    }
}

#[async_trait]
impl Lock for Flaky {
    async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>> {
        self.attempt()?;
        self.memory.try_lock(key, lease).await
    }
    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool> {
        self.attempt()?;
        self.memory.unlock(key, token).await
    }
    async fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool> {
        self.attempt()?;
        self.memory.extend(key, token, lease).await
    }
}

fn config() -> ReliabilityConfig {
    ReliabilityConfig {
        retries: 2,
        retry_backoff: Duration::from_millis(1),
        failure_threshold: 3,
        cool_down: Duration::from_secs(60),
        ..ReliabilityConfig::default()
    }
}

fn cache_over(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .shared_backend(backend)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

#[tokio::test]
async fn temporary_failures_of_idempotent_operations_are_retried() {
    let flaky = Arc::new(Flaky::default());
    let cache = cache_over(ReliabilityLayer::new(config()).layer(flaky.clone()));
    flaky.failures.store(2, Ordering::SeqCst);
    cache
        .set("k", &1_u8, None)
        .await
        .expect("the third attempt stores");
    assert_eq!(flaky.asked.load(Ordering::SeqCst), 3);
    flaky.failures.store(2, Ordering::SeqCst);
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));

    // A lock is not retried: a lost answer would make the retry find it taken.
    flaky.asked.store(0, Ordering::SeqCst);
    flaky.failures.store(1, Ordering::SeqCst);
    assert!(cache.lock("k", Duration::from_secs(1)).await.is_err());
    assert_eq!(flaky.asked.load(Ordering::SeqCst), 1);
    // Nor is its release: a lost answer would make the retry report it lost.
    let guard = cache.lock("k", Duration::from_secs(1)).await.unwrap();
    flaky.asked.store(0, Ordering::SeqCst);
    flaky.failures.store(1, Ordering::SeqCst);
    assert!(guard.release().await.is_err());
    assert_eq!(flaky.asked.load(Ordering::SeqCst), 1);
}

/// Two failure domains: keys starting with `a` go to one that never
/// answers, and the backend bounds nothing itself.
#[derive(Debug, Default)]
struct HalfSilent {
    memory: MemoryBackend,
}

#[async_trait]
impl Backend for HalfSilent {
    fn name(&self) -> &'static str {
        "half-silent"
    }
    fn capabilities(&self) -> Capabilities {
        MemoryBackend::CAPABILITIES
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if key.starts_with('a') {
            std::future::pending::<()>().await;
        }
        self.memory.get(key).await
    }
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.memory.set(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.memory.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.memory.exists(key).await
    }
    async fn health(&self) -> Result<cachekit_core::Health> {
        Ok(cachekit_core::Health::new(self.name()))
    }
    fn failure_domains(&self) -> usize {
        2
    }
    fn failure_domain(&self, key: &str) -> usize {
        usize::from(!key.starts_with('a'))
    }
}

#[tokio::test(start_paused = true)]
async fn the_layers_own_timeout_is_charged_to_the_keys_domain_only() {
    let layered = ReliabilityLayer::new(ReliabilityConfig {
        timeout: Duration::from_millis(50),
        ..config()
    })
    .layer(Arc::new(HalfSilent::default()));
    for _ in 0..10 {
        match layered.get("a-key").await {
            Err(Error::Timeout { domain, .. }) => assert_eq!(domain, Some(0)),
            other => panic!("expected the layer's timeout, got {other:?}"),
        }
    }
    layered
        .set("b-key", Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    assert!(
        layered.get("b-key").await.unwrap().is_some(),
        "the other domain's keys still reach the backend"
    );
}

#[tokio::test]
async fn a_backend_that_retries_itself_is_not_retried_again() {
    let flaky = Arc::new(Flaky::default());
    flaky.retries_itself.store(true, Ordering::SeqCst);
    let cache = cache_over(ReliabilityLayer::new(config()).layer(flaky.clone()));
    flaky.failures.store(1, Ordering::SeqCst);
    assert!(cache.get::<u8>("k").await.is_err());
    assert_eq!(flaky.asked.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_cache_over_one_backend_shares_its_breaker() {
    let flaky = Arc::new(Flaky::default());
    flaky.retries_itself.store(true, Ordering::SeqCst);
    flaky.failures.store(u32::MAX, Ordering::SeqCst);
    let layered = ReliabilityLayer::new(config()).layer(flaky.clone());
    let caches: Vec<Cache> = (0..20).map(|_| cache_over(layered.clone())).collect();
    for cache in &caches {
        let value = cache.get_or_insert_with("k", None, || async { 5_u8 }).await;
        assert_eq!(value, 5, "the loader's value, uncached");
    }
    assert_eq!(
        flaky.asked.load(Ordering::SeqCst),
        3,
        "the breaker opened for all twenty after the threshold"
    );
    match caches[0].get::<u8>("k").await {
        Err(Error::Unavailable { source, .. }) => assert!(source.is::<CircuitOpen>()),
        other => panic!("expected the open breaker's error, got {other:?}"),
    }
    // Caches over the raw backend reuse its layer too.
    let raw: Arc<dyn Backend> = flaky.clone();
    let also = cache_over(raw);
    assert!(matches!(
        also.get::<u8>("k").await,
        Err(Error::Unavailable { .. })
    ));
    assert_eq!(flaky.asked.load(Ordering::SeqCst), 3);
}
