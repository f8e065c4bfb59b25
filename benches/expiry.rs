//! `cargo xtask bench macro` (second binary): latency across an expiry.
//! 64 tasks read one hot key over memcached (no L1: every read is a round
//! trip) while its entry expires; the loader takes 50 ms. Three runs of the
//! same load:
//!
//! - **hits**: a 60 s TTL, nothing expires: the baseline;
//! - **expiry**: a 1 s TTL with `get_or_insert_with`: at each expiry the
//!   callers wait for the reload (single-flight: one load);
//! - **stale**: the same TTL with `get_or_revalidate` and a 10 s stale
//!   window: callers get the stale entry while one refresh runs.
//!
//! For each: the median, p99, p99.9 and maximum of every call, and the p99
//! of the calls in flight while a load ran (the calls an expiry can hold
//! up: over the whole run they are too few to move its p99). Prints a
//! Markdown table; docs/benchmarks.md records one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::{Cache, ConfigSource, Revalidate};

/// Concurrent callers of the hot key.
const TASKS: usize = 64;
/// How long each run lasts: two expiries of a 1 s TTL.
const RUN: Duration = Duration::from_millis(2_600);
/// How long the loader takes.
const LOAD: Duration = Duration::from_millis(50);

/// How a run reads the key.
#[derive(Clone, Copy)]
enum Mode {
    Hits,
    Expiry,
    Stale,
}

/// Every call of a run (when it started, how long it took), and when each
/// load began.
struct Run {
    calls: Vec<(Instant, Duration)>,
    loads: Vec<Instant>,
}

fn main() {
    let server = std::env::var("CACHEKIT_BENCH_MEMCACHED")
        .expect("run through `cargo xtask bench macro`, which starts the server");
    let server = server.split(',').next().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = {
        let _entered = runtime.enter();
        let config = MemcachedBackendConfig {
            servers: vec![server],
            ..Default::default()
        };
        Arc::new(MemcachedBackend::new(config).unwrap())
    };
    println!(
        "| run ({TASKS} tasks, one key, loader {LOAD:?}) | median | p99 | p99.9 | max | p99 of calls in flight while a load ran | loads |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, mode) in [
        ("hits (60 s TTL)", Mode::Hits),
        ("expiry (1 s TTL, no stale)", Mode::Expiry),
        ("stale (1 s TTL, 10 s stale)", Mode::Stale),
    ] {
        let cache = Cache::builder()
            .shared_backend(backend.clone())
            .namespace(format!("bench-expiry-{}", std::process::id()))
            .without_l1()
            .config(ConfigSource::defaults_only())
            .build()
            .unwrap();
        let run = runtime.block_on(run(cache, mode, name));
        print_row(name, run);
    }
}

async fn run(cache: Cache, mode: Mode, name: &str) -> Run {
    let key = format!("hot-{name}");
    let ttl = Some(match mode {
        Mode::Hits => Duration::from_secs(60),
        Mode::Expiry | Mode::Stale => Duration::from_secs(1),
    });
    let loads = Arc::new(Mutex::new(Vec::new()));
    let read = {
        let (cache, key, loads) = (cache.clone(), key.clone(), loads.clone());
        move || {
            let (cache, key, loads) = (cache.clone(), key.clone(), loads.clone());
            async move {
                let loader = move || async move {
                    loads.lock().unwrap().push(Instant::now());
                    tokio::time::sleep(LOAD).await;
                    format!("{:0>100}", 7)
                };
                match mode {
                    Mode::Hits | Mode::Expiry => cache.get_or_insert_with(&key, ttl, loader).await,
                    Mode::Stale => {
                        let stale = Revalidate::stale(Duration::from_secs(10));
                        cache.get_or_revalidate(&key, ttl, stale, loader).await
                    }
                }
            }
        }
    };
    read().await;
    let end = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let read = read.clone();
        tasks.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            while Instant::now() < end {
                let started = Instant::now();
                let value = read().await;
                calls.push((started, started.elapsed()));
                assert_eq!(value.len(), 100);
            }
            calls
        }));
    }
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.unwrap());
    }
    // The first load primed the key before the run.
    let loads = loads.lock().unwrap().iter().skip(1).copied().collect();
    cache.delete(&key).await.unwrap();
    Run { calls, loads }
}

fn print_row(name: &str, run: Run) {
    let mut all: Vec<Duration> = run.calls.iter().map(|(_, took)| *took).collect();
    all.sort();
    let mut after: Vec<Duration> = run
        .calls
        .iter()
        .filter(|(started, took)| {
            run.loads
                .iter()
                .any(|load| *started < *load + LOAD && *started + *took > *load)
        })
        .map(|(_, took)| *took)
        .collect();
    after.sort();
    let after = if after.is_empty() {
        "no load".to_owned()
    } else {
        format!("{} ({} calls)", ms(quantile(&after, 0.99)), after.len())
    };
    println!(
        "| {name} | {} | {} | {} | {} | {after} | {} |",
        ms(quantile(&all, 0.5)),
        ms(quantile(&all, 0.99)),
        ms(quantile(&all, 0.999)),
        ms(*all.last().unwrap()),
        run.loads.len()
    );
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
