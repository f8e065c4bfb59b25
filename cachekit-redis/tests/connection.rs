//! The connection: made once by the first calls, shared by every task and
//! clone, and made again after a first attempt that failed.

mod common;

use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::backend::{Backend, Bytes};

/// The clients connected to `server` now, by `INFO clients`, less the one
/// that asks.
async fn connected_clients(server: &ServerProcess) -> usize {
    let info: String = common::raw(server, redis::cmd("INFO").arg("clients")).await;
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .expect("INFO clients has connected_clients");
    line.trim().parse::<usize>().unwrap() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_share_one_connection() {
    let server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c);
    assert_eq!(
        connected_clients(&server).await,
        0,
        "building connects nothing"
    );
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let key = format!("k{i}");
                backend.set(&key, Bytes::from_static(b"v"), None).await?;
                backend.get(&key).await
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap().is_some());
    }
    assert_eq!(
        connected_clients(&server).await,
        1,
        "one multiplexed connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_connect_that_fails_is_tried_again_by_the_next_call() {
    let mut server = ServerProcess::redis();
    tokio::task::block_in_place(|| server.stop());
    let backend = common::backend(&server, |c| c);
    let started = Instant::now();
    let error = backend.get("k").await.unwrap_err();
    eprintln!(
        "measured: server down at the first connect: get: {:?}",
        started.elapsed()
    );
    assert!(error.is_temporary(), "{error:?}");
    tokio::task::block_in_place(|| server.restart());
    let restarted = Instant::now();
    let mut answered = false;
    for _ in 0..100 {
        if backend.get("k").await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "the backend connects once the server is up");
    eprintln!(
        "measured: server up after a failed first connect: answered {:?} after the restart",
        restarted.elapsed()
    );
    backend.health().await.unwrap();
}

/// A backend whose connection was made on a runtime that is gone since:
/// the next calls, on another runtime, get there (the first may fail).
fn outlives_the_runtime_that_connected(backend: &cachekit_redis::RedisBackend) {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    runtime()
        .block_on(backend.set("k", Bytes::from_static(b"v"), None))
        .unwrap();
    let second = runtime();
    let mut answered = None;
    for _ in 0..3 {
        match second.block_on(backend.get("k")) {
            Ok(value) => {
                answered = value;
                break;
            }
            Err(error) => assert!(error.is_temporary(), "{error:?}"),
        }
    }
    assert_eq!(answered.as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_connection_outlives_the_runtime_that_made_it() {
    let server = ServerProcess::redis();
    outlives_the_runtime_that_connected(&common::backend(&server, |c| c));
}

#[test]
fn a_cluster_connection_outlives_the_runtime_that_made_it() {
    let cluster = cachekit_core::backend::testkit::RedisCluster::start(3);
    let backend = cachekit_redis::RedisBackend::new(
        cachekit_redis::RedisBackendConfig::default()
            .cluster_nodes(cluster.addresses())
            .timeout(Duration::from_millis(500)),
    )
    .unwrap();
    outlives_the_runtime_that_connected(&backend);
}
