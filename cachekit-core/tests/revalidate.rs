//! A background refresh dropped with its runtime (a service shutting down,
//! a test's runtime ending) lets go of its key: the next stale read starts
//! another refresh rather than finding the key still claimed.

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
