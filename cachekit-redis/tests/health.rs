//! `health()` on one real server and on a real Redis Cluster: the server,
//! or each configured node, listed up with its latency or down with the
//! error; `Err` when nothing answers.

mod common;

use std::time::Duration;

use cachekit_core::backend::testkit::{RedisCluster, ServerProcess};
use cachekit_core::{Backend, DomainState, Error};
use cachekit_redis::{RedisBackend, RedisBackendConfig};

/// What a backend that cannot be reached answers.
fn unreachable<T: std::fmt::Debug>(result: &cachekit_core::Result<T>) -> bool {
    matches!(
        result,
        Err(Error::Unavailable { .. } | Error::Timeout { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_of_one_server_lists_it_by_address_and_fails_when_it_is_down() {
    let mut server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c);
    let health = backend.health().await.expect("the server answers");
    assert_eq!(health.backend, "redis");
    let [domain] = &health.domains[..] else {
        panic!("one domain: {health:?}");
    };
    assert_eq!(domain.name, server.address(), "host:port, nothing else");
    assert_eq!(domain.state, DomainState::Up);
    assert!(domain.latency.is_some_and(|l| l <= health.latency));

    tokio::task::block_in_place(|| server.stop());
    let result = backend.health().await;
    assert!(unreachable(&result), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_of_a_cluster_pings_each_node_and_lists_a_stopped_one_down() {
    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start(3));
    let backend = RedisBackend::new(
        RedisBackendConfig::default()
            .cluster_nodes(cluster.addresses())
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let health = backend.health().await.expect("every node answers");
    let names: Vec<&str> = health.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, cluster.addresses(), "one domain per configured node");
    for domain in &health.domains {
        assert_eq!(domain.state, DomainState::Up, "{health:?}");
        assert!(domain.latency.is_some(), "{domain:?}");
    }

    tokio::task::block_in_place(|| cluster.nodes_mut()[1].stop());
    let health = backend.health().await.expect("two nodes still answer");
    eprintln!("measured: one node of three stopped: {health:?}");
    let states: Vec<&DomainState> = health.domains.iter().map(|d| &d.state).collect();
    assert!(
        matches!(
            states[..],
            [DomainState::Up, DomainState::Down { .. }, DomainState::Up]
        ),
        "{health:?}"
    );

    tokio::task::block_in_place(|| {
        for node in cluster.nodes_mut() {
            node.stop();
        }
    });
    let result = backend.health().await;
    assert!(unreachable(&result), "{result:?}");
}
