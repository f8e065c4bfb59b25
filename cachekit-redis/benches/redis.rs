//! `cargo xtask bench redis`: cachekit's Redis path against the raw
//! redis-rs client measured in the same run. xtask starts one redis-server
//! (pinned to one CPU) and runs this binary (pinned to another) with its
//! URL in `CACHEKIT_BENCH_REDIS`.
//!
//! Prints a Markdown table; docs/benchmarks.md records one.
//!
//! The raw client is what a redis-rs user writes: one
//! `MultiplexedConnection` with redis-rs's defaults, a `GET` (or `SET .. PX`)
//! built per call and read as bytes. The sequential rows take turns with
//! it operation by operation, on the same wire key and value (cachekit's
//! entry, envelope included), so that drift in the machine's speed hits
//! all of them alike. The 64-task rows run the same 64 tasks over the same
//! 1,000 wire keys, the three clients taking turns in slices of 0.5 s.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit_core::{Backend, Cache, ConfigSource};
use cachekit_redis::{RedisBackend, RedisBackendConfig};
use redis::aio::MultiplexedConnection;

/// Operations timed per sequential row, after [`WARMUP_OPS`] untimed ones.
const SEQUENTIAL_OPS: usize = 20_000;
/// Untimed operations first, per sequential row.
const WARMUP_OPS: usize = 2_000;
/// Tasks of the concurrent rows.
const CONCURRENT_TASKS: usize = 64;
/// How long each client of the 64-task rows runs in all, in slices taken
/// in turn.
const CONCURRENT_FOR: Duration = Duration::from_secs(3);
/// Slices of [`CONCURRENT_FOR`] per client.
const CONCURRENT_SLICES: u32 = 6;
/// Keys of the 64-task rows.
const KEYSPACE: usize = 1_000;
/// The TTL of both `SET` rows.
const SET_TTL: Duration = Duration::from_secs(600);

/// Reads the server's URL and runs the rows on a current-thread runtime.
fn main() {
    let url = std::env::var("CACHEKIT_BENCH_REDIS")
        .expect("run through `cargo xtask bench redis`, which starts the server");
    assert!(
        url.starts_with("redis://127.0.0.1:"),
        "a loopback server expected, got {url}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&url));
}

/// Runs every row against the server at `url` and prints the table.
async fn run(url: &str) {
    let backend = RedisBackend::new(RedisBackendConfig::default().url(url)).unwrap();
    let cache = Cache::builder()
        .shared_backend(Arc::new(backend.clone()))
        .namespace("bench")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let raw = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut table = Table::default();
    sequential_get(&mut table, &backend, &cache, raw.clone()).await;
    sequential_set(&mut table, &cache, raw.clone()).await;
    concurrent_get(&mut table, &backend, &cache, raw).await;
    table.print();
}

/// 100 bytes, like the other benchmarks' values.
fn value() -> String {
    "x".repeat(100)
}

/// Sequential get hits, L1 off: the raw `GET`, `RedisBackend::get` and
/// `Cache::get` take turns operation by operation on one entry.
async fn sequential_get(
    table: &mut Table,
    backend: &RedisBackend,
    cache: &Cache,
    mut raw: MultiplexedConnection,
) {
    cache.set("seq", &value(), None).await.unwrap();
    let wire_key = cache.backend_key("seq");
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..WARMUP_OPS + SEQUENTIAL_OPS {
        let mut lap = Instant::now();
        let mut record = |series: usize| {
            let now = Instant::now();
            if round >= WARMUP_OPS {
                samples[series].push(now - lap);
            }
            lap = now;
        };
        std::hint::black_box(raw_get(&mut raw, &wire_key).await);
        record(0);
        std::hint::black_box(backend.get(&wire_key).await.unwrap().unwrap());
        record(1);
        std::hint::black_box(cache.get::<String>("seq").await.unwrap().unwrap());
        record(2);
    }
    let [raw_samples, backend_samples, cache_samples] = samples;
    let raw = table.baseline(
        "raw redis-rs `MultiplexedConnection` `GET` loop (median)",
        raw_samples,
    );
    table.compare("`RedisBackend::get` hit (median)", backend_samples, raw);
    table.compare(
        "`Cache::get` hit, L1 off (median; target <= 1.10x)",
        cache_samples,
        raw,
    );
}

/// Sequential sets with a TTL: the raw `SET .. PX` of the same envelope
/// and `Cache::set` take turns operation by operation.
async fn sequential_set(table: &mut Table, cache: &Cache, mut raw: MultiplexedConnection) {
    let value = value();
    cache.set("seq", &value, None).await.unwrap();
    let envelope = raw_get(&mut raw, &cache.backend_key("seq")).await;
    let raw_key = cache.backend_key("seq-raw-set");
    let px = u64::try_from(SET_TTL.as_millis()).unwrap();
    let mut samples: [Vec<Duration>; 2] = Default::default();
    for round in 0..WARMUP_OPS + SEQUENTIAL_OPS {
        let started = Instant::now();
        let () = redis::cmd("SET")
            .arg(&raw_key)
            .arg(&envelope)
            .arg("PX")
            .arg(px)
            .query_async(&mut raw)
            .await
            .unwrap();
        let raw_lap = started.elapsed();
        let started = Instant::now();
        cache.set("seq-set", &value, Some(SET_TTL)).await.unwrap();
        let cache_lap = started.elapsed();
        if round >= WARMUP_OPS {
            samples[0].push(raw_lap);
            samples[1].push(cache_lap);
        }
    }
    let [raw_samples, cache_samples] = samples;
    let raw = table.baseline("raw `SET .. PX` loop (median)", raw_samples);
    table.compare("`Cache::set` with a TTL (median)", cache_samples, raw);
}

/// 64 tasks reading 1,000 entries: raw `GET`s on one multiplexed
/// connection cloned per task, `RedisBackend::get` (where the backend's
/// share of the gap shows) and `Cache::get`, in turns of a slice each.
async fn concurrent_get(
    table: &mut Table,
    backend: &RedisBackend,
    cache: &Cache,
    raw: MultiplexedConnection,
) {
    let value = value();
    let keys: Arc<Vec<String>> = Arc::new((0..KEYSPACE).map(|i| format!("c:{i}")).collect());
    for key in keys.iter() {
        cache.set(key, &value, None).await.unwrap();
    }
    let wire_keys: Arc<Vec<String>> =
        Arc::new(keys.iter().map(|key| cache.backend_key(key)).collect());
    let raw_op = {
        let wire_keys = Arc::clone(&wire_keys);
        move |i: usize| {
            let (mut raw, wire_keys) = (raw.clone(), Arc::clone(&wire_keys));
            async move {
                std::hint::black_box(raw_get(&mut raw, &wire_keys[i]).await);
            }
        }
    };
    let backend_op = {
        let backend = backend.clone();
        move |i: usize| {
            let (backend, wire_keys) = (backend.clone(), Arc::clone(&wire_keys));
            async move {
                std::hint::black_box(backend.get(&wire_keys[i]).await.unwrap().unwrap());
            }
        }
    };
    let cache_op = {
        let cache = cache.clone();
        move |i: usize| {
            let (cache, keys) = (cache.clone(), Arc::clone(&keys));
            async move {
                std::hint::black_box(cache.get::<String>(&keys[i]).await.unwrap().unwrap());
            }
        }
    };
    let mut counts = [Count::default(); 3];
    for _ in 0..CONCURRENT_SLICES {
        counts[0] += throughput(raw_op.clone()).await;
        counts[1] += throughput(backend_op.clone()).await;
        counts[2] += throughput(cache_op.clone()).await;
    }
    let [raw, backend, ours] = counts.map(Count::per_second);
    table.rows.push((
        "64 tasks: raw `GET`, one `MultiplexedConnection` cloned per task",
        format!("{raw:.0} ops/s"),
        "1.00x".into(),
    ));
    table.rows.push((
        "64 tasks: `RedisBackend::get`",
        format!("{backend:.0} ops/s"),
        format!("{:.2}x", backend / raw),
    ));
    table.rows.push((
        "64 tasks: `Cache::get`, L1 off (target >= 0.9x)",
        format!("{ours:.0} ops/s"),
        format!("{:.2}x", ours / raw),
    ));
}

/// The raw client's `GET` of a key that is there.
async fn raw_get(raw: &mut MultiplexedConnection, key: &str) -> Vec<u8> {
    let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(raw).await.unwrap();
    value.expect("a hit")
}

/// Operations done, and the time they took.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    ops: u64,
    took: Duration,
}

impl Count {
    /// Operations per second.
    fn per_second(self) -> f64 {
        self.ops as f64 / self.took.as_secs_f64()
    }
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, other: Count) {
        self.ops += other.ops;
        self.took += other.took;
    }
}

/// Operations of [`CONCURRENT_TASKS`] tasks running `op` over the keyspace
/// for one slice of [`CONCURRENT_FOR`].
async fn throughput<F, Fut>(op: F) -> Count
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let slice = CONCURRENT_FOR / CONCURRENT_SLICES;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|task| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = task * 7;
                while started.elapsed() < slice {
                    op(i % KEYSPACE).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 13;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Count {
        ops: done.load(Ordering::Relaxed),
        took: started.elapsed(),
    }
}

/// Rows of figures and their ratios to a baseline measured in the same run.
#[derive(Default)]
struct Table {
    rows: Vec<(&'static str, String, String)>,
}

impl Table {
    /// Adds a baseline row of `samples`' median; returns that median.
    fn baseline(&mut self, name: &'static str, samples: Vec<Duration>) -> Duration {
        let figure = median(samples);
        self.rows.push((name, micros(figure), "1.00x".into()));
        figure
    }

    /// Adds a row of `samples`' median compared with `baseline`.
    fn compare(&mut self, name: &'static str, samples: Vec<Duration>, baseline: Duration) {
        let figure = median(samples);
        let ratio = format!("{:.2}x", figure.as_secs_f64() / baseline.as_secs_f64());
        self.rows.push((name, micros(figure), ratio));
    }

    /// Prints the rows as a Markdown table.
    fn print(&self) {
        println!("| measurement | figure | ratio |");
        println!("|---|---|---|");
        for (name, figure, ratio) in &self.rows {
            println!("| {name} | {figure} | {ratio} |");
        }
    }
}

/// The middle of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// `d` in microseconds, one decimal.
fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
