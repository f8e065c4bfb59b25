//! Runs the built `metrics_service` example against a real memcached and
//! scrapes its Prometheus endpoint: cachekit's counters are there, labelled
//! with the memcached backend, and they move while the service runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::ServerProcess;

mod support;

use support::{Running, clean_command, example_binary, free_port, lines};

/// How long the example may take to serve its first scrape.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the counters have to move after the first scrape.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause between two connection attempts or two scrapes.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// One `GET /metrics`: the body, or why there is none.
fn scrape(addr: SocketAddr) -> Result<String, String> {
    let response = support::http::get(addr, "/metrics")?;
    if response.status != 200 {
        return Err(format!("status {}: {}", response.status, response.body));
    }
    Ok(response.body)
}

/// The samples of a Prometheus text page, by `name{labels}` as written.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of `name` whose labels contain each of `labels`
/// (`key="value"`), and how many there are.
fn total(samples: &HashMap<String, f64>, name: &str, labels: &[&str]) -> (f64, usize) {
    samples
        .iter()
        .filter(|(series, _)| {
            let (series_name, series_labels) =
                series.split_once('{').unwrap_or((series.as_str(), ""));
            series_name == name && labels.iter().all(|label| series_labels.contains(label))
        })
        .fold((0.0, 0), |(sum, n), (_, value)| (sum + value, n + 1))
}

/// The counters that must be there and move while the service runs.
const MOVING: &[(&str, &[&str])] = &[
    ("cachekit_loads_total", &[]),
    ("cachekit_misses_total", &[]),
    ("cachekit_l1_hits_total", &[]),
    ("cachekit_backend_hits_total", &[]),
    ("cachekit_bytes_written_total", &[]),
    (
        "cachekit_backend_operations_total",
        &[r#"backend="memcached""#],
    ),
    (
        "cachekit_backend_operation_seconds_count",
        &[r#"backend="memcached""#],
    ),
];

/// Exported from the start, whether or not they move.
const PRESENT: &[(&str, &[&str])] = &[
    ("cachekit_breaker_open", &[r#"backend="memcached""#]),
    ("cachekit_coalesced_total", &[]),
    ("cachekit_load_errors_total", &[]),
    ("cachekit_errors_total", &[]),
    ("cachekit_bytes_read_total", &[]),
    ("cachekit_backend_errors_total", &[r#"backend="memcached""#]),
    (
        "cachekit_backend_operation_seconds_sum",
        &[r#"backend="memcached""#],
    ),
    ("cachekit_l1_entries", &[]),
    ("cachekit_l1_bytes", &[]),
    ("cachekit_l1_evictions_total", &[]),
];

/// The series of [`MOVING`] and [`PRESENT`] that `page` lacks.
fn unexported(page: &str) -> Vec<&'static str> {
    let samples = samples(page);
    MOVING
        .iter()
        .chain(PRESENT)
        .filter(|(name, labels)| total(&samples, name, labels).1 == 0)
        .map(|(name, _)| *name)
        .collect()
}

#[test]
fn metrics_service_exports_memcached_metrics() {
    let binary = example_binary("metrics_service", "macros,metrics,memcached");
    let memcached = ServerProcess::memcached();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();

    let mut service = Running(
        clean_command(&binary)
            .env("METRICS_ADDR", addr.to_string())
            .env("METRICS_SERVICE_SECONDS", "30")
            .env("CACHEKIT_MEMCACHED_SERVERS", memcached.address())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts"),
    );

    // Its first line says where it serves (read on a thread: a silent child
    // must fail the test, not hang it).
    let first_line = lines(service.0.stdout.take().expect("piped stdout"));
    let line = first_line
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("the example prints where it serves");
    assert_eq!(line, format!("serving /metrics on http://{addr}/metrics"));

    // Scrape until every series is there: the example registers them as it
    // builds its caches, just after printing that line. Bounded.
    let started = Instant::now();
    let (before, first) = loop {
        let page = scrape(addr);
        let missing = page.as_deref().map(unexported).unwrap_or_default();
        match page {
            Ok(page) if missing.is_empty() => break (samples(&page), page),
            _ if started.elapsed() < STARTUP_TIMEOUT => {
                if let Some(status) = service.0.try_wait().expect("child status") {
                    panic!("the example exited ({status}) before serving its metrics");
                }
                std::thread::sleep(RETRY_INTERVAL);
            }
            Ok(page) => panic!("not exported after {STARTUP_TIMEOUT:?}: {missing:?}\n{page}"),
            Err(error) => panic!("no /metrics on {addr} after {STARTUP_TIMEOUT:?}: {error}"),
        }
    };
    assert!(
        first.contains(
            r#"cachekit_backend_operation_seconds{backend="memcached",operation="get",quantile="#
        ),
        "the latency summary has quantiles:\n{first}"
    );
    assert_eq!(
        total(&before, "cachekit_backend_operations_total", &[]).1,
        1,
        "one backend, memcached:\n{first}"
    );

    // Scrape until every counter has moved past the first scrape, bounded.
    let started = Instant::now();
    let mut stuck: Vec<&str> = MOVING.iter().map(|(name, _)| *name).collect();
    let mut last = first.clone();
    while !stuck.is_empty() && started.elapsed() < PROGRESS_TIMEOUT {
        std::thread::sleep(RETRY_INTERVAL);
        last = scrape(addr).unwrap_or_else(|error| panic!("scrape {addr}: {error}"));
        let now = samples(&last);
        stuck = MOVING
            .iter()
            .filter(|(name, labels)| total(&now, name, labels).0 <= total(&before, name, labels).0)
            .map(|(name, _)| *name)
            .collect();
    }
    assert!(
        stuck.is_empty(),
        "did not increase within {PROGRESS_TIMEOUT:?}: {stuck:?}\nfirst:\n{first}\nlast:\n{last}"
    );
    let after = samples(&last);
    assert_eq!(
        total(&after, "cachekit_errors_total", &[]).0,
        0.0,
        "memcached is up: no cache errors:\n{last}"
    );
    assert_eq!(
        total(&after, "cachekit_breaker_open", &[r#"backend="memcached""#]),
        (0.0, 1),
        "memcached is up: its breaker is closed:\n{last}"
    );
    assert!(
        service.0.try_wait().expect("child status").is_none(),
        "the service still runs"
    );
}
