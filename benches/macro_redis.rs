//! `cargo xtask bench redis` (its second binary): what a
//! `#[cache(l1 = false)]` function over Redis costs, against the raw
//! redis-rs `GET` loop measured in the same run. xtask starts one
//! redis-server (pinned to one CPU) and runs this binary (pinned to
//! another) with its URL in `CACHEKIT_BENCH_REDIS`.
//!
//! A bench of the facade, not of `cachekit-redis`: the attribute lives
//! here, and measuring its real expansion beats restating its runtime.
//! It has a file of its own, not a row in `benches/macro.rs`, because that
//! one needs memcached and this one Redis, and xtask starts each
//! benchmark's servers.
//!
//! Prints a Markdown table; docs/benchmarks.md records one.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachekit::backends::redis::{RedisBackend, RedisBackendConfig};
use cachekit::{Cache, ConfigSource, cache};
use redis::aio::MultiplexedConnection;

/// Calls timed per path, after [`WARMUP`] untimed ones.
const SAMPLES: usize = 20_000;
/// Untimed calls first, per path.
const WARMUP: usize = 2_000;

/// 100 bytes, like the other benchmarks' values.
fn value_for(n: u64) -> String {
    format!("{n:0>100}")
}

/// The backend of [`backend_hit`], set in `main` before its first call.
static BACKEND: OnceLock<Arc<RedisBackend>> = OnceLock::new();

/// The bench server's backend, for `#[cache(backend = ...)]`.
fn redis_backend() -> Arc<RedisBackend> {
    BACKEND.get().expect("set in main").clone()
}

/// The cached function measured: every call after the first is a Redis hit.
#[cache(namespace = "bench", backend = redis_backend(), l1 = false)]
async fn backend_hit(n: u64) -> String {
    value_for(n)
}

/// Reads the server's URL, runs the rows on a current-thread runtime and
/// prints the table.
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
    BACKEND
        .set(Arc::new(
            RedisBackend::new(RedisBackendConfig::default().url(&url)).unwrap(),
        ))
        .unwrap();
    let direct = Cache::builder()
        .shared_backend(redis_backend())
        .namespace("bench-direct")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let samples = runtime.block_on(async {
        let mut raw = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        direct.set("hit", &value_for(7), None).await.unwrap();
        backend_hit_invalidate(7).await.unwrap();
        assert_eq!(backend_hit(7).await, value_for(7));
        interleaved(&mut raw, &direct.backend_key("hit"), &direct).await
    });
    assert_eq!(
        backend_hit_stats().loads,
        1,
        "every call after the first is a hit"
    );
    let [raw_samples, get_samples, macro_samples] = samples;
    let raw = median(raw_samples);
    let rows = [
        (
            "raw redis-rs `MultiplexedConnection` `GET` loop (median)",
            raw,
        ),
        (
            "`Cache::get` hit, L1 off (median; target <= 1.10x)",
            median(get_samples),
        ),
        (
            "`#[cache(l1 = false)]` `async fn(u64) -> String` hit (median; target <= 1.10x)",
            median(macro_samples),
        ),
    ];
    println!("| measurement | figure | ratio |");
    println!("|---|---|---|");
    for (name, figure) in rows {
        println!(
            "| {name} | {:.1} µs | {:.2}x |",
            figure.as_secs_f64() * 1e6,
            figure.as_secs_f64() / raw.as_secs_f64()
        );
    }
}

/// The raw `GET` of `wire_key` (the `Cache`'s entry, which holds the same
/// value as the function's), `Cache::get` and the cached function, taking
/// turns call by call; their latencies after the warm-up.
async fn interleaved(
    raw: &mut MultiplexedConnection,
    wire_key: &str,
    direct: &Cache,
) -> [Vec<Duration>; 3] {
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..WARMUP + SAMPLES {
        let mut lap = Instant::now();
        let mut record = |series: usize| {
            let now = Instant::now();
            if round >= WARMUP {
                samples[series].push(now - lap);
            }
            lap = now;
        };
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(wire_key)
            .query_async(raw)
            .await
            .unwrap();
        black_box(value.expect("a hit"));
        record(0);
        black_box(direct.get::<String>("hit").await.unwrap().unwrap());
        record(1);
        black_box(backend_hit(black_box(7)).await);
        record(2);
    }
    samples
}

/// The middle of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}
