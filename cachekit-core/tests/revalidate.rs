//! Background refreshes at their edges: one dropped with its runtime (a
//! service shutting down) or whose loader never returns lets go of its key;
//! a `set` in flight when one starts wins over it; a backend's longest TTL
//! shortens the stale window, not the fresh part.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit_core::{Backend, Cache, ConfigSource, MemoryBackend, Revalidate};

const TTL: Option<Duration> = Some(Duration::from_millis(50));

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn a_refresh_dropped_with_its_runtime_releases_its_key() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let cache = Cache::builder()
        .shared_backend(backend)
        .without_l1()
        .lock_lease(Duration::from_secs(1))
        .config(ConfigSource::defaults_only())
        .build()
        .expect("a cache");
    let stale = Revalidate::stale(Duration::from_secs(60));
    let runs = Arc::new(AtomicUsize::new(0));
    let first = runtime();
    first.block_on(async {
        let value = cache
            .get_or_revalidate("k", TTL, stale, || async { 1u32 })
            .await;
        assert_eq!(value, 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Arc::clone(&runs);
        // The refresh never ends: it is dropped with the runtime.
        let hanging = move || async move {
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<u32>().await
        };
        assert_eq!(cache.get_or_revalidate("k", TTL, stale, hanging).await, 1);
        for _ in 0..250 {
            if runs.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the refresh started");
    });
    drop(first);
    runtime().block_on(async {
        // Within the lock's lease (its release was left to the lease when
        // the runtime went), a refresh may be skipped: poll past it.
        let mut refreshed = false;
        for _ in 0..250 {
            let value = cache
                .get_or_revalidate("k", TTL, stale, || async { 2u32 })
                .await;
            if value == 2 {
                refreshed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refreshed, "the dropped refresh kept its key claimed");
    });
}

/// The in-process store with a longest TTL and, optionally, writes that
/// reach it late.
#[derive(Debug)]
struct Limited {
    inner: MemoryBackend,
    max_ttl: Option<Duration>,
    set_delay: Duration,
}

#[async_trait::async_trait]
impl Backend for Limited {
    fn name(&self) -> &'static str {
        "limited"
    }

    fn capabilities(&self) -> cachekit_core::Capabilities {
        cachekit_core::Capabilities {
            max_ttl: self.max_ttl,
            lock: false,
            ..self.inner.capabilities()
        }
    }

    async fn get(&self, key: &str) -> cachekit_core::Result<Option<cachekit_core::backend::Bytes>> {
        self.inner.get(key).await
    }

    async fn set(
        &self,
        key: &str,
        value: cachekit_core::backend::Bytes,
        ttl: Option<Duration>,
    ) -> cachekit_core::Result<()> {
        tokio::time::sleep(self.set_delay).await;
        self.inner.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> cachekit_core::Result<bool> {
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> cachekit_core::Result<bool> {
        self.inner.exists(key).await
    }

    async fn health(&self) -> cachekit_core::Result<cachekit_core::Health> {
        Ok(cachekit_core::Health::new(self.name()))
    }
}

fn cache_over(backend: Limited, lease: Duration) -> Cache {
    Cache::builder()
        .shared_backend(Arc::new(backend))
        .without_l1()
        .lock_lease(lease)
        .config(ConfigSource::defaults_only())
        .build()
        .expect("a cache")
}

#[tokio::test]
async fn a_clamped_entry_shortens_its_stale_window_first() {
    // Longest TTL 2 s: TTL 1 s + stale 5 s is stored for 2 s, 1 s fresh.
    let backend = Limited {
        inner: MemoryBackend::new(),
        max_ttl: Some(Duration::from_secs(2)),
        set_delay: Duration::ZERO,
    };
    let cache = cache_over(backend, Duration::from_secs(1));
    let (ttl, stale) = (
        Some(Duration::from_secs(1)),
        Revalidate::stale(Duration::from_secs(5)),
    );
    for _ in 0..10 {
        let value = cache
            .get_or_revalidate("k", ttl, stale, || async { 1u8 })
            .await;
        assert_eq!(value, 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.refreshes, stats.stale_hits),
        (1, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_set_in_flight_when_the_refresh_starts_wins() {
    // Every write reaches the store 200 ms late.
    let backend = Limited {
        inner: MemoryBackend::new(),
        max_ttl: None,
        set_delay: Duration::from_millis(200),
    };
    let cache = cache_over(backend, Duration::from_secs(1));
    let stale = Revalidate::stale(Duration::from_secs(60));
    let first = cache.get_or_revalidate("k", TTL, stale, || async { "old".to_owned() });
    assert_eq!(first.await, "old");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let setter = cache.clone();
    let set = tokio::spawn(async move { setter.set("k", "newer", None).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let read = cache.get_or_revalidate("k", TTL, stale, || async { "refreshed".to_owned() });
    assert_eq!(read.await, "old", "stale, at once");
    set.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("newer")
    );
}

#[tokio::test]
async fn a_refresh_that_never_returns_lets_go_after_ten_leases() {
    let backend = Limited {
        inner: MemoryBackend::new(),
        max_ttl: None,
        set_delay: Duration::ZERO,
    };
    // Lease 50 ms: a refresh may take 500 ms.
    let cache = cache_over(backend, Duration::from_millis(50));
    let stale = Revalidate::stale(Duration::from_secs(60));
    assert_eq!(
        cache
            .get_or_revalidate("k", TTL, stale, || async { 1u32 })
            .await,
        1
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hanging = || std::future::pending::<u32>();
    assert_eq!(cache.get_or_revalidate("k", TTL, stale, hanging).await, 1);
    let mut refreshed = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if cache
            .get_or_revalidate("k", TTL, stale, || async { 2u32 })
            .await
            == 2
        {
            refreshed = true;
            break;
        }
    }
    assert!(refreshed, "the hanging refresh kept the key");
    assert!(cache.stats().load_errors >= 1, "{:?}", cache.stats());
}
