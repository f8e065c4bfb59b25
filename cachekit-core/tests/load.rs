//! What a load holds is let go when its caller is: a loader that panics, or
//! a call dropped mid-load (a timeout, `select!`), releases the backend lock
//! and the single-flight lead, so that the next caller loads at once instead
//! of waiting out the 30 s lease.
//!
//! Time is paused: a wait for the lease would take 30 s of (virtual) time,
//! and the tests measure that time, deterministically.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit_core::ConfigSource;
use cachekit_core::{Backend, Cache, MemoryBackend};
use tokio::time::Instant;

/// The default lease: how long a caller would wait for a holder that is gone.
const LEASE: Duration = Duration::from_secs(30);

/// A cache over `backend` (the in-memory one has a lock, as Redis will).
fn cache_over(backend: &Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .shared_backend(Arc::clone(backend))
        .namespace("load")
        .without_l1()
        .lock_lease(LEASE)
        .config(ConfigSource::defaults_only())
        .build()
        .expect("valid cache")
}

#[tokio::test(start_paused = true)]
async fn a_loader_that_panics_releases_the_lock_for_the_next_caller() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let cache = cache_over(&backend);
    let panicked = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_insert_with("k", None, || async {
                    if true {
                        panic!("the loader fails");
                    }
                    0_u8
                })
                .await
        }
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let started = Instant::now();
    let value: u8 = cache.get_or_insert_with("k", None, || async { 7 }).await;
    assert_eq!(value, 7);
    assert!(
        started.elapsed() < LEASE / 2,
        "the next caller waited {:?} for a lock nobody held",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_mid_load_releases_the_lock() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let cache = cache_over(&backend);
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        cache.get_or_insert_with("k", None, || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            1_u8
        }),
    )
    .await;
    assert!(dropped.is_err(), "the caller gave up during the load");
    // Another cache over the backend stands for another process.
    let other = cache_over(&backend);
    let started = Instant::now();
    let value: u8 = other.get_or_insert_with("k", None, || async { 2 }).await;
    assert_eq!(value, 2);
    eprintln!(
        "measured: call dropped mid-load: the next caller waited {:?} (paused clock)",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the next caller waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn every_waiter_of_a_loader_that_always_panics_gets_its_turn_at_once() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let cache = cache_over(&backend);
    let runs = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, runs) = (cache.clone(), runs.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("k", None, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if true {
                            panic!("the loader always fails");
                        }
                        0_u8
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let ended: Result<u8, _> = task.await;
        assert!(ended.unwrap_err().is_panic());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 8, "each waiter led in turn");
    assert!(
        started.elapsed() < LEASE,
        "the waiters took {:?}, a lease or more",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_for_a_value_that_cannot_be_stored_run_together_not_in_turn() {
    // `Vec<()>` of more elements than bytes is refused by the codec: the
    // leader returns it uncached, and the waiters load at once, together.
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let cache = cache_over(&backend);
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("k", None, || async {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        vec![(); 100]
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().len(), 100);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "8 callers took {:?}: one load after another",
        started.elapsed()
    );
}
