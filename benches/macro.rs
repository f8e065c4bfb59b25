//! `cargo xtask bench macro`: what `#[cache]` costs, against the raw
//! operation measured in the same run. xtask starts a memcached (pinned to
//! one CPU) and runs this binary (pinned to another) with its address in
//! `CACHEKIT_BENCH_MEMCACHED`.
//!
//! Prints a Markdown table; docs/benchmarks.md records one.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachekit::ConfigSource;
use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::{Backend, Cache, L1Config, MemoryBackend, cache};
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
    let mut table = Table::default();

    // L1 hits: a raw DashMap get (cloning the value out, as a call must)
    // next to the cached functions, taking turns batch by batch.
    // A `Cache` keeps payloads in L1 and decodes them on every hit (the
    // envelope's shape check included), unlike a cached function.
    let raw: DashMap<u64, String> = DashMap::new();
    raw.insert(42, value_for(42));
    assert_eq!(l1_hit(42), value_for(42));
    runtime.block_on(async { assert_eq!(l1_hit_async(42).await, value_for(42)) });
    let decoding = Cache::builder()
        .backend(MemoryBackend::new())
        .l1(L1Config::default())
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    runtime.block_on(async { decoding.set("42", &value_for(42), None).await.unwrap() });
    let mut samples: [Vec<Duration>; 4] = Default::default();
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
        let decode_lap = runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..BATCH {
                black_box(decoding.get::<String>(black_box("42")).await.unwrap());
            }
            started.elapsed()
        });
        if record {
            samples[0].push(raw_lap / BATCH);
            samples[1].push(sync_lap / BATCH);
            samples[2].push(async_lap / BATCH);
            samples[3].push(decode_lap / BATCH);
        }
    }
    assert_eq!(
        l1_hit_stats().loads,
        1,
        "every call after the first is a hit"
    );
    assert!(decoding.stats().l1_hits > 0, "the Cache row reads L1");
    let [raw_samples, sync_samples, async_samples, decode_samples] = samples;
    let raw = table.baseline(
        "raw `DashMap<u64, String>` get + clone (median)",
        raw_samples,
        nanos,
    );
    table.compare(
        "`#[cache]` `fn(u64) -> String` L1 hit (median; target <= 150 ns)",
        sync_samples,
        raw,
        nanos,
    );
    table.compare(
        "`#[cache]` `async fn(u64) -> String` L1 hit (median)",
        async_samples,
        raw,
        nanos,
    );
    table.compare(
        "`Cache::get::<String>` L1 hit, decoding the payload (median)",
        decode_samples,
        raw,
        nanos,
    );

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
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let ttl = Some(Duration::from_secs(600));
    let tagged = || async { value_for(8) };
    runtime.block_on(async {
        direct.set("hit", &value_for(7), None).await.unwrap();
        backend_hit_invalidate(7).await.unwrap();
        assert_eq!(backend_hit(7).await, value_for(7));
        direct.invalidate_tag("user:8").await.unwrap();
        direct
            .get_or_insert_tagged("tagged", ttl, &["user:8"], tagged)
            .await;
        for round in 0..WARMUP + BACKEND_SAMPLES {
            let started = Instant::now();
            black_box(direct.get::<String>("hit").await.unwrap().unwrap());
            let get_lap = started.elapsed();
            let started = Instant::now();
            black_box(backend_hit(black_box(7)).await);
            let macro_lap = started.elapsed();
            let started = Instant::now();
            let read = direct.get_or_insert_tagged("tagged", ttl, &["user:8"], || async {
                panic!("a tagged hit, not a load")
            });
            black_box::<String>(read.await);
            let tagged_lap = started.elapsed();
            if round >= WARMUP {
                samples[0].push(get_lap);
                samples[1].push(macro_lap);
                samples[2].push(tagged_lap);
            }
        }
    });
    assert_eq!(
        backend_hit_stats().loads,
        1,
        "every call after the first is a hit"
    );
    let [get_samples, macro_samples, tagged_samples] = samples;
    let get = table.baseline(
        "`Cache::get` memcached hit, L1 off (median)",
        get_samples,
        micros,
    );
    table.compare(
        "`#[cache]` memcached hit, L1 off (median; target < 1.05x)",
        macro_samples,
        get,
        micros,
    );
    table.compare(
        "`Cache::get_or_insert_tagged` hit, one tag (entry and tag in one `get_many`; median)",
        tagged_samples,
        get,
        micros,
    );

    // A batch of 100 hits: the backend's own `get_many` of the same keys,
    // then `Cache::get_or_insert_many`, op by op.
    let keys: Vec<String> = (0..100).map(|n| format!("batch-{n}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let wire: Vec<String> = keys.iter().map(|key| direct.backend_key(key)).collect();
    let wire: Vec<&str> = wire.iter().map(String::as_str).collect();
    let load = |missing: Vec<String>| async move {
        missing
            .iter()
            .map(|key| value_for(key.len() as u64))
            .collect()
    };
    let mut samples: [Vec<Duration>; 2] = Default::default();
    runtime.block_on(async {
        let _: Vec<String> = direct.get_or_insert_many(&keys, ttl, load).await;
        for round in 0..WARMUP + BACKEND_SAMPLES / 10 {
            let started = Instant::now();
            black_box(memcached().get_many(&wire).await.unwrap());
            let raw_lap = started.elapsed();
            let started = Instant::now();
            let values: Vec<String> = direct
                .get_or_insert_many(&keys, ttl, |missing: Vec<String>| async move {
                    panic!("{} keys loaded in a batch of hits", missing.len())
                })
                .await;
            black_box(values);
            let batch_lap = started.elapsed();
            if round >= WARMUP {
                samples[0].push(raw_lap);
                samples[1].push(batch_lap);
            }
        }
    });
    let [raw_samples, batch_samples] = samples;
    let raw = table.baseline(
        "`MemcachedBackend::get_many` of 100 keys, raw bytes (median)",
        raw_samples,
        micros,
    );
    table.compare(
        "`Cache::get_or_insert_many` of the same 100 hits, decoded (median)",
        batch_samples,
        raw,
        micros,
    );
    table.print();
}

/// Rows of medians and their ratios to a baseline measured in the same run.
#[derive(Default)]
struct Table {
    rows: Vec<(&'static str, String, String)>,
}

impl Table {
    /// Adds the baseline row; returns its median.
    fn baseline(
        &mut self,
        name: &'static str,
        samples: Vec<Duration>,
        unit: fn(Duration) -> String,
    ) -> Duration {
        let figure = median(samples);
        self.rows.push((name, unit(figure), "1.00x".into()));
        figure
    }

    /// Adds a row compared with `baseline`.
    fn compare(
        &mut self,
        name: &'static str,
        samples: Vec<Duration>,
        baseline: Duration,
        unit: fn(Duration) -> String,
    ) {
        let figure = median(samples);
        let ratio = format!("{:.2}x", figure.as_secs_f64() / baseline.as_secs_f64());
        self.rows.push((name, unit(figure), ratio));
    }

    fn print(&self) {
        println!("| measurement | figure | ratio |");
        println!("|---|---|---|");
        for (name, figure, ratio) in &self.rows {
            println!("| {name} | {figure} | {ratio} |");
        }
    }
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
