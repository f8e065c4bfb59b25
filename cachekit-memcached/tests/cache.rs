//! `Cache` over real memcached: in-process single-flight stands in for the
//! missing lock, and the L1 tier in front of a shared backend.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit_core::Cache;
use cachekit_core::ConfigSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_loader_once_without_a_lock() {
    let servers = common::servers(3);
    let cache = Cache::builder()
        .backend(common::backend(&servers, |_| {}))
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("hot", Some(Duration::from_secs(60)), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        vec![1u32, 2, 3]
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), [1, 2, 3]);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_entries_through_the_fleet() {
    // Two caches over two backends stand for two processes.
    let servers = common::servers(3);
    let build = || {
        Cache::builder()
            .backend(common::backend(&servers, |c| {
                c.key_prefix = "shared:".into()
            }))
            .namespace("profiles")
            .config(ConfigSource::defaults_only())
            .build()
            .unwrap()
    };
    let (writer, reader) = (build(), build());
    for id in 0..50u64 {
        writer
            .set(&format!("user:{id}"), &format!("profile {id}"), None)
            .await
            .unwrap();
    }
    for id in 0..50u64 {
        let seen: Option<String> = reader.get(&format!("user:{id}")).await.unwrap();
        assert_eq!(seen.as_deref(), Some(format!("profile {id}").as_str()));
    }
    assert_eq!(reader.stats().l2_hits, 50);
    for id in 0..50u64 {
        reader.get::<String>(&format!("user:{id}")).await.unwrap();
    }
    assert_eq!(reader.stats().l1_hits, 50, "repeat reads come from L1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_key_prefix_with_a_long_namespace_still_caches() {
    // 178 bytes of prefix leave 72 for cachekit's keys, lock mark included.
    let servers = common::servers(1);
    let prefix = "p".repeat(178);
    let cache = Cache::builder()
        .backend(common::backend(&servers, |c| c.key_prefix = prefix.clone()))
        .namespace("n".repeat(64))
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    for key in ["42", &"k".repeat(100), "with space"] {
        cache.set(key, &7_u32, None).await.expect("stored");
        assert_eq!(cache.get::<u32>(key).await.unwrap(), Some(7), "{key}");
        let wire = format!("{prefix}{}", cache.backend_key(key));
        assert!(wire.len() <= 250 - 5, "{} bytes on the wire", wire.len());
    }
    let loaded = cache
        .get_or_insert_with("loaded", None, || async { 9_u32 })
        .await;
    assert_eq!(loaded, 9);
    assert_eq!(cache.get::<u32>("loaded").await.unwrap(), Some(9), "stored");
}

/// `(l1_hits, l2_hits, misses, coalesced, loads, errors)` after the same
/// calls on `backend`.
async fn counts_after_calls(backend: std::sync::Arc<dyn cachekit_core::Backend>) -> [u64; 6] {
    let cache = Cache::builder()
        .shared_backend(backend)
        .namespace("counted")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let load = || async { "v".to_string() };
    cache.get_or_insert_with("a", None, load).await; // miss, load
    cache.get_or_insert_with("a", None, load).await; // backend hit
    cache.get::<String>("b").await.unwrap(); // miss
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("c", None, || async {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        1_u8
                    })
                    .await
            })
        })
        .collect();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), 1);
    }
    let s = cache.stats();
    [
        s.l1_hits,
        s.l2_hits,
        s.misses,
        s.coalesced,
        s.loads,
        s.errors,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_count_the_same_on_memcached_and_on_a_backend_with_a_lock() {
    let servers = common::servers(1);
    let on_memcached =
        counts_after_calls(std::sync::Arc::new(common::backend(&servers, |_| {}))).await;
    let on_memory =
        counts_after_calls(std::sync::Arc::new(cachekit_core::MemoryBackend::new())).await;
    assert_eq!(on_memcached, [0, 1, 3, 9, 2, 0]);
    assert_eq!(on_memory, on_memcached);
}
