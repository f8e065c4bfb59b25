//! What the `metrics` feature exports: with `metrics-util`'s debugging
//! recorder installed before anything else, a scenario over the in-process
//! backend and a failing one moves every metric cachekit documents (but
//! the memcached and Redis events, which need their servers), and each is
//! found under its name, with its labels and a plausible value.
//!
//! One test in this binary: the recorder is the process's, and handles are
//! registered when a cache is built, so it must be installed first.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachekit::{
    Backend, BreakerState, Cache, ConfigSource, L1Config, MemoryBackend, ReliabilityConfig,
    ReliabilityLayer, cache,
};
use cachekit_core::backend::testkit::{Fault, FaultyBackend};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Concurrent callers of one slow key.
const CALLERS: u64 = 5;
/// Longest wait for anything the test waits for.
const BOUND: Duration = Duration::from_secs(60);

static CALLS: AtomicU64 = AtomicU64::new(0);

#[cache(namespace = "metrics-fn")]
async fn doubled(n: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    n * 2
}

/// The operations answered so far by the one backend named `backend` in use.
fn operations(backend: &str) -> u64 {
    let stats = cachekit::stats();
    let mut found = stats.backends.iter().filter(|b| b.backend == backend);
    let one = found.next().unwrap_or_else(|| panic!("{backend}: in use"));
    assert!(found.next().is_none(), "one {backend} backend in use");
    one.operations
}

/// Waits (bounded) until `backend` has answered `target` operations.
async fn wait_for(backend: &str, target: u64) {
    let mut waited = Duration::ZERO;
    while operations(backend) < target && waited < BOUND {
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += Duration::from_millis(5);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// One exported metric: name, labels (sorted), kind, value.
#[derive(Debug)]
struct Seen {
    name: String,
    labels: Vec<(String, String)>,
    kind: &'static str,
    value: DebugValue,
}

fn snapshot(snapshotter: &Snapshotter) -> Vec<Seen> {
    let mut seen: Vec<Seen> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let kind = match value {
                DebugValue::Counter(_) => "counter",
                DebugValue::Gauge(_) => "gauge",
                DebugValue::Histogram(_) => "histogram",
            };
            Seen {
                name: key.key().name().to_owned(),
                labels,
                kind,
                value,
            }
        })
        .collect();
    seen.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    seen
}

/// The value of metric `name` with exactly `labels`.
fn value<'s>(seen: &'s [Seen], name: &str, labels: &[(&str, &str)]) -> &'s DebugValue {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wanted.sort();
    let found: Vec<_> = seen
        .iter()
        .filter(|s| s.name == name && s.labels == wanted)
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} exported once");
    &found[0].value
}

/// The value of counter `name` with `labels`.
fn counter(seen: &[Seen], name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(seen, name, labels) {
        DebugValue::Counter(count) => *count,
        other => panic!("{name} {labels:?}: a counter, not {other:?}"),
    }
}

/// The value of gauge `name` with `labels`.
fn gauge(seen: &[Seen], name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(seen, name, labels) {
        DebugValue::Gauge(value) => value.into_inner(),
        other => panic!("{name} {labels:?}: a gauge, not {other:?}"),
    }
}

/// The samples of histogram `name` with `labels`.
fn histogram(seen: &[Seen], name: &str, labels: &[(&str, &str)]) -> usize {
    match value(seen, name, labels) {
        DebugValue::Histogram(samples) => samples.len(),
        other => panic!("{name} {labels:?}: a histogram, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_under_its_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the first recorder of this process");

    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let build = |namespace: &str, l1: Option<L1Config>| {
        let builder = Cache::builder()
            .shared_backend(Arc::clone(&memory))
            .namespace(namespace)
            .config(ConfigSource::defaults_only());
        match l1 {
            Some(l1) => builder.l1(l1),
            None => builder.without_l1(),
        }
        .build()
        .expect("a valid cache")
    };
    let main = build("metrics", Some(L1Config::default()));
    let reader = build("metrics", None);
    let tiny = build(
        "metrics-tiny",
        Some(L1Config {
            max_entries: 2,
            ..L1Config::default()
        }),
    );

    // Misses and loads, then an L1 hit; a backend hit of the reader.
    assert_eq!(
        main.get_or_insert_with("a", None, || async { 1_u64 }).await,
        1
    );
    assert_eq!(
        main.get_or_insert_with("a", None, || async { 2_u64 }).await,
        1
    );
    assert_eq!(reader.get::<u64>("a").await.unwrap(), Some(1));
    // A fallible loader's error.
    let failed: Result<u64, &str> = main
        .try_get_or_insert_with("failing", None, || async { Err("no") })
        .await;
    assert_eq!(failed, Err("no"));
    // Callers of one slow key: one loads, the others wait on it. The load
    // waits until every other caller has read the key (one operation
    // each; the leader also takes the lock and reads again).
    let target = operations("memory") + CALLERS + 2;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let main = main.clone();
            tokio::spawn(async move {
                let load = || async move {
                    wait_for("memory", target).await;
                    7_u64
                };
                main.get_or_insert_with("hot", None, load).await
            })
        })
        .collect();
    for task in tasks {
        let value = tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
        assert_eq!(value, 7);
    }
    assert!(main.stats().coalesced > 0, "{:?}", main.stats());
    // A tiny L1 evicts.
    for key in 0..5_u64 {
        let loaded = tiny
            .get_or_insert_with(&key.to_string(), None, || async move { key })
            .await;
        assert_eq!(loaded, key);
    }

    // A cached function: a miss, then an L1 hit (the shared tier).
    assert_eq!(doubled(21).await, 42);
    assert_eq!(doubled(21).await, 42);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);

    // A backend that is down: errors, then its breaker opens.
    let faulty = FaultyBackend::new(MemoryBackend::new());
    faulty.set_fault(Fault::Down);
    let reliability = ReliabilityConfig::default()
        .failure_threshold(2)
        .retries(0)
        .cool_down(Duration::from_secs(600));
    let guarded = ReliabilityLayer::new(reliability).layer(Arc::new(faulty));
    let down = Cache::builder()
        .shared_backend(guarded)
        .namespace("metrics-down")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .expect("a valid cache");
    for _ in 0..4 {
        assert_eq!(
            down.get_or_insert_with("k", None, || async { 3_u64 }).await,
            3
        );
    }
    let stats = cachekit::stats();
    let faulty_stats = stats
        .backends
        .iter()
        .find(|b| b.backend == "faulty")
        .expect("the faulty backend in use");
    assert_eq!(faulty_stats.breaker, BreakerState::Open, "{faulty_stats:?}");

    let seen = snapshot(&snapshotter);
    let mut listed = BTreeSet::new();
    for s in &seen {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!(
            "{} {{{}}} {} = {:?}",
            s.name,
            labels.join(","),
            s.kind,
            s.value
        );
        listed.insert((s.name.as_str(), s.kind));
    }
    eprintln!("names and kinds: {listed:#?}");

    let cache = |name| [("cache", name)];
    let function = "metrics_export::doubled";
    // Per cache (or function), the counters of `CacheStats`.
    assert!(counter(&seen, "cachekit_misses_total", &cache("metrics")) >= 3);
    assert!(counter(&seen, "cachekit_loads_total", &cache("metrics")) >= 3);
    assert!(counter(&seen, "cachekit_load_errors_total", &cache("metrics")) >= 1);
    assert!(counter(&seen, "cachekit_coalesced_total", &cache("metrics")) >= 1);
    assert!(counter(&seen, "cachekit_l1_hits_total", &cache("metrics")) >= 1);
    assert!(counter(&seen, "cachekit_backend_hits_total", &cache("metrics")) >= 1);
    assert!(counter(&seen, "cachekit_bytes_read_total", &cache("metrics")) > 0);
    assert!(counter(&seen, "cachekit_bytes_written_total", &cache("metrics")) > 0);
    assert!(counter(&seen, "cachekit_errors_total", &cache("metrics-down")) >= 4);
    assert!(counter(&seen, "cachekit_misses_total", &cache(function)) >= 1);
    assert!(counter(&seen, "cachekit_loads_total", &cache(function)) >= 1);
    assert!(counter(&seen, "cachekit_l1_hits_total", &cache(function)) >= 1);
    assert!(counter(&seen, "cachekit_bytes_written_total", &cache(function)) > 0);
    // They agree with the snapshot of the process.
    let main_stats = main.stats();
    let reader_stats = reader.stats();
    assert_eq!(
        counter(&seen, "cachekit_misses_total", &cache("metrics")),
        main_stats.misses + reader_stats.misses
    );
    assert_eq!(
        counter(&seen, "cachekit_coalesced_total", &cache("metrics")),
        main_stats.coalesced
    );
    // Per backend.
    let memory_ops = counter(
        &seen,
        "cachekit_backend_operations_total",
        &[("backend", "memory")],
    );
    // Labelled by the backend's name: the in-process backends of the
    // caches and of the function (the process's) count as one.
    let memory_in_use: u64 = stats
        .backends
        .iter()
        .filter(|b| b.backend == "memory")
        .map(|b| b.operations)
        .sum();
    assert_eq!(memory_ops, memory_in_use);
    assert!(
        counter(
            &seen,
            "cachekit_backend_operations_total",
            &[("backend", "faulty")]
        ) >= 4
    );
    let errors = |kind| [("backend", "faulty"), ("kind", kind)];
    assert!(
        counter(
            &seen,
            "cachekit_backend_errors_total",
            &errors("unavailable")
        ) >= 2
    );
    assert!(
        counter(
            &seen,
            "cachekit_backend_errors_total",
            &errors("circuit_open")
        ) >= 1
    );
    let to = |to| [("backend", "faulty"), ("to", to)];
    assert_eq!(
        counter(&seen, "cachekit_breaker_transitions_total", &to("open")),
        1
    );
    assert_eq!(
        counter(&seen, "cachekit_breaker_transitions_total", &to("closed")),
        0
    );
    assert_eq!(
        gauge(&seen, "cachekit_breaker_open", &[("backend", "faulty")]),
        1.0
    );
    let latency = |operation| [("backend", "memory"), ("operation", operation)];
    assert!(histogram(&seen, "cachekit_backend_operation_seconds", &latency("get")) > 0);
    assert!(histogram(&seen, "cachekit_backend_operation_seconds", &latency("set")) > 0);
    assert!(
        histogram(
            &seen,
            "cachekit_backend_operation_seconds",
            &latency("lock")
        ) > 0
    );
    // Per L1 tier.
    assert_eq!(
        gauge(&seen, "cachekit_l1_entries", &cache("metrics-tiny")),
        2.0
    );
    assert!(gauge(&seen, "cachekit_l1_bytes", &cache("metrics-tiny")) > 0.0);
    assert!(counter(&seen, "cachekit_l1_evictions_total", &cache("metrics-tiny")) >= 3);
    assert!(gauge(&seen, "cachekit_l1_entries", &cache("metrics")) >= 1.0);
    // A cached function's own L1, under the function's path.
    let function = cache("metrics_export::doubled");
    assert!(gauge(&seen, "cachekit_l1_entries", &function) >= 1.0);
    assert!(gauge(&seen, "cachekit_l1_bytes", &function) > 0.0);
    assert_eq!(counter(&seen, "cachekit_l1_evictions_total", &function), 0);

    // Every documented name but the servers' events, of its kind.
    let documented = [
        ("cachekit_l1_hits_total", "counter"),
        ("cachekit_backend_hits_total", "counter"),
        ("cachekit_misses_total", "counter"),
        ("cachekit_coalesced_total", "counter"),
        ("cachekit_stale_hits_total", "counter"),
        ("cachekit_loads_total", "counter"),
        ("cachekit_refreshes_total", "counter"),
        ("cachekit_load_errors_total", "counter"),
        ("cachekit_undecryptable_total", "counter"),
        ("cachekit_errors_total", "counter"),
        ("cachekit_bytes_read_total", "counter"),
        ("cachekit_bytes_written_total", "counter"),
        ("cachekit_backend_operations_total", "counter"),
        ("cachekit_backend_errors_total", "counter"),
        ("cachekit_breaker_transitions_total", "counter"),
        ("cachekit_backend_operation_seconds", "histogram"),
        ("cachekit_breaker_open", "gauge"),
        ("cachekit_l1_entries", "gauge"),
        ("cachekit_l1_bytes", "gauge"),
        ("cachekit_l1_evictions_total", "counter"),
    ];
    let documented: BTreeSet<_> = documented.into_iter().collect();
    assert_eq!(listed, documented, "exported: the documented names only");
    drop((main, reader, tiny, down));
}
