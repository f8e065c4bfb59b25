//! Locks held across a slow load and taken by hand: the load lock's lease
//! restarts while its loader runs, so a loader slower than the lease never
//! lets a second process load; a hand-taken lock extends, carries a
//! growing fencing value, and can be waited for up to a deadline.
//!
//! Two caches over one in-memory backend stand for two processes sharing a
//! backend with a lock (as Redis is). Time is paused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit_core::{Backend, Cache, ConfigSource, Error, MemoryBackend};
use tokio::time::Instant;

const LEASE: Duration = Duration::from_millis(300);

fn cache_over(backend: &Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .shared_backend(Arc::clone(backend))
        .namespace("locks")
        .without_l1()
        .lock_lease(LEASE)
        .config(ConfigSource::defaults_only())
        .build()
        .expect("valid cache")
}

#[tokio::test(start_paused = true)]
async fn a_loader_slower_than_the_lease_still_loads_once_across_processes() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let loads = Arc::new(AtomicUsize::new(0));
    let load = |value: u32| {
        let loads = Arc::clone(&loads);
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            // Five leases long (a waiter gives up after ten).
            tokio::time::sleep(LEASE * 5).await;
            value
        }
    };
    let first = tokio::spawn({
        let (cache, load) = (cache_over(&backend), load(1));
        async move { cache.get_or_insert_with("slow", None, load).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = tokio::spawn({
        let (cache, load) = (cache_over(&backend), load(2));
        async move { cache.get_or_insert_with("slow", None, load).await }
    });
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one process loaded");
    assert_eq!(
        (first, second),
        (1, 1),
        "the second process got the first's value"
    );
}

#[tokio::test(start_paused = true)]
async fn a_guard_extends_its_lease_until_released() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (cache, other) = (cache_over(&backend), cache_over(&backend));
    let guard = cache.lock("job", LEASE).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(LEASE / 2).await;
        assert!(guard.extend(LEASE).await.unwrap(), "the holder extends");
    }
    // 2.5 leases after it was taken, the lock is still held.
    assert!(matches!(
        other.lock("job", LEASE).await,
        Err(Error::LockContended { .. })
    ));
    tokio::time::sleep(LEASE * 2).await;
    assert!(
        !guard.extend(LEASE).await.unwrap(),
        "a lease that ran out is not extended"
    );
    let next = other
        .lock("job", LEASE)
        .await
        .expect("free after its lease");
    assert!(
        !guard.extend(LEASE).await.unwrap(),
        "the former holder cannot extend the next holder's lock"
    );
    assert!(next.release().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn fencing_values_grow_with_every_acquisition() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let cache = cache_over(&backend);
    let mut last = 0;
    for _ in 0..5 {
        let guard = cache.lock("fenced", LEASE).await.unwrap();
        let fence = guard.fence().expect("the in-memory backend gives fences");
        assert!(fence > last, "fence {fence} after {last}");
        last = fence;
        assert!(guard.release().await.unwrap());
    }
}

#[tokio::test(start_paused = true)]
async fn lock_wait_takes_the_lock_once_its_holder_releases_it() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (cache, other) = (cache_over(&backend), cache_over(&backend));
    let held = cache.lock("turn", Duration::from_secs(60)).await.unwrap();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        held.release().await.unwrap()
    });
    let started = Instant::now();
    let guard = other
        .lock_wait("turn", LEASE, Duration::from_secs(5))
        .await
        .expect("taken after the release");
    let waited = started.elapsed();
    assert!(releaser.await.unwrap());
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(700),
        "waited {waited:?} for a release after 500 ms"
    );
    assert!(guard.release().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn lock_wait_gives_up_at_its_deadline() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (cache, other) = (cache_over(&backend), cache_over(&backend));
    let _held = cache.lock("busy", Duration::from_secs(60)).await.unwrap();
    let started = Instant::now();
    let waited = other.lock_wait("busy", LEASE, Duration::from_secs(2)).await;
    assert!(
        matches!(waited, Err(Error::LockContended { .. })),
        "{waited:?}"
    );
    assert!(
        (Duration::from_secs(2)..Duration::from_millis(2_100)).contains(&started.elapsed()),
        "gave up after {:?}",
        started.elapsed()
    );
}
