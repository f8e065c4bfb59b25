//! Coherent L1 (`l1_invalidation`): a change made elsewhere (another
//! backend instance, standing for another process, or `redis-cli`, a
//! process of its own) drops this process's L1 copy, where without the
//! setting the copy is served until `l1_ttl`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::{Backend, Cache, ConfigSource, L1Config};
use cachekit_redis::RedisBackend;
use tokio::time::Instant;

/// A cache with an L1 tier whose copies would live ten minutes.
fn cache_with_l1(backend: RedisBackend) -> Cache {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    Cache::builder()
        .shared_backend(backend)
        .namespace("coherent")
        .l1(L1Config::default().max_ttl(Duration::from_secs(600)))
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

/// Another process's cache: another connection, no L1.
fn other_process(server: &ServerProcess) -> Cache {
    let backend: Arc<dyn Backend> = Arc::new(common::backend(server, |c| c));
    Cache::builder()
        .shared_backend(backend)
        .namespace("coherent")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

/// Reads `key` every 2 ms until it is `want` (at most 2 s); how long that
/// took, or `None` if it never was. A read that fails (a connection made
/// again after a restart) counts as not yet.
async fn time_until(cache: &Cache, key: &str, want: Option<u32>) -> Option<Duration> {
    let started = Instant::now();
    for _ in 0..1_000 {
        if cache.get::<u32>(key).await.ok() == Some(want) {
            return Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Waits until the tracking connection is on: a change made now is heard.
async fn tracking_on(ours: &Cache, theirs: &Cache) {
    // The first write may meet a connection the server dropped (a restart).
    let mut written = false;
    for _ in 0..100 {
        if theirs.set("warm-up", &0_u32, None).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(written, "the other process could not write");
    for round in 1..=200_u32 {
        assert_eq!(ours.get::<u32>("warm-up").await.unwrap(), Some(round - 1));
        theirs.set("warm-up", &round, None).await.unwrap();
        if time_until(ours, "warm-up", Some(round)).await.is_some() {
            return;
        }
    }
    panic!("the tracking connection never came up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_elsewhere_drops_the_copy_within_milliseconds() {
    let server = ServerProcess::redis();
    let ours = cache_with_l1(common::backend(&server, |c| c.l1_invalidation(true)));
    let theirs = other_process(&server);
    tracking_on(&ours, &theirs).await;

    let mut slowest = Duration::ZERO;
    for round in 0..20_u32 {
        theirs.set("k", &round, None).await.unwrap();
        assert!(time_until(&ours, "k", Some(round)).await.is_some());
        // A copy now, then a change elsewhere.
        assert_eq!(ours.get::<u32>("k").await.unwrap(), Some(round));
        theirs.set("k", &(round + 1_000), None).await.unwrap();
        let took = time_until(&ours, "k", Some(round + 1_000))
            .await
            .unwrap_or_else(|| panic!("round {round}: the copy was never dropped"));
        slowest = slowest.max(took);
    }
    eprintln!("slowest of 20 changes to reach this process's next read: {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_by_another_program_drops_the_copy() {
    let server = ServerProcess::redis();
    let ours = cache_with_l1(common::backend(&server, |c| {
        c.l1_invalidation(true).key_prefix("app:")
    }));
    tracking_on(&ours, &cache_with_prefix_writer(&server)).await;
    ours.set("gone", &7_u32, None).await.unwrap();
    assert!(time_until(&ours, "gone", Some(7)).await.is_some());
    let wire = format!("app:{}", ours.backend_key("gone"));
    let deleted = std::process::Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
            "DEL",
            &wire,
        ])
        .output()
        .expect("redis-cli runs");
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout).trim(),
        "1",
        "{deleted:?}"
    );
    assert!(
        time_until(&ours, "gone", None).await.is_some(),
        "a key deleted by another program reads as a miss"
    );
}

/// A writer with the `app:` prefix, for the prefixed test.
fn cache_with_prefix_writer(server: &ServerProcess) -> Cache {
    let backend: Arc<dyn Backend> = Arc::new(common::backend(server, |c| c.key_prefix("app:")));
    Cache::builder()
        .shared_backend(backend)
        .namespace("coherent")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_the_copy_is_served_after_a_change() {
    let server = ServerProcess::redis();
    let ours = cache_with_l1(common::backend(&server, |c| c));
    let theirs = other_process(&server);
    ours.set("k", &1_u32, None).await.unwrap();
    assert_eq!(ours.get::<u32>("k").await.unwrap(), Some(1));
    theirs.set("k", &2_u32, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        ours.get::<u32>("k").await.unwrap(),
        Some(1),
        "the copy lives its l1_ttl"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_copies_are_dropped_and_tracking_resumes() {
    let mut server = ServerProcess::redis();
    let ours = cache_with_l1(common::backend(&server, |c| c.l1_invalidation(true)));
    let theirs = other_process(&server);
    tracking_on(&ours, &theirs).await;
    ours.set("k", &1_u32, None).await.unwrap();
    assert!(time_until(&ours, "k", Some(1)).await.is_some());

    // The restarted server starts empty: the copy must not outlive it.
    server.restart();
    assert!(
        time_until(&ours, "k", None).await.is_some(),
        "the copy was dropped when the tracking connection was lost"
    );
    tracking_on(&ours, &theirs).await;
    theirs.set("k", &3_u32, None).await.unwrap();
    assert!(time_until(&ours, "k", Some(3)).await.is_some());
    assert_eq!(ours.get::<u32>("k").await.unwrap(), Some(3));
    theirs.set("k", &4_u32, None).await.unwrap();
    assert!(
        time_until(&ours, "k", Some(4)).await.is_some(),
        "changes are heard again after the restart"
    );
}

#[test]
fn l1_invalidation_on_a_cluster_is_refused_naming_the_setting() {
    let config = cachekit_redis::RedisBackendConfig::default()
        .cluster_nodes(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])
        .l1_invalidation(true);
    let error = RedisBackend::new(config).unwrap_err();
    assert!(
        matches!(&error, cachekit_core::Error::Config { setting, .. } if setting == "redis.l1_invalidation"),
        "{error}"
    );
}
