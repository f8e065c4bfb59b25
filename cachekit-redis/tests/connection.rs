//! The connection: made once by the first calls, shared by every task and
//! clone, and made again after a first attempt that failed.

mod common;

use std::time::Duration;

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
    let error = backend.get("k").await.unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    tokio::task::block_in_place(|| server.restart());
    let mut answered = false;
    for _ in 0..100 {
        if backend.get("k").await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "the backend connects once the server is up");
    backend.health().await.unwrap();
}
