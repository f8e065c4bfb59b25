//! `cargo bench -p cachekit-redis --bench redis`: cachekit's Redis path
//! against a raw redis-rs `MultiplexedConnection` measured in the same run,
//! on a `redis-server` the test kit starts on loopback (not pinned to CPUs:
//! ratios, not absolute numbers, are what compare across machines).
//!
//! Prints a Markdown table: sequential get hits (raw `GET`, the backend's
//! `get`, and `Cache::get` without L1), then 64 tasks running the same time
//! through the raw connection and through `Cache::get`, taking turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::{Backend, Cache, ConfigSource};
use cachekit_redis::{RedisBackend, RedisBackendConfig};

const SEQUENTIAL_OPS: usize = 20_000;
const WARMUP_OPS: usize = 2_000;
const CONCURRENT_TASKS: usize = 64;
/// How long each client of the 64-task rows runs, in slices taken in turn.
const CONCURRENT_FOR: Duration = Duration::from_secs(3);
const CONCURRENT_SLICES: u32 = 6;
const KEYSPACE: usize = 1_000;

fn main() {
    let server = ServerProcess::redis();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&server.address()));
}

async fn run(address: &str) {
    let url = format!("redis://{address}/0");
    let backend = RedisBackend::new(RedisBackendConfig::default().url(url.clone())).unwrap();
    let cache = Cache::builder()
        .backend(backend.clone())
        .namespace("bench")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    for i in 0..KEYSPACE {
        cache
            .set(
                &format!("k{i}"),
                &format!("value {i} {}", "x".repeat(64)),
                None,
            )
            .await
            .unwrap();
    }
    let wire: Arc<Vec<String>> = Arc::new(
        (0..KEYSPACE)
            .map(|i| cache.backend_key(&format!("k{i}")))
            .collect(),
    );
    let keys: Arc<Vec<String>> = Arc::new((0..KEYSPACE).map(|i| format!("k{i}")).collect());
    let client = redis::Client::open(url).unwrap();
    let raw = client.get_multiplexed_async_connection().await.unwrap();

    println!("| sequential get hit ({SEQUENTIAL_OPS} ops) | ns/op | ratio to raw |");
    println!("|---|---|---|");
    let raw_ns = sequential(|i| {
        let (mut raw, key) = (raw.clone(), wire[i % KEYSPACE].clone());
        async move {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .unwrap();
            assert!(value.is_some());
        }
    })
    .await;
    let backend_ns = sequential(|i| {
        let (backend, key) = (backend.clone(), wire[i % KEYSPACE].clone());
        async move {
            assert!(backend.get(&key).await.unwrap().is_some());
        }
    })
    .await;
    let cache_ns = sequential(|i| {
        let (cache, key) = (cache.clone(), keys[i % KEYSPACE].clone());
        async move {
            assert!(cache.get::<String>(&key).await.unwrap().is_some());
        }
    })
    .await;
    for (name, ns) in [
        ("raw redis-rs GET", raw_ns),
        ("RedisBackend::get", backend_ns),
        ("Cache::get (no L1)", cache_ns),
    ] {
        println!("| {name} | {ns:.0} | {:.2}x |", ns / raw_ns);
    }

    println!();
    println!("| {CONCURRENT_TASKS} tasks, {CONCURRENT_FOR:?} each | ops/s | ratio to raw |");
    println!("|---|---|---|");
    let (raw_ops, cache_ops) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let slice = CONCURRENT_FOR / CONCURRENT_SLICES;
    for _ in 0..CONCURRENT_SLICES {
        let (raw, wire) = (raw.clone(), Arc::clone(&wire));
        concurrent(slice, &raw_ops, move |i| {
            let (mut raw, key) = (raw.clone(), wire[i % KEYSPACE].clone());
            async move {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                assert!(value.is_some());
            }
        })
        .await;
        let (cache, keys) = (cache.clone(), Arc::clone(&keys));
        concurrent(slice, &cache_ops, move |i| {
            let (cache, key) = (cache.clone(), keys[i % KEYSPACE].clone());
            async move {
                assert!(cache.get::<String>(&key).await.unwrap().is_some());
            }
        })
        .await;
    }
    let per_second =
        |ops: &AtomicU64| ops.load(Ordering::Relaxed) as f64 / CONCURRENT_FOR.as_secs_f64();
    let (raw_rate, cache_rate) = (per_second(&raw_ops), per_second(&cache_ops));
    println!("| raw MultiplexedConnection GET | {raw_rate:.0} | 1.00x |");
    println!(
        "| Cache::get (no L1) | {cache_rate:.0} | {:.2}x |",
        cache_rate / raw_rate
    );
}

/// Nanoseconds per call of `op(i)`, run one after another.
async fn sequential<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..WARMUP_OPS {
        op(i).await;
    }
    let started = Instant::now();
    for i in 0..SEQUENTIAL_OPS {
        op(i).await;
    }
    started.elapsed().as_nanos() as f64 / SEQUENTIAL_OPS as f64
}

/// Runs `op` in [`CONCURRENT_TASKS`] tasks for `time`, counting into `ops`.
async fn concurrent<F, Fut>(time: Duration, ops: &Arc<AtomicU64>, op: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Instant::now() + time;
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|task| {
            let (op, ops) = (op.clone(), Arc::clone(ops));
            tokio::spawn(async move {
                let mut i = task * 7;
                while Instant::now() < stop {
                    op(i).await;
                    ops.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}
