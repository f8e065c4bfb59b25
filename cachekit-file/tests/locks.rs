//! Locks beyond the conformance kit: a `try_lock` future dropped before it
//! finishes leaves the lock free, `lock_timeout` bounds the wait for a
//! lock record, fences grow across backends on one directory, and the
//! load lock of `Cache` works over files.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cachekit_core::backend::Backend;
use cachekit_core::{Cache, Error};
use common::{backend, cache_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_try_lock_leaves_the_lock_free() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    let lock = b.as_lock().unwrap();
    let mut dropped = 0;
    for round in 0..40 {
        let key = format!("dropped-{round}");
        let mut pending = Box::pin(lock.try_lock(&key, Duration::from_secs(60)));
        // Started on its blocking thread, then dropped by its caller; a
        // round where the lock came back at once hands the token over.
        let first = pending
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        if let Poll::Ready(taken) = first {
            let token = taken.unwrap().expect("the key is free");
            assert!(lock.unlock(&key, &token).await.unwrap());
            continue;
        }
        drop(pending);
        dropped += 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(token) = lock.try_lock(&key, Duration::from_secs(60)).await.unwrap() {
                lock.unlock(&key, &token).await.unwrap();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the dropped try_lock kept its lock"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(dropped > 0, "no try_lock was dropped mid-flight");
}

#[tokio::test]
async fn lock_timeout_bounds_the_wait_for_a_lock_record() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c.lock_timeout(Duration::from_millis(200)));
    let lock = b.as_lock().unwrap();
    // Another process stuck inside a lock record's critical section.
    let token = lock
        .try_lock("k", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let file = std::fs::read_dir(cache_dir(dir.path()).join("locks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap() != "fence")
        .unwrap();
    let stuck = std::fs::File::open(&file).unwrap();
    rustix::fs::flock(&stuck, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let started = Instant::now();
    let waited = lock.unlock("k", &token).await;
    assert!(
        matches!(waited, Err(Error::Timeout { operation: "lock", after, .. }) if after == Duration::from_millis(200)),
        "{waited:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(stuck);
    assert!(
        lock.unlock("k", &token).await.unwrap(),
        "released once the record is free"
    );
}

#[tokio::test]
async fn fences_grow_across_backends_on_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (backend(dir.path(), |c| c), backend(dir.path(), |c| c));
    let mut last = 0;
    for round in 0..10 {
        let b = if round % 2 == 0 { &one } else { &two };
        let lock = b.as_lock().unwrap();
        let key = format!("k{}", round % 3);
        let token = lock
            .try_lock(&key, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        let fence = token.fence().expect("the file backend gives fences");
        assert!(fence > last, "round {round}: {fence} after {last}");
        last = fence;
        assert!(lock.unlock(&key, &token).await.unwrap());
    }
    assert!(
        std::fs::read_dir(cache_dir(dir.path()).join("locks"))
            .unwrap()
            .count()
            == 1,
        "released locks leave no file, only the fence counter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_lock_runs_one_loader_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .shared_backend(Arc::new(backend(dir.path(), |c| c)))
        .without_l1()
        .build()
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, loads) = (cache.clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("shared", Some(Duration::from_secs(60)), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        42u64
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 42);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_start_removes_locks_never_released_once_their_lease_ran_out() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    let lock = b.as_lock().unwrap();
    // Held and forgotten, as by a holder that died.
    let _lost = lock
        .try_lock("lost", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    let held = lock
        .try_lock("held", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let locks = cache_dir(dir.path()).join("locks");
    let files = || std::fs::read_dir(&locks).unwrap().count();
    assert_eq!(files(), 3, "two lock files and the fence counter");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _restarted = backend(dir.path(), |c| c);
    common::wait_until("the start's scan removes the lost lock", || files() == 2);
    assert!(
        lock.try_lock("held", Duration::from_secs(1))
            .await
            .unwrap()
            .is_none(),
        "a running lease stays"
    );
    assert!(lock.unlock("held", &held).await.unwrap());
}
