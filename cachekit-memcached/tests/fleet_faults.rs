//! One server of a fleet of three stopped under load and restarted, over
//! plain TCP and over TLS: no call is lost or answered wrongly, the dead
//! server is ejected, and the restarted one rejoins.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachekit_core::ConfigSource;
use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::{Backend, Cache};
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};
use common::expected;
use common::tls::Pki;

/// 16 tasks read and write through a `Cache` for `duration`; returns how many
/// calls they made. Panics on any wrong value.
async fn load(cache: &Cache, duration: Duration, round: usize) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                let stop = Instant::now() + duration;
                let mut i = 0usize;
                while Instant::now() < stop && i < 100_000 {
                    let key = format!("r{round}:t{task}:k{}", i % 50);
                    let value = cache
                        .get_or_insert_with(&key, None, || async { expected(&key) })
                        .await;
                    assert_eq!(value, expected(&key), "a wrong value reached a caller");
                    calls.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no task panicked");
    }
    calls.load(Ordering::Relaxed)
}

/// A backend over `servers` (addresses) with short timeouts, configured by
/// `transport` (TLS or not).
fn backend_over(
    servers: &[String],
    transport: &dyn Fn(&mut MemcachedBackendConfig),
) -> MemcachedBackend {
    let mut config = MemcachedBackendConfig {
        servers: servers.to_vec(),
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(300),
        dead_time: Duration::from_secs(1),
        ..Default::default()
    };
    transport(&mut config);
    MemcachedBackend::new(config).expect("valid config")
}

/// Stops `servers[1]` of three under load, then restarts it; `transport`
/// sets how the backend reaches them.
async fn stop_one_of_three_under_load(
    mut servers: Vec<ServerProcess>,
    transport: &dyn Fn(&mut MemcachedBackendConfig),
) {
    let three: Vec<String> = servers.iter().map(|s| s.address()).collect();
    let backend = backend_over(&three, transport);
    let victim = servers[1].address();
    let cache = Cache::builder()
        .backend(backend.clone())
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();

    assert!(load(&cache, Duration::from_millis(500), 0).await > 0);
    // The victim held keys before it died: read back through it alone.
    let alone = backend_over(std::slice::from_ref(&victim), transport);
    let mut held = 0;
    for task in 0..16 {
        for k in 0..50 {
            let key = cache.backend_key(&format!("r0:t{task}:k{k}"));
            if backend.server_for(&key) == victim && alone.get(&key).await.unwrap().is_some() {
                held += 1;
            }
        }
    }
    assert!(held > 0, "the victim held keys before it died");

    // Stop the server while the tasks run.
    let running = {
        let cache = cache.clone();
        tokio::spawn(async move { load(&cache, Duration::from_millis(2000), 1).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    servers[1].stop();
    let calls = running.await.expect("every call returned a correct value");
    assert!(calls > 0);
    eprintln!("measured: one of three stopped: {calls} calls in 2 s of load, all answered");

    // A key of the victim's goes to another server, and the write ejects the
    // victim if its dead time had passed meanwhile.
    let owner = backend_over(&three, transport);
    let key = (0..1000)
        .map(|i| format!("probe:{i}"))
        .find(|k| owner.server_for(k) == victim)
        .expect("some key belongs to the victim");
    backend
        .set(&key, Bytes::from_static(b"v"), None)
        .await
        .expect("stored on another server");
    assert!(
        !backend.live_servers().contains(&victim.as_str()),
        "the dead server is ejected"
    );
    assert_eq!(backend.live_servers().len(), 2);
    assert_ne!(backend.server_for(&key), victim);
    let ejections = cachekit_core::stats()
        .events
        .into_iter()
        .find(|event| {
            event.name == "cachekit_memcached_ejections_total"
                && event.labels == [("server", victim.clone())]
        })
        .map(|event| event.count);
    assert!(
        ejections >= Some(1),
        "the ejection is counted under its server: {ejections:?}"
    );

    // Restart: after its dead time it is tried again and rejoins.
    servers[1].restart();
    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rejoined = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        load(&cache, Duration::from_millis(200), 2).await;
        if backend.live_servers().len() == 3 && backend.server_for(&key) == victim {
            rejoined = backend
                .set(&key, Bytes::from_static(b"back"), None)
                .await
                .is_ok();
            if rejoined {
                break;
            }
        }
    }
    assert!(rejoined, "the restarted server must rejoin the ring");
    eprintln!(
        "measured: one of three restarted: rejoined after {:?}",
        restarted.elapsed()
    );
    let alone = backend_over(std::slice::from_ref(&victim), transport);
    assert_eq!(
        alone.get(&key).await.unwrap().as_deref(),
        Some(&b"back"[..]),
        "the value is on the restarted server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_of_three_servers_under_load_loses_no_call_and_it_rejoins() {
    stop_one_of_three_under_load(common::servers(3), &|_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_of_three_tls_servers_under_load_loses_no_call_and_it_rejoins() {
    let pki = Pki::new();
    stop_one_of_three_under_load(pki.servers(3), &|c| pki.client(c)).await;
}
