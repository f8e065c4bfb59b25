//! Failures: a server that never answers, a server that answers twice or
//! with garbage, a restarted server, a frozen one, and the breaker
//! (`fleet_faults.rs` stops one server of a fleet under load).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cachekit_core::ConfigSource;
use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::SilentServer;
use cachekit_core::{Backend, Cache, Error};
use cachekit_core::{CircuitOpen, ReliabilityConfig, ReliabilityLayer};
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    let silent = SilentServer::start();
    let backend = MemcachedBackend::new(MemcachedBackendConfig {
        servers: vec![silent.address()],
        timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let result = backend.get("k").await;
        assert_timed_out(&result);
        eprintln!("measured: silent listener: get: {:?}", started.elapsed());
        // Not a performance assertion: the call must end near its timeout, never hang.
        assert!(
            started.elapsed() < Duration::from_millis(1300),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_on_an_open_connection_times_out() {
    // Answers the first request (a miss), then holds the connection unanswered.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (done, finished) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (connection, _) = listener.accept().unwrap();
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(&connection).read_line(&mut line).unwrap();
        // `mg k v O<opaque> k`: a miss echoes the opaque token and the key.
        let opaque = line.split_whitespace().find(|t| t.starts_with('O'));
        let miss = format!("EN {} kk\r\n", opaque.expect("an opaque token"));
        (&connection).write_all(miss.as_bytes()).unwrap();
        let _ = finished.recv_timeout(Duration::from_secs(10));
    });
    let timeout = Duration::from_millis(300);
    let backend = MemcachedBackend::new(MemcachedBackendConfig {
        servers: vec![address],
        timeout,
        max_pool_size: 1,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(backend.get("k").await.unwrap(), None);
    let started = Instant::now();
    let result = backend.get("k").await;
    assert_timed_out(&result);
    // Not a performance assertion: the call must end near its timeout, never hang.
    let took = started.elapsed();
    eprintln!("measured: server silent on an open connection: get: {took:?}");
    assert!(took >= timeout && took < timeout * 4, "took {took:?}");
    done.send(()).unwrap();
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_after_retries() {
    let mut server = cachekit_core::backend::testkit::ServerProcess::memcached();
    let address = server.address();
    server.stop();
    let backend = MemcachedBackend::new(MemcachedBackendConfig {
        servers: vec![address],
        timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap();
    let started = Instant::now();
    let result = backend.set("k", Bytes::from_static(b"v"), None).await;
    eprintln!("measured: killed server: set: {:?}", started.elapsed());
    assert!(
        matches!(
            result,
            Err(Error::Unavailable {
                backend: "memcached",
                domain: Some(0),
                ..
            })
        ),
        "{result:?}"
    );
    // The cause is kept: the OS's refusal, down the `source()` chain.
    let error = result.unwrap_err();
    assert!(error.is_temporary());
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut refused = false;
    while let Some(current) = cause {
        refused |= current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        cause = current.source();
    }
    assert!(refused, "no io::Error in the chain of {error:?}");
}

/// memcached's answer to one `mg <key> v ...` line on a hit on
/// `value-of-<key>`, echoing the request's opaque token and key as memcached
/// does when asked (`O<opaque> k`); `None` at the end of the stream.
fn hit_for(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut tokens = line.split_whitespace().skip(1);
    let key = tokens.next()?.to_owned();
    let echo = match tokens.find(|token| token.starts_with('O')) {
        Some(opaque) => format!(" {opaque} k{key}"),
        None => String::new(),
    };
    let value = common::expected(&key);
    Some(format!("VA {}{echo}\r\n{value}\r\n", value.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_twice_never_hands_a_caller_another_keys_value() {
    // On its first connection, reads two gets and answers the first twice;
    // on the next, answers each get with its own key's value.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        for connection in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(&stream);
            if connection == 0 {
                let first = hit_for(&mut reader).expect("a first get");
                hit_for(&mut reader).expect("a second get");
                (&stream).write_all(first.repeat(2).as_bytes()).unwrap();
                // Until the client closes the connection.
                let _ = reader.read_to_end(&mut Vec::new());
            } else {
                for _ in 0..100 {
                    let Some(hit) = hit_for(&mut reader) else {
                        break;
                    };
                    (&stream).write_all(hit.as_bytes()).unwrap();
                }
            }
        }
    });
    // One connection, so that both gets share it.
    let backend = MemcachedBackend::new(MemcachedBackendConfig {
        servers: vec![address],
        max_pool_size: 1,
        ..Default::default()
    })
    .unwrap();
    let started = Instant::now();
    let (first, second) = tokio::join!(backend.get("first"), backend.get("second"));
    eprintln!(
        "measured: server answering twice: two gets: {:?}",
        started.elapsed()
    );
    // The repeated answer fails its connection; the call it reached is
    // retried on a new one.
    for (key, got) in [("first", first), ("second", second)] {
        assert_eq!(
            got.expect("answered"),
            Some(Bytes::from(common::expected(key))),
            "{key} gets its own value"
        );
    }
    drop(backend);
    let joined = tokio::task::spawn_blocking(move || server.join());
    tokio::time::timeout(Duration::from_secs(10), joined)
        .await
        .expect("the fake server ends once the backend is dropped")
        .unwrap()
        .expect("the fake server's script succeeds");
}

/// A TCP listener on 127.0.0.1 that answers every line it reads with
/// `HELLO`, which is no memcached reply; stops when `stop` is dropped.
fn garbage_server() -> (String, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        while let Err(mpsc::TryRecvError::Empty) = stopped.try_recv() {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            std::thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if (&stream).write_all(b"HELLO\r\n").is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    (address, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_garbage_fails_the_call_as_unavailable() {
    let (address, _stop) = garbage_server();
    let backend = MemcachedBackend::new(MemcachedBackendConfig {
        servers: vec![address],
        timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let result = backend.get("k").await;
        eprintln!("measured: garbage replies: get: {:?}", started.elapsed());
        // Every attempt reads a reply that is not memcached's: the call
        // fails as the server's, never as a value or a panic.
        assert!(
            matches!(
                result,
                Err(Error::Unavailable {
                    backend: "memcached",
                    domain: Some(0),
                    ..
                })
            ),
            "{result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reached_on_a_new_connection_and_not_counted_as_failing() {
    let mut servers = common::servers(1);
    // No retries: a failure counted would fail the call.
    let backend = common::backend(&servers, |c| c.retry_attempts = 0);
    let address = servers[0].address();
    backend
        .set("k", Bytes::from_static(b"v"), None)
        .await
        .expect("stored");
    servers[0].restart();
    // The pooled connection is now closed by the server: the call finds out
    // before sending, and goes out on a new one.
    let started = Instant::now();
    assert_eq!(backend.get("k").await.expect("answered"), None);
    eprintln!(
        "measured: restarted server: first get: {:?}",
        started.elapsed()
    );
    assert_eq!(backend.live_servers(), [address.as_str()]);
}

/// `result` is memcached's `Error::Timeout`.
fn assert_timed_out<T: std::fmt::Debug>(result: &cachekit_core::Result<T>) {
    assert!(
        matches!(
            result,
            Err(Error::Timeout {
                backend: "memcached",
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_costs_the_healthy_servers_keys_nothing() {
    let mut servers = common::servers(3);
    let backend = common::backend(&servers, |c| {
        c.timeout = Duration::from_millis(300);
        c.dead_time = Duration::from_secs(1);
    });
    let victim = servers[1].address();
    let cache = Cache::builder()
        .backend(backend.clone())
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let keys: Vec<String> = (0..150).map(|i| format!("frozen-test:{i}")).collect();
    // By the server that owns the key on the wire, with every server live.
    let owner = |key: &str| backend.server_for(&cache.backend_key(key)).to_string();
    let healthy: Arc<Vec<bool>> = Arc::new(keys.iter().map(|k| owner(k) != victim).collect());
    assert!(healthy.iter().any(|h| !h) && healthy.iter().any(|h| *h));
    for key in &keys {
        cache
            .get_or_insert_with(key, None, || async { common::expected(key) })
            .await;
    }

    servers[1].freeze();
    let failed = Arc::new(AtomicUsize::new(0));
    let uncached = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    // The slowest call on the frozen server's keys, in microseconds.
    let slowest_frozen = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(keys);
    let frozen_at = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (cache, keys, healthy) = (cache.clone(), keys.clone(), healthy.clone());
            let (failed, uncached, calls) = (failed.clone(), uncached.clone(), calls.clone());
            let slowest_frozen = slowest_frozen.clone();
            tokio::spawn(async move {
                let stop = Instant::now() + Duration::from_secs(2);
                let mut i = task;
                while Instant::now() < stop && i < 1_000_000 {
                    let at = i % keys.len();
                    let key = &keys[at];
                    i += 16;
                    if !healthy[at] {
                        // The frozen server's keys may fail or run uncached.
                        let started = Instant::now();
                        let _ = cache.get::<String>(key).await;
                        let took = started.elapsed().as_micros() as u64;
                        slowest_frozen.fetch_max(took, Ordering::Relaxed);
                        continue;
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    match cache.get::<String>(key).await {
                        Ok(Some(value)) => assert_eq!(value, common::expected(key)),
                        Ok(None) | Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let value = cache
                        .get_or_insert_with(key, None, || async {
                            uncached.fetch_add(1, Ordering::Relaxed);
                            common::expected(key)
                        })
                        .await;
                    assert_eq!(value, common::expected(key));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no task panicked");
    }
    let calls = calls.load(Ordering::Relaxed);
    assert!(calls > 0);
    assert_eq!(
        (
            failed.load(Ordering::Relaxed),
            uncached.load(Ordering::Relaxed)
        ),
        (0, 0),
        "failed and uncached calls for healthy servers' keys, of {calls}"
    );
    eprintln!(
        "measured: one of three frozen: {calls} calls on healthy keys in {:?}, none failed; \
         slowest call on the frozen server's keys {:?}",
        frozen_at.elapsed(),
        Duration::from_micros(slowest_frozen.load(Ordering::Relaxed))
    );

    // Thawed: after its dead time the server rejoins, and keys it owns are cached there again.
    servers[1].thaw();
    let thawed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cached_again = false;
    for round in 0..50 {
        if cached_again || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A key never used before, owned by the victim once it is live again.
        let Some(key) = (0..1_000)
            .map(|n| format!("frozen-test:again:{round}:{n}"))
            .find(|key| owner(key) == victim)
        else {
            continue;
        };
        let loads = AtomicUsize::new(0);
        for _ in 0..2 {
            cache
                .get_or_insert_with(&key, None, || async {
                    loads.fetch_add(1, Ordering::Relaxed);
                    common::expected(&key)
                })
                .await;
        }
        cached_again = loads.load(Ordering::Relaxed) == 1;
    }
    assert!(cached_again, "the thawed server's keys are cached again");
    eprintln!(
        "measured: one of three thawed: its keys cached again after {:?}",
        thawed.elapsed()
    );
}

/// A cache over `backend` behind a breaker that opens after 2 failures and
/// cools down for `cool_down`.
fn breaker_cache(backend: MemcachedBackend, cool_down: Duration) -> Cache {
    let layered = ReliabilityLayer::new(ReliabilityConfig {
        failure_threshold: 2,
        cool_down,
        ..ReliabilityConfig::default()
    })
    .layer(Arc::new(backend));
    Cache::builder()
        .shared_backend(layered)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_costs_a_cached_call_nothing_and_a_probe_closes_it() {
    let mut servers = common::servers(1);
    let backend = common::backend(&servers, |c| {
        c.retry_attempts = 0;
        c.timeout = Duration::from_millis(300);
    });
    let cool_down = Duration::from_millis(500);
    let cache = breaker_cache(backend, cool_down);
    servers[0].freeze();
    let frozen_at = Instant::now();
    for _ in 0..2 {
        assert!(cache.get::<u8>("k").await.is_err());
    }
    eprintln!(
        "measured: frozen server: breaker open after {:?} (2 failures)",
        frozen_at.elapsed()
    );
    // Open: each call runs its body at once. Not a performance assertion:
    // a call that waited on the frozen server would take its 300 ms
    // timeout. A round of 21 calls all under 1 ms, in at most three (a
    // shared machine may pause any one call).
    let mut slowest = Vec::new();
    for _ in 0..3 {
        let mut took = Duration::ZERO;
        for _ in 0..21 {
            let started = Instant::now();
            assert_eq!(
                cache.get_or_insert_with("k", None, || async { 7_u8 }).await,
                7
            );
            took = took.max(started.elapsed());
        }
        slowest.push(took);
        if took < Duration::from_millis(1) {
            break;
        }
    }
    eprintln!("measured: open breaker: slowest cached call of each round of 21: {slowest:?}");
    assert!(
        slowest.last().unwrap() < &Duration::from_millis(1),
        "slowest call of each round: {slowest:?}"
    );

    // Back, and after the cool-down one probe closes it: values are cached again.
    servers[0].thaw();
    tokio::time::sleep(cool_down).await;
    let probed = Instant::now();
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        cache
            .get_or_insert_with("back", None, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                1_u8
            })
            .await;
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "cached after the probe");
    eprintln!(
        "measured: breaker closed by a probe: three cached calls after the cool-down: {:?}",
        probed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_cancelled_on_a_frozen_server_does_not_keep_the_breaker_open() {
    let mut servers = common::servers(1);
    let backend = common::backend(&servers, |c| {
        c.retry_attempts = 0;
        c.timeout = Duration::from_millis(300);
    });
    let cool_down = Duration::from_millis(300);
    let cache = breaker_cache(backend, cool_down);
    cache.set("k", &1_u8, None).await.unwrap();
    servers[0].freeze();
    for _ in 0..2 {
        assert!(cache.get::<u8>("k").await.is_err());
    }
    tokio::time::sleep(cool_down).await;
    // The probe's caller gives up before the frozen server's timeout.
    let probe = tokio::time::timeout(Duration::from_millis(50), cache.get::<u8>("k")).await;
    assert!(probe.is_err(), "the probe was still waiting");
    servers[0].thaw();
    let thawed = Instant::now();
    // The next call probes (no second cool-down), and its success closes the breaker.
    let first = cache.get::<u8>("k").await;
    let open =
        matches!(&first, Err(Error::Unavailable { source, .. }) if source.is::<CircuitOpen>());
    assert!(!open, "the cancelled probe freed its slot: {first:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answered = matches!(first, Ok(Some(1)));
    while Instant::now() < deadline && !answered {
        tokio::time::sleep(Duration::from_millis(50)).await;
        answered = matches!(cache.get::<u8>("k").await, Ok(Some(1)));
    }
    assert!(answered, "the breaker closed after the thaw");
    eprintln!(
        "measured: cancelled probe: breaker closed {:?} after the thaw",
        thawed.elapsed()
    );
}
