//! `Cache` over real Redis with two backends standing for two processes:
//! concurrent misses on one key run the loader once across both, a loader
//! slower than the lock's lease still runs alone, and entries are shared.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::{Cache, ConfigSource, KeyTtl};

/// A cache over a backend of its own on `server`: a process of its own, as
/// far as Redis can tell.
fn process(server: &ServerProcess, lease: Duration) -> Cache {
    Cache::builder()
        .backend(common::backend(server, |c| c.key_prefix("shared:")))
        .namespace("stampede")
        .without_l1()
        .lock_lease(lease)
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

/// 20 callers in each of two processes miss `key` at once; the loader takes
/// `load_time`. Returns how many times it ran.
async fn race(server: &ServerProcess, key: &str, lease: Duration, load_time: Duration) -> usize {
    let processes = [process(server, lease), process(server, lease)];
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (cache, loads, key) = (processes[i % 2].clone(), loads.clone(), key.to_owned());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with(&key, Some(Duration::from_secs(60)), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(load_time).await;
                        vec![1u32, 2, 3]
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), [1, 2, 3]);
    }
    loads.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_in_two_processes_run_the_loader_once() {
    let server = ServerProcess::redis();
    let loads = race(
        &server,
        "hot",
        Duration::from_secs(30),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(loads, 1, "the backend lock spans both processes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_slower_than_the_lease_still_runs_alone() {
    let server = ServerProcess::redis();
    // Three leases long: the loading process extends its lease meanwhile
    // (every third of a lease: a busy host's stalls stay well within it).
    let loads = race(
        &server,
        "slow",
        Duration::from_secs(1),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(loads, 1, "no second process loaded after the first lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_entries_and_their_ttl() {
    let server = ServerProcess::redis();
    let (writer, reader) = (
        process(&server, Duration::from_secs(30)),
        process(&server, Duration::from_secs(30)),
    );
    for id in 0..20u64 {
        writer
            .set(
                &format!("user:{id}"),
                &format!("profile {id}"),
                Some(Duration::from_secs(120)),
            )
            .await
            .unwrap();
    }
    for id in 0..20u64 {
        let seen: Option<String> = reader.get(&format!("user:{id}")).await.unwrap();
        assert_eq!(seen.as_deref(), Some(format!("profile {id}").as_str()));
        match reader.ttl(&format!("user:{id}")).await.unwrap() {
            KeyTtl::Expires(left) => assert!(left <= Duration::from_secs(120), "{left:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(reader.delete("user:0").await.unwrap());
    assert_eq!(writer.get::<String>("user:0").await.unwrap(), None);
}
