//! Runs the built `axum_service` example against a real memcached and sends
//! it HTTP requests: a user is served from the cache after the first
//! request (the database ran one query), an unknown one is a 404, and
//! /metrics and /health answer; a broken configuration stops it at startup.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::ServerProcess;

mod support;

use support::http::{Response, get};
use support::{Running, clean_command, example_binary, free_port, lines, run_to_end};

/// How long the example may take to print where it listens, and then to
/// accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause between two connection attempts.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// The database query count the service reports in `x-db-queries`.
fn db_queries(response: &Response) -> u64 {
    response
        .header("x-db-queries")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no x-db-queries header: {:?}", response.headers))
}

#[test]
fn axum_service_caches_users_in_memcached() {
    let binary = example_binary("axum_service", "macros,metrics,memcached");
    let mut memcached = ServerProcess::memcached();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();

    let mut service = Running(
        clean_command(&binary)
            .env("AXUM_SERVICE_ADDR", addr.to_string())
            .env("CACHEKIT_MEMCACHED_SERVERS", memcached.address())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts"),
    );
    let stdout = lines(service.0.stdout.take().expect("piped stdout"));
    let line = stdout
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("the example prints where it listens");
    assert_eq!(line, format!("listening on http://{addr}"));

    // It listens before printing, so the first request is answered; retried
    // only on connection errors, bounded.
    let started = Instant::now();
    let first = loop {
        match get(addr, "/users/1") {
            Ok(response) => break response,
            Err(error) if started.elapsed() >= STARTUP_TIMEOUT => {
                panic!("no answer on {addr} after {STARTUP_TIMEOUT:?}: {error}")
            }
            Err(_) => std::thread::sleep(RETRY_INTERVAL),
        }
    };
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(
        first.body,
        r#"{"id":1,"name":"Ada Lovelace","email":"ada@example.com"}"#
    );
    assert_eq!(
        db_queries(&first),
        1,
        "the first request queries the database"
    );

    let second = get(addr, "/users/1").expect("a second request");
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body, first.body, "the same user");
    assert_eq!(
        db_queries(&second),
        1,
        "the second request is served from the cache"
    );

    let other = get(addr, "/users/2").expect("another user");
    assert_eq!(other.status, 200, "{}", other.body);
    assert!(
        other.body.contains(r#""name":"Grace Hopper""#),
        "{}",
        other.body
    );
    assert_eq!(db_queries(&other), 2, "another user is another query");

    let missing = get(addr, "/users/999").expect("an unknown user");
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(db_queries(&missing), 3);
    let missing_again = get(addr, "/users/999").expect("an unknown user again");
    assert_eq!(missing_again.status, 404, "{}", missing_again.body);
    assert_eq!(db_queries(&missing_again), 3, "the miss is cached too");

    let metrics = get(addr, "/metrics").expect("the metrics page");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    for counter in ["cachekit_l1_hits_total", "cachekit_loads_total"] {
        assert!(
            metrics.body.lines().any(|line| line.starts_with(counter)),
            "{counter} is exported:\n{}",
            metrics.body
        );
    }
    assert!(
        metrics.body.lines().any(|line| {
            line.starts_with("cachekit_backend_operations_total{")
                && line.contains(r#"backend="memcached""#)
        }),
        "the cache is in memcached:\n{}",
        metrics.body
    );

    let health = get(addr, "/health").expect("the health probe");
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.body.contains("memcached: up"), "{}", health.body);

    // With memcached stopped the probe says the service is not ready.
    memcached.stop();
    let health = get(addr, "/health").expect("the health probe");
    assert_eq!(health.status, 503, "{}", health.body);

    assert!(
        service.0.try_wait().expect("child status").is_none(),
        "the service still runs"
    );
}

#[test]
fn axum_service_refuses_a_broken_configuration() {
    let binary = example_binary("axum_service", "macros,metrics,memcached");
    let mut command = clean_command(&binary);
    command
        .env("AXUM_SERVICE_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("CACHEKIT_BACKEND", "nosuch");
    let output = run_to_end(command, STARTUP_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it exits with an error: {stdout}");
    assert_eq!(stdout, "", "it does not listen");
    assert!(
        stderr.starts_with(
            "axum_service: invalid setting `backend` (from environment variable CACHEKIT_BACKEND): \
             unknown backend \"nosuch\""
        ),
        "{stderr}"
    );
}
