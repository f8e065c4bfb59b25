//! Failures of a real Redis: stopped (calls fail within the timeout with
//! temporary errors), restarted (the backend reconnects with no user
//! action), restarted under 16 tasks (every caller gets its value), frozen
//! (calls time out), and the breaker over it; and of listeners that are not
//! Redis: one that never answers, one that answers garbage.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::{ServerProcess, SilentServer};
use cachekit_core::backend::{Backend, Bytes, Lock};
use cachekit_core::{Cache, ConfigSource, Error, ReliabilityConfig, ReliabilityLayer};
use cachekit_redis::{RedisBackend, RedisBackendConfig};

/// How long the test waits for a restarted server to be reached again.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// Reads `key` until it answers (a restarted server, reached again), at
/// most [`RECOVERY_BOUND`]; the answer and how long it took.
async fn until_answered(backend: &RedisBackend, key: &str) -> (Option<Bytes>, Duration) {
    let started = Instant::now();
    loop {
        match backend.get(key).await {
            Ok(value) => return (value, started.elapsed()),
            Err(error) => {
                assert!(error.is_temporary(), "{error:?}");
                assert!(
                    started.elapsed() < RECOVERY_BOUND,
                    "no recovery within {RECOVERY_BOUND:?}: {error}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `cachekit_redis_reconnects_total{connection="data"}` in the process.
fn data_reconnects() -> u64 {
    cachekit_core::stats()
        .events
        .into_iter()
        .filter(|event| {
            event.name == "cachekit_redis_reconnects_total"
                && event.labels == [("connection", "data".to_owned())]
        })
        .map(|event| event.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_fails_every_call_in_time_and_a_restart_recovers_alone() {
    let mut server = ServerProcess::redis();
    let timeout = Duration::from_millis(300);
    let backend = common::backend(&server, |c| c.timeout(timeout));
    backend
        .set("before", Bytes::from_static(b"v"), None)
        .await
        .unwrap();

    let reconnects_before = data_reconnects();
    server.stop();
    for round in 0..3 {
        let started = Instant::now();
        let calls: [(&str, cachekit_core::Result<()>); 5] = [
            ("get", backend.get("k").await.map(drop)),
            (
                "set",
                backend.set("k", Bytes::from_static(b"v"), None).await,
            ),
            ("delete", backend.delete("k").await.map(drop)),
            (
                "try_lock",
                backend
                    .try_lock("k", Duration::from_secs(1))
                    .await
                    .map(drop),
            ),
            ("health", backend.health().await.map(drop)),
        ];
        for (operation, outcome) in calls {
            match outcome {
                Err(Error::Unavailable { .. } | Error::Timeout { .. }) => {}
                other => panic!("round {round}: {operation} on a stopped server gave {other:?}"),
            }
        }
        eprintln!(
            "measured: killed server: round {round} of get, set, delete, try_lock, health: {:?}",
            started.elapsed()
        );
        // Not a performance assertion: five calls, each bounded by the timeout.
        assert!(
            started.elapsed() < timeout * 5 + Duration::from_millis(500),
            "took {:?}",
            started.elapsed()
        );
    }

    // The data is gone with the process (no persistence in the test
    // server); the backend is back with no call to reconnect.
    server.restart();
    let (value, took) = until_answered(&backend, "before").await;
    assert_eq!(value, None);
    eprintln!("measured: restarted server: answered again {took:?} after the restart");
    assert!(
        data_reconnects() > reconnects_before,
        "the lost connection is counted in cachekit::stats()"
    );
    backend
        .set("after", Bytes::from_static(b"back"), None)
        .await
        .unwrap();
    assert_eq!(
        backend.get("after").await.unwrap().as_deref(),
        Some(&b"back"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_16_tasks_loses_no_value_and_the_backend_recovers() {
    let mut server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c.timeout(Duration::from_millis(300)));
    let cache = Cache::builder()
        .backend(backend.clone())
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (calls, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (cache, backend, stop) = (cache.clone(), backend.clone(), stop.clone());
            let (calls, errors) = (calls.clone(), errors.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && i < 200_000 {
                    let key = format!("t{task}:k{}", i % 50);
                    let expected = format!("value of {key}");
                    // A cached function's path: always a value, the right one.
                    let value = cache
                        .get_or_insert_with(&key, None, || async { expected.clone() })
                        .await;
                    assert_eq!(value, expected, "a wrong value reached a caller");
                    // A direct call: a value, or a temporary error while down.
                    if let Err(error) = backend.get(&key).await {
                        assert!(error.is_temporary(), "{error:?}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();

    // Restart once the tasks are under way (a loaded machine may take a while).
    let deadline = Instant::now() + RECOVERY_BOUND;
    while calls.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = calls.load(Ordering::Relaxed);
    tokio::task::block_in_place(|| server.restart());
    let (_, took) = until_answered(&backend, "probe").await;
    eprintln!("measured: restart under 16 tasks: answered again {took:?} after the restart");
    // Calls go on after the restart, now against the new process.
    let after_restart = calls.load(Ordering::Relaxed);
    let deadline = Instant::now() + RECOVERY_BOUND;
    while calls.load(Ordering::Relaxed) < after_restart + 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("every caller got its value");
    }
    assert!(before > 0, "calls ran before the restart");
    assert!(
        calls.load(Ordering::Relaxed) >= after_restart + 500,
        "calls ran after the restart (reached again in {took:?})"
    );
    // Values written after the restart are in the new process.
    let stored: i64 = common::raw(&server, &redis::cmd("DBSIZE")).await;
    assert!(stored > 0, "the restarted server holds the new values");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_times_out_calls_and_thawed_answers_again() {
    let mut server = ServerProcess::redis();
    let timeout = Duration::from_millis(300);
    let backend = common::backend(&server, |c| c.timeout(timeout));
    backend
        .set("k", Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    tokio::task::block_in_place(|| server.freeze());
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = backend.get("k").await;
        assert!(
            matches!(
                outcome,
                Err(Error::Timeout {
                    backend: "redis",
                    ..
                })
            ),
            "{outcome:?}"
        );
        // Not a performance assertion: the call ends near its timeout, never hangs.
        let took = started.elapsed();
        eprintln!("measured: frozen server: get: {took:?}");
        assert!(took >= timeout && took < timeout * 4, "took {took:?}");
    }
    tokio::task::block_in_place(|| server.thaw());
    let started = Instant::now();
    assert_eq!(
        backend.get("k").await.unwrap().as_deref(),
        Some(&b"v"[..]),
        "it answers again, on a new connection"
    );
    eprintln!(
        "measured: thawed server: first get: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_keeps_cached_functions_answering_at_once() {
    let mut server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c.timeout(Duration::from_millis(300)));
    let layered = ReliabilityLayer::new(ReliabilityConfig {
        failure_threshold: 2,
        // Long enough that no probe comes due during the calls below, on
        // however busy a host.
        cool_down: Duration::from_secs(30),
        ..ReliabilityConfig::default()
    })
    .layer(Arc::new(backend.clone()));
    let cache = Cache::builder()
        .shared_backend(layered)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    tokio::task::block_in_place(|| server.freeze());
    let frozen_at = Instant::now();
    for _ in 0..2 {
        assert!(cache.get::<u8>("k").await.is_err());
    }
    eprintln!(
        "measured: frozen server: breaker open after {:?} (2 failures)",
        frozen_at.elapsed()
    );
    // Open: a cached function runs its body without waiting on the frozen
    // server (a call that waited would take its 300 ms timeout). Not a
    // performance assertion: the slowest of 21 calls under 100 ms.
    let mut slowest = Duration::ZERO;
    for _ in 0..21 {
        let started = Instant::now();
        assert_eq!(
            cache.get_or_insert_with("k", None, || async { 7_u8 }).await,
            7
        );
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("measured: open breaker: slowest of 21 cached calls: {slowest:?}");
    assert!(slowest < Duration::from_millis(100), "slowest {slowest:?}");
    tokio::task::block_in_place(|| server.thaw());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_listener_times_calls_out_instead_of_hanging() {
    let silent = SilentServer::start();
    for outcome in three_gets_at(&silent.address(), "silent listener").await {
        match outcome {
            Err(error @ (Error::Unavailable { .. } | Error::Timeout { .. })) => {
                assert!(error.is_temporary(), "{error:?}")
            }
            other => panic!("a silent listener gave {other:?}"),
        }
    }
}

/// Three `get`s, one after the other, by a backend with 300 ms timeouts
/// on the peer at `address` (not a Redis server); each bounded and
/// printed as `measured: <what>: ...`.
async fn three_gets_at(address: &str, what: &str) -> Vec<cachekit_core::Result<Option<Bytes>>> {
    let backend = RedisBackend::new(
        RedisBackendConfig::default()
            .url(format!("redis://{address}/0"))
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = tokio::time::timeout(RECOVERY_BOUND, backend.get("k"))
            .await
            .expect("the call ends");
        eprintln!(
            "measured: {what}: get: {:?}: {outcome:?}",
            started.elapsed()
        );
        outcomes.push(outcome);
    }
    outcomes
}

/// A TCP listener on 127.0.0.1 that answers whatever it reads with `HELLO`,
/// which is no RESP reply, and counts the connections it accepts; stops
/// when the sender it returns is dropped.
fn garbage_server() -> (
    String,
    std::sync::mpsc::Sender<()>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = mpsc::channel::<()>();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    std::thread::spawn(move || {
        while let Err(mpsc::TryRecvError::Empty) = stopped.try_recv() {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                let mut buffer = [0u8; 4096];
                while stream.read(&mut buffer).is_ok_and(|n| n > 0) {
                    if stream.write_all(b"HELLO\r\n").is_err() {
                        break;
                    }
                }
            });
        }
    });
    (address, stop, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replies_fail_the_call_without_a_panic() {
    let (address, _stop, accepted) = garbage_server();
    for outcome in three_gets_at(&address, "garbage replies").await {
        // An error, never a value or a panic; temporary, so that the
        // breaker counts it.
        let error = outcome.expect_err("garbage replies must fail the call");
        assert!(error.is_temporary(), "{error:?}");
    }
    // Each failed call gives up its connection: a server that came back
    // speaking Redis would be reached.
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(connections >= 3, "{connections} connections for 3 calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_server_fails_the_call_without_a_panic() {
    // Builds a rustls client (the crypto provider installed by the backend)
    // and fails its handshake: an error for the call, and for the next.
    let server = ServerProcess::redis();
    let backend = common::backend(&server, |c| {
        c.url(format!("rediss://127.0.0.1:{}/0", server.port()))
    });
    for _ in 0..2 {
        let started = Instant::now();
        let outcome = backend.get("k").await;
        eprintln!(
            "measured: TLS to a plain server: get: {:?}",
            started.elapsed()
        );
        assert!(outcome.is_err(), "{outcome:?}");
    }
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}
