//! `#[cache]` against a real redis-server (started on a free loopback
//! port): every form, an outage, two processes sharing entries and one
//! loader, and coherent L1 across processes.
//!
//! One test drives everything in order, because a cached function picks its
//! backend at its first call and tests in one binary share the process. The
//! same binary is also the "other process": run with `CHILD_MODE` set, the
//! test acts as a child that does one thing and prints what it saw.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachekit::backends::redis::{RedisBackend, RedisBackendConfig};
use cachekit::cache;
use cachekit_core::backend::testkit::ServerProcess;
use serde::{Deserialize, Serialize};

/// Set in a child process to what it does: `compute`, `slow` or `invalidate`.
const CHILD_MODE: &str = "CACHEKIT_TEST_CHILD_MODE";

static RUNS: AtomicUsize = AtomicUsize::new(0);

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

/// The server's URL: set by the parent, read from `CACHEKIT_REDIS_URL` by a child.
static URL: OnceLock<String> = OnceLock::new();

fn config() -> RedisBackendConfig {
    let url = URL.get_or_init(|| std::env::var("CACHEKIT_REDIS_URL").expect("a child has the URL"));
    RedisBackendConfig::default()
        .url(url.clone())
        .timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

#[cache(ttl = 300)]
async fn profile(user_id: u64) -> Profile {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Profile {
        id: user_id,
        name: format!("user {user_id}"),
    }
}

#[cache(ttl = 60, l1 = false)]
fn squares(n: u64) -> Vec<u64> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| i * i).collect()
}

#[cache(l1 = false)]
async fn checked(n: i64) -> Result<u64, String> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    u64::try_from(n).map_err(|e| e.to_string())
}

/// Not serializable: skipped.
struct Pool {
    stock: u32,
}

#[cache(skip(db), key = format!("sku:{sku}"), l1 = false)]
async fn stock(db: &Pool, sku: &str) -> u32 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    db.stock
}

#[cache(cache_none = false, l1 = false)]
async fn maybe(n: u64) -> Option<u64> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    (n > 0).then_some(n)
}

/// The backend named by `backend = ...` below: built from [`config`], in
/// the parent and in children alike.
fn named_backend() -> Arc<RedisBackend> {
    static NAMED: OnceLock<Arc<RedisBackend>> = OnceLock::new();
    NAMED
        .get_or_init(|| Arc::new(RedisBackend::new(config()).unwrap()))
        .clone()
}

/// The same server with coherent L1 on.
fn coherent_backend() -> Arc<RedisBackend> {
    static COHERENT: OnceLock<Arc<RedisBackend>> = OnceLock::new();
    COHERENT
        .get_or_init(|| Arc::new(RedisBackend::new(config().l1_invalidation(true)).unwrap()))
        .clone()
}

#[cache(backend = named_backend(), namespace = "named", l1 = false)]
async fn named(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    1000 + n
}

#[cache(backend = named_backend(), namespace = "shared", l1 = false)]
fn computed_by(n: u64) -> String {
    format!("{n} computed by process {}", std::process::id())
}

/// Slower than the load lock's lease is short: two processes calling it at
/// once run it once (the Redis lock), the other waiting for the value.
#[cache(backend = named_backend(), namespace = "slow", l1 = false)]
async fn slow(n: u64) -> String {
    tokio::time::sleep(Duration::from_millis(700)).await;
    format!("{n} loaded by process {}", std::process::id())
}

/// Kept in L1, coherently: a change by another process drops the copy.
#[cache(backend = coherent_backend(), namespace = "coherent")]
async fn price(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * 100
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_against_redis() {
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        return child(&mode).await;
    }
    let mut server = ServerProcess::redis();
    let url = format!("redis://{}/0", server.address());
    URL.set(url.clone()).unwrap();
    // Functions that name no backend take the process default at their first call.
    cachekit::set_default_backend(Arc::new(RedisBackend::new(config()).unwrap()));

    // async fn: the second call is an L1 hit.
    assert_eq!(profile(1).await.name, "user 1");
    assert_eq!(profile(1).await.name, "user 1");
    assert_eq!(runs(), 1);
    assert_eq!(profile_stats().loads, 1);

    // plain fn, L1 off: the second call is a Redis hit.
    assert_eq!(squares(5), vec![0, 1, 4, 9, 16]);
    assert_eq!(squares(5), vec![0, 1, 4, 9, 16]);
    assert_eq!(runs(), 2);
    assert_eq!(squares_stats().l2_hits, 1);

    // Result: Ok cached, Err not.
    assert_eq!(checked(3).await, Ok(3));
    assert_eq!(checked(3).await, Ok(3));
    assert!(checked(-1).await.is_err());
    assert!(checked(-1).await.is_err());
    assert_eq!(runs(), 5);

    // skip + key: the pool is not in the key; None is not stored.
    assert_eq!(stock(&Pool { stock: 4 }, "a").await, 4);
    assert_eq!(stock(&Pool { stock: 9 }, "a").await, 4);
    assert_eq!(maybe(0).await, None);
    assert_eq!(maybe(0).await, None);
    assert_eq!(maybe(2).await, Some(2));
    assert_eq!(maybe(2).await, Some(2));
    assert_eq!(runs(), 9);
    assert_eq!(stock_stats().l2_hits, 1);

    // An explicit backend: the entry is on the server, with its TTL, under
    // a readable namespace; invalidating removes it.
    assert_eq!(named(1).await, 1001);
    assert_eq!(named(1).await, 1001);
    assert_eq!(runs(), 10);
    let key = format!(
        "named:named:{}",
        cachekit::key::args_part(&(1u64,)).unwrap()
    );
    let backend = named_backend();
    assert!(
        cachekit::Backend::exists(&*backend, &key).await.unwrap(),
        "{key} is on Redis"
    );
    assert!(named_invalidate(1).await.unwrap());
    assert!(!cachekit::Backend::exists(&*backend, &key).await.unwrap());

    // Two more processes share the server: the first computes, the second
    // reads the first's value, and this process reads it too.
    let first = run_child(&url, "compute");
    let second = run_child(&url, "compute");
    assert!(first.contains("computed by process"), "{first}");
    assert_eq!(
        first, second,
        "the second process got the first one's entry"
    );
    assert_eq!(computed_by(7), first, "and so does this one");

    // Two processes miss one key at once: one loads, under the Redis lock.
    let racers: Vec<_> = (0..2).map(|_| spawn_child(&url, "slow")).collect();
    let answers: Vec<String> = racers.into_iter().map(child_answer).collect();
    assert!(answers[0].contains("loaded by process"), "{answers:?}");
    assert_eq!(
        answers[0], answers[1],
        "one process loaded, the other got its value"
    );

    // Coherent L1: a copy here, another process invalidates, and this
    // process's next call misses L1 and runs again.
    assert_eq!(price(3).await, 300);
    let before = runs();
    assert_eq!(price(3).await, 300);
    assert_eq!(runs(), before, "an L1 hit");
    assert_eq!(run_child(&url, "invalidate"), "true");
    let started = Instant::now();
    let mut ran_again = None;
    for _ in 0..1_000 {
        assert_eq!(price(3).await, 300);
        if runs() > before {
            ran_again = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ran_again =
        ran_again.expect("the other process's invalidation dropped this process's copy");
    println!(
        "the other process's invalidation reached this process's L1 within {ran_again:?} of its exit"
    );

    // Outage: the server stops; calls run uncached and return right values.
    server.stop();
    let before = runs();
    assert_eq!(named(2).await, 1002);
    assert_eq!(named(2).await, 1002);
    assert_eq!(runs(), before + 2, "ran uncached");
    assert!(named_stats().errors >= 2);
    // Back up: the connection is made again, and it caches again.
    server.restart();
    let mut cached_again = false;
    for _ in 0..50 {
        let runs_before = runs();
        assert_eq!(named(3).await, 1003);
        assert_eq!(named(3).await, 1003);
        if runs() == runs_before + 1 {
            cached_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cached_again, "caching resumes once the server is back");
    cachekit::clear_default_backend();
}

/// Starts this test in a child process doing `mode` against `url`.
fn spawn_child(url: &str, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "macro_against_redis", "--nocapture"])
        .env(CHILD_MODE, mode)
        .env("CACHEKIT_REDIS_URL", url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the test binary runs")
}

/// What a child printed as its answer, once it exited successfully.
fn child_answer(child: std::process::Child) -> String {
    let output = child.wait_with_output().expect("the child ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("CHILD GOT: "))
        .unwrap_or_else(|| panic!("no answer from the child: {stdout}"))
        .to_owned()
}

fn run_child(url: &str, mode: &str) -> String {
    child_answer(spawn_child(url, mode))
}

/// The child's side: resolve the backend from the environment, do `mode`.
async fn child(mode: &str) {
    let answer = match mode {
        "compute" => {
            let value = computed_by(7);
            assert_eq!(computed_by_stats().errors, 0, "{:?}", computed_by_stats());
            value
        }
        "slow" => slow(1).await,
        "invalidate" => price_invalidate(3).await.unwrap().to_string(),
        other => panic!("unknown child mode {other}"),
    };
    println!("CHILD GOT: {answer}");
}

/// The backend shared by the two functions of the current-thread test.
static CURRENT_THREAD: OnceLock<Arc<RedisBackend>> = OnceLock::new();

fn current_thread_backend() -> Arc<RedisBackend> {
    CURRENT_THREAD.get().expect("set by the test").clone()
}

#[cache(backend = current_thread_backend(), namespace = "ct", l1 = false)]
async fn async_on_current_thread(n: u64) -> u64 {
    n + 1
}

#[cache(backend = current_thread_backend(), namespace = "ct", l1 = false)]
fn plain_on_current_thread(n: u64) -> u64 {
    n + 2
}

/// A plain cached function on a current-thread runtime whose async code
/// opened the backend's connection: it neither panics nor deadlocks. The
/// first call may wait out the operation timeout (the connection is driven
/// by the runtime it blocks) and run uncached; the ones after are cached.
#[tokio::test(flavor = "current_thread")]
async fn plain_fn_on_a_current_thread_runtime_sharing_a_connection() {
    if std::env::var(CHILD_MODE).is_ok() {
        return;
    }
    let server = ServerProcess::redis();
    let timeout = Duration::from_millis(300);
    let config = RedisBackendConfig::default()
        .url(format!("redis://{}/0", server.address()))
        .timeout(timeout)
        .connect_timeout(timeout);
    CURRENT_THREAD
        .set(Arc::new(RedisBackend::new(config).unwrap()))
        .unwrap();
    assert_eq!(
        async_on_current_thread(1).await,
        2,
        "opens a connection here"
    );
    let started = Instant::now();
    assert_eq!(plain_on_current_thread(1), 3);
    let first = started.elapsed();
    assert!(first < timeout * 4, "bounded by the timeout: {first:?}");
    for _ in 0..3 {
        assert_eq!(plain_on_current_thread(1), 3);
    }
    let stats = plain_on_current_thread_stats();
    assert!(
        stats.l2_hits >= 2,
        "cached after the first calls: {stats:?}"
    );
    assert_eq!(async_on_current_thread(1).await, 2);
    println!("first plain call on the shared connection: {first:?}; {stats:?}");
}
