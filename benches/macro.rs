//! `cargo xtask bench macro`: what `#[cache]` costs, against the raw
//! operation measured in the same run. xtask starts a memcached (pinned to
//! one CPU) and runs this binary (pinned to another) with its address in
//! `CACHEKIT_BENCH_MEMCACHED`.
//!
//! Prints a Markdown table; docs/benchmarks.md records one.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::config::ConfigSource;
use cachekit::{Cache, cache};
use dashmap::DashMap;

/// Calls per sample for the L1 rows: one `Instant` pair per batch, so that
/// reading the clock does not dominate a call of about 100 ns.
const BATCH: u32 = 200;
const L1_SAMPLES: usize = 2_000;
const BACKEND_SAMPLES: usize = 20_000;
const WARMUP: usize = 2_000;

/// 100 bytes, like the other benchmarks' values.
fn value_for(n: u64) -> String {
    format!("{n:0>100}")
}

#[cache(namespace = "bench")]
fn l1_hit(n: u64) -> String {
    value_for(n)
}

#[cache(namespace = "bench")]
async fn l1_hit_async(n: u64) -> String {
    value_for(n)
}

static BACKEND: OnceLock<Arc<MemcachedBackend>> = OnceLock::new();

fn memcached() -> Arc<MemcachedBackend> {
    BACKEND.get().expect("set in main").clone()
}

#[cache(namespace = "bench", backend = memcached(), l1 = false)]
async fn backend_hit(n: u64) -> String {
    value_for(n)
}

fn main() {
    let server = std::env::var("CACHEKIT_BENCH_MEMCACHED")
        .expect("run through `cargo xtask bench macro`, which starts the server");
    let server = server.split(',').next().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();

    // L1 hits: a raw DashMap get (cloning the value out, as a call must)
    // next to the cached functions, taking turns batch by batch.
    let raw: DashMap<u64, String> = DashMap::new();
    raw.insert(42, value_for(42));
    assert_eq!(l1_hit(42), value_for(42));
    runtime.block_on(async { assert_eq!(l1_hit_async(42).await, value_for(42)) });
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..WARMUP / 10 + L1_SAMPLES {
        let record = round >= WARMUP / 10;
        let started = Instant::now();
        for _ in 0..BATCH {
            black_box(raw.get(black_box(&42)).map(|v| v.clone()));
        }
        let raw_lap = started.elapsed();
        let started = Instant::now();
        for _ in 0..BATCH {
            black_box(l1_hit(black_box(42)));
        }
        let sync_lap = started.elapsed();
        let async_lap = runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..BATCH {
                black_box(l1_hit_async(black_box(42)).await);
            }
            started.elapsed()
        });
        if record {
            samples[0].push(raw_lap / BATCH);
            samples[1].push(sync_lap / BATCH);
            samples[2].push(async_lap / BATCH);
        }
    }
    assert_eq!(
        l1_hit_stats().loads,
        1,
        "every call after the first is a hit"
    );
    let [raw_samples, sync_samples, async_samples] = samples;
    let raw = median(raw_samples);
    rows.push(row(
        "raw `DashMap<u64, String>` get + clone (median)",
        nanos(raw),
        "1.00x".into(),
    ));
    let sync = median(sync_samples);
    rows.push(row(
        "`#[cache]` `fn(u64) -> String` L1 hit (median; target <= 150 ns)",
        nanos(sync),
        ratio(sync, raw),
    ));
    let async_hit = median(async_samples);
    rows.push(row(
        "`#[cache]` `async fn(u64) -> String` L1 hit (median)",
        nanos(async_hit),
        ratio(async_hit, raw),
    ));

    // Backend hits, L1 off: `Cache::get` next to the cached function, op by op.
    let config = MemcachedBackendConfig {
        servers: vec![server],
        ..Default::default()
    };
    BACKEND
        .set(Arc::new(MemcachedBackend::new(config).unwrap()))
        .unwrap();
    let direct = Cache::builder()
        .shared_backend(memcached())
        .namespace("bench-direct")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let mut samples: [Vec<Duration>; 2] = Default::default();
    runtime.block_on(async {
        direct.set("hit", &value_for(7), None).await.unwrap();
        backend_hit_invalidate(7).await.unwrap();
        assert_eq!(backend_hit(7).await, value_for(7));
        for round in 0..WARMUP + BACKEND_SAMPLES {
            let started = Instant::now();
            black_box(direct.get::<String>("hit").await.unwrap().unwrap());
            let get_lap = started.elapsed();
            let started = Instant::now();
            black_box(backend_hit(black_box(7)).await);
            let macro_lap = started.elapsed();
            if round >= WARMUP {
                samples[0].push(get_lap);
                samples[1].push(macro_lap);
            }
        }
    });
    assert_eq!(
        backend_hit_stats().loads,
        1,
        "every call after the first is a hit"
    );
    let [get_samples, macro_samples] = samples;
    let get = median(get_samples);
    rows.push(row(
        "`Cache::get` memcached hit, L1 off (median)",
        micros(get),
        "1.00x".into(),
    ));
    let via_macro = median(macro_samples);
    rows.push(row(
        "`#[cache]` memcached hit, L1 off (median; target < 1.05x)",
        micros(via_macro),
        ratio(via_macro, get),
    ));

    println!("| measurement | figure | ratio |");
    println!("|---|---|---|");
    for (name, figure, ratio) in rows {
        println!("| {name} | {figure} | {ratio} |");
    }
}

fn row(name: &str, figure: String, ratio: String) -> (String, String, String) {
    (name.to_owned(), figure, ratio)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn nanos(d: Duration) -> String {
    format!("{} ns", d.as_nanos())
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(ours: Duration, raw: Duration) -> String {
    format!("{:.2}x", ours.as_secs_f64() / raw.as_secs_f64())
}
