//! A real Redis Cluster of three masters: keys spread over the nodes, a
//! lock and its fencing counter on the key's node, and a node restarted:
//! its keys fail in time while it is down, the others' keep working, and
//! the backend reaches it again with no user action.

mod common;

use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::RedisCluster;
use cachekit_core::backend::{Backend, Bytes, Lock};
use cachekit_redis::{RedisBackend, RedisBackendConfig};

/// A cluster backend over `cluster`, with short timeouts for tests.
fn backend(cluster: &RedisCluster, timeout: Duration) -> RedisBackend {
    RedisBackend::new(
        RedisBackendConfig::default()
            .cluster_nodes(cluster.addresses())
            .connect_timeout(Duration::from_millis(500))
            .timeout(timeout),
    )
    .unwrap()
}

/// The keys each node holds, by `DBSIZE`, in the order of the nodes.
async fn key_counts(cluster: &RedisCluster) -> Vec<i64> {
    let mut counts = Vec::new();
    for node in cluster.nodes() {
        counts.push(common::raw(node, &redis::cmd("DBSIZE")).await);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_every_master_and_many_keys_read_at_once() {
    let cluster = tokio::task::block_in_place(|| RedisCluster::start(3));
    let backend = backend(&cluster, Duration::from_secs(2));
    let keys: Vec<String> = (0..60).map(|i| format!("spread:{i}")).collect();
    let entries: Vec<(&str, Bytes)> = keys
        .iter()
        .map(|k| (k.as_str(), Bytes::from(k.clone().into_bytes())))
        .collect();
    backend.set_many(&entries, None).await.unwrap();
    let counts = key_counts(&cluster).await;
    assert!(
        counts.iter().all(|&n| n > 0),
        "every master holds keys: {counts:?}"
    );
    assert_eq!(counts.iter().sum::<i64>(), 60);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = backend.get_many(&refs).await.unwrap();
    for (key, value) in keys.iter().zip(values) {
        assert_eq!(value.as_deref(), Some(key.as_bytes()), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_fails_its_keys_in_time_and_is_reached_again() {
    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start(3));
    let timeout = Duration::from_millis(500);
    let backend = backend(&cluster, timeout);
    let keys: Vec<String> = (0..30).map(|i| format!("node:{i}")).collect();
    for key in &keys {
        backend
            .set(key, Bytes::from_static(b"v"), None)
            .await
            .unwrap();
    }
    // The victim's keys: those it answers for itself (the others, MOVED).
    let victim = 1;
    let on_victim: Vec<String> = {
        let address = cluster.nodes()[victim].address();
        let client = redis::Client::open(format!("redis://{address}")).unwrap();
        let mut node = client.get_multiplexed_async_connection().await.unwrap();
        let mut found = Vec::new();
        for key in &keys {
            let exists: redis::RedisResult<i64> =
                redis::cmd("EXISTS").arg(key).query_async(&mut node).await;
            if exists == Ok(1) {
                found.push(key.clone());
            }
        }
        found
    };
    assert!(!on_victim.is_empty(), "some keys live on the victim");

    tokio::task::block_in_place(|| cluster.nodes_mut()[victim].stop());
    let started = Instant::now();
    let outcome = backend.get(&on_victim[0]).await;
    eprintln!(
        "measured: one of three masters killed: get of its key: {:?}",
        started.elapsed()
    );
    match outcome {
        Err(error) => assert!(error.is_temporary(), "{error:?}"),
        Ok(value) => panic!("a key of a stopped node answered {value:?}"),
    }
    // Not a performance assertion: bounded by the timeout, never hangs.
    assert!(
        started.elapsed() < timeout * 4,
        "took {:?}",
        started.elapsed()
    );

    tokio::task::block_in_place(|| {
        cluster.nodes_mut()[victim].restart();
        cluster.wait_until_ok();
    });
    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut reached = false;
    while Instant::now() < deadline {
        if backend
            .set(&on_victim[0], Bytes::from_static(b"back"), None)
            .await
            .is_ok()
        {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached, "the restarted node is reached again");
    eprintln!(
        "measured: one of three masters restarted: reached again {:?} after the cluster is ok",
        restarted.elapsed()
    );
    assert_eq!(
        backend.get(&on_victim[0]).await.unwrap().as_deref(),
        Some(&b"back"[..])
    );
    // A lock on the node, with its fencing counter there too.
    assert!(backend.delete(&on_victim[0]).await.unwrap());
    let token = backend
        .try_lock(&on_victim[0], Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free");
    assert!(token.fence().is_some());
}

/// One master down does not open the circuit breaker for the others' keys:
/// each master is a failure domain of its own. (Until the cluster itself
/// declares the master failed, after its node timeout: a cluster without
/// replicas then answers CLUSTERDOWN for every key, and the breaker rightly
/// opens.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_does_not_open_the_breaker_for_the_others_keys() {
    use std::sync::Arc;

    use cachekit_core::{
        Cache, CircuitOpen, ConfigSource, Error, ReliabilityConfig, ReliabilityLayer,
    };

    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start(3));
    let backend = backend(&cluster, Duration::from_millis(300));
    assert_eq!(backend.failure_domains(), 3);
    let layered = ReliabilityLayer::new(
        ReliabilityConfig::default()
            .retries(0)
            .failure_threshold(2)
            .cool_down(Duration::from_secs(60)),
    )
    .layer(Arc::new(backend));
    let cache = Cache::builder()
        .shared_backend(layered)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("domain:{i}")).collect();
    for key in &keys {
        cache.set(key, &1_u8, None).await.unwrap();
    }
    // Which keys the victim holds, asked of it directly.
    let victim = 0;
    let on_victim = {
        let address = cluster.nodes()[victim].address();
        let client = redis::Client::open(format!("redis://{address}")).unwrap();
        let mut node = client.get_multiplexed_async_connection().await.unwrap();
        let mut found = Vec::new();
        for key in &keys {
            let wire = cache.backend_key(key);
            let exists: redis::RedisResult<i64> =
                redis::cmd("EXISTS").arg(&wire).query_async(&mut node).await;
            found.push(exists == Ok(1));
        }
        found
    };
    let (lost, kept): (Vec<_>, Vec<_>) = keys.iter().zip(&on_victim).partition(|(_, on)| **on);
    assert!(!lost.is_empty() && !kept.is_empty(), "keys on every side");

    // The cluster declares the victim failed after its node timeout (2 s in
    // the test kit); 30 s leaves this test the time of a slow host.
    for node in cluster.nodes() {
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg("cluster-node-timeout").arg(30_000);
        let () = common::raw(node, &set).await;
    }
    tokio::task::block_in_place(|| cluster.nodes_mut()[victim].stop());
    // The victim's keys fail many times in a row: its domain is past the
    // threshold ...
    for _ in 0..3 {
        let error = cache.get::<u8>(lost[0].0).await.unwrap_err();
        assert!(error.is_temporary(), "{error:?}");
    }
    // ... and the others' keys still answer, through a closed breaker.
    let started = Instant::now();
    for (key, _) in &kept {
        match cache.get::<u8>(key).await {
            Ok(value) => assert_eq!(value, Some(1)),
            Err(Error::Unavailable { source, .. }) if source.is::<CircuitOpen>() => {
                panic!("the breaker opened for {key} with two masters up")
            }
            Err(error) => panic!("{key} is on a healthy master: {error}"),
        }
    }
    eprintln!(
        "measured: one of three masters stopped: {} reads of the others' keys: {:?}",
        kept.len(),
        started.elapsed()
    );
}
