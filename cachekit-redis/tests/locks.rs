//! Locks over real Redis, with two backends standing for two processes:
//! one holder at a time among 32 contenders, release by the owner only, a
//! crashed holder's lock freed when its lease ends, extension, and fencing
//! values that grow.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::backend::{Lock, LockToken};
use cachekit_redis::RedisBackend;
use tokio::task::JoinSet;

/// How many tasks contend for one lock.
const CONTENDERS: usize = 32;

/// How many times one contender tries before giving up.
const ATTEMPTS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_among_32_contenders_of_two_processes() {
    let server = ServerProcess::redis();
    let backends = [
        common::backend(&server, |c| c),
        common::backend(&server, |c| c),
    ];
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for id in 0..CONTENDERS {
        let backend = backends[id % 2].clone();
        let (inside, overlaps) = (inside.clone(), overlaps.clone());
        tasks.spawn(async move {
            for _ in 0..ATTEMPTS {
                let lease = Duration::from_secs(30);
                if let Some(token) = backend.try_lock("contended", lease).await.unwrap() {
                    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    assert!(backend.unlock("contended", &token).await.unwrap());
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            false
        });
    }
    let done = tasks.join_all().await;
    assert!(
        done.iter().all(|got| *got),
        "every contender held the lock once"
    );
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_releases() {
    let server = ServerProcess::redis();
    let (owner, other) = (
        common::backend(&server, |c| c),
        common::backend(&server, |c| c),
    );
    let lease = Duration::from_secs(30);
    let token = owner.try_lock("owned", lease).await.unwrap().expect("free");
    for stranger in [LockToken::random(), LockToken::new("guess")] {
        assert!(!other.unlock("owned", &stranger).await.unwrap());
        assert!(!owner.unlock("owned", &stranger).await.unwrap());
    }
    assert!(other.try_lock("owned", lease).await.unwrap().is_none());
    // The token is the holder's proof, whichever client shows it.
    assert!(other.unlock("owned", &token).await.unwrap());
    assert!(
        !owner.unlock("owned", &token).await.unwrap(),
        "released once"
    );
    assert!(other.try_lock("owned", lease).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_lock_is_free_when_its_lease_ends() {
    let server = ServerProcess::redis();
    let lease = Duration::from_millis(300);
    let taken = Instant::now();
    {
        // The holder takes the lock and "crashes": it never releases.
        let holder = common::backend(&server, |c| c);
        holder
            .try_lock("crashed", lease)
            .await
            .unwrap()
            .expect("free");
    }
    let waiter = common::backend(&server, |c| c);
    assert!(waiter.try_lock("crashed", lease).await.unwrap().is_none());
    let mut token = None;
    for _ in 0..200 {
        token = waiter
            .try_lock("crashed", Duration::from_secs(30))
            .await
            .unwrap();
        if token.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(token.is_some(), "the lock is free after its lease");
    assert!(taken.elapsed() >= lease, "not before its lease ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_live_under_the_prefix_with_a_lease() {
    let server = ServerProcess::redis();
    let backend: RedisBackend = common::backend(&server, |c| c.key_prefix("app:"));
    let token = backend
        .try_lock("k", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free");
    let held: Option<String> = common::raw(&server, redis::cmd("GET").arg("app:k")).await;
    assert_eq!(held.as_deref(), Some(token.as_str()));
    let left: i64 = common::raw(&server, redis::cmd("PTTL").arg("app:k")).await;
    assert!(left > 29_000 && left <= 30_000, "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_keeps_a_slow_holder_alone() {
    let server = ServerProcess::redis();
    let (holder, rival) = (
        common::backend(&server, |c| c),
        common::backend(&server, |c| c),
    );
    // A lease that a busy host's stalls between two extensions stay well
    // within.
    let lease = Duration::from_secs(1);
    let token = holder.try_lock("slow", lease).await.unwrap().expect("free");
    let started = Instant::now();
    // Three leases long, extending every quarter of a lease.
    while started.elapsed() < lease * 3 {
        tokio::time::sleep(lease / 4).await;
        assert!(holder.extend("slow", &token, lease).await.unwrap());
        assert!(
            rival.try_lock("slow", lease).await.unwrap().is_none(),
            "the rival got the lock {:?} after it was taken",
            started.elapsed()
        );
    }
    assert!(holder.unlock("slow", &token).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_fails_for_a_stranger_and_after_the_lease() {
    let server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c);
    let lease = Duration::from_millis(200);
    let token = backend.try_lock("k", lease).await.unwrap().expect("free");
    assert!(
        !backend
            .extend("k", &LockToken::random(), Duration::from_secs(30))
            .await
            .unwrap()
    );
    // The stranger's try changed nothing: the lease still ends on time.
    let left: i64 = common::raw(&server, redis::cmd("PTTL").arg("k")).await;
    assert!(left > 0 && left <= 200, "{left}");
    let mut expired = false;
    for _ in 0..100 {
        let exists: i64 = common::raw(&server, redis::cmd("EXISTS").arg("k")).await;
        if exists == 0 {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(expired, "the lease ends");
    assert!(!backend.extend("k", &token, lease).await.unwrap());
    let exists: i64 = common::raw(&server, redis::cmd("EXISTS").arg("k")).await;
    assert_eq!(exists, 0, "a failed extension creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_values_strictly_increase_across_acquisitions_and_processes() {
    let server = ServerProcess::redis();
    let backends = [
        common::backend(&server, |c| c.key_prefix("app:")),
        common::backend(&server, |c| c.key_prefix("app:")),
    ];
    for key in ["fenced", "{tag}fenced", "odd}key{"] {
        let mut last = 0;
        for round in 0..20 {
            let backend = &backends[round % 2];
            let token = backend
                .try_lock(key, Duration::from_secs(30))
                .await
                .unwrap()
                .expect("free");
            let fence = token.fence().expect("redis gives fencing values");
            assert!(fence > last, "{key}: {fence} after {last}");
            last = fence;
            // A contended try takes no fencing value... and costs none.
            assert!(
                backend
                    .try_lock(key, Duration::from_secs(30))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(backend.unlock(key, &token).await.unwrap());
        }
    }
    // Other prefixes count apart: nothing of "app:" is shared with "other:".
    let other = common::backend(&server, |c| c.key_prefix("other:"));
    let token = other
        .try_lock("fenced", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.fence(), Some(1));
}
