//! Tests of how the conformance kit starts servers: a cluster
//! configuration gets one cluster, and a case that stops servers gets a
//! cluster of its own.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use super::case::{self, Ctx, Fleet};
use super::{Conformance, ServerKind};
use crate::MemoryBackend;

/// The lines of `cluster info` (or, with `nodes`, `cluster nodes`) of the
/// node at `address`, trimmed.
fn cluster(address: &str, what: &str) -> Vec<String> {
    let (host, port) = address.split_once(':').expect("HOST:PORT");
    let output = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "cluster", what])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim().to_owned())
        .collect()
}

/// Asserts that the nodes at `addresses` form one cluster of exactly them,
/// ok on every node.
fn assert_one_cluster(addresses: &[String]) {
    let expected: BTreeSet<&str> = addresses.iter().map(String::as_str).collect();
    for address in addresses {
        let info = cluster(address, "info");
        assert!(
            info.contains(&"cluster_state:ok".to_owned()),
            "{address}: {info:?}"
        );
        // `cluster nodes` lines read `<id> 127.0.0.1:PORT@BUSPORT flags ...`.
        let members: BTreeSet<String> = cluster(address, "nodes")
            .iter()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter_map(|node| node.split_once('@').map(|(address, _)| address.to_owned()))
            .collect();
        let members: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        assert_eq!(members, expected, "the nodes {address} knows");
    }
}

#[test]
fn cluster_configuration_hands_make_the_nodes_of_one_cluster() {
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let record = Arc::clone(&seen);
    let conformance = Conformance::with_servers(ServerKind::RedisCluster, 3, move |addresses| {
        record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(addresses.to_vec());
        Ok(Arc::new(MemoryBackend::new()))
    });
    let trials = conformance.trials();
    let addresses = seen.lock().unwrap_or_else(PoisonError::into_inner)[0].clone();
    assert_eq!(addresses.len(), 3, "{addresses:?}");
    assert_one_cluster(&addresses);
    // The cases that stop servers apply: each starts a cluster of its own.
    let faults: Vec<_> = trials
        .iter()
        .filter(|trial| trial.name().contains("::faults::"))
        .collect();
    assert!(!faults.is_empty());
    assert!(faults.iter().all(|trial| !trial.has_ignored_flag()));

    drop(trials);
    for address in &addresses {
        assert!(TcpStream::connect(address).is_err(), "{address} still runs");
    }
}

#[test]
fn case_that_stops_servers_gets_a_cluster_of_its_own() {
    let kind = ServerKind::RedisCluster;
    let fleet = Arc::new(Fleet {
        kind,
        servers: Fleet::start_servers(kind, 3, &[]),
        args: Vec::new(),
        make: Arc::new(|_: &[String]| Ok(Arc::new(MemoryBackend::new()))),
    });
    let shared = fleet.addresses();
    let runtime = case::runtime().expect("a tokio runtime");
    let own = runtime.block_on(async {
        let backend = Arc::new(MemoryBackend::new());
        let ctx = Ctx::new("cluster".to_owned(), backend, Some(Arc::clone(&fleet)));
        let (servers, _backend) = ctx.own_servers().expect("a fleet");
        servers
    });
    let addresses: Vec<String> = own.iter().map(|server| server.address()).collect();
    assert_eq!(addresses.len(), 3);
    assert!(addresses.iter().all(|address| !shared.contains(address)));
    assert_one_cluster(&addresses);
    assert_one_cluster(&shared);
}
