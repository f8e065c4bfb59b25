//! `#[cache]` against a real Redis (started on a free loopback port): every
//! form, an outage, and two processes sharing entries.
//!
//! One test drives everything in order, because a cached function picks its
//! backend at its first call and tests in one binary share the process. The
//! same binary is also the "other process": run with `CHILD_SERVER` set, the
//! test acts as a child that calls one cached function and prints what it
//! saw.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachekit::backends::redis::{RedisBackend, RedisBackendConfig};
use cachekit::cache;
use cachekit_core::backend::testkit::ServerProcess;
use serde::{Deserialize, Serialize};

/// Set in a child process to the server's address.
const CHILD_SERVER: &str = "CACHEKIT_TEST_CHILD_SERVER";

static RUNS: AtomicUsize = AtomicUsize::new(0);

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
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

/// The backend named by `backend = ...` below.
static NAMED: OnceLock<Arc<RedisBackend>> = OnceLock::new();

fn named_backend() -> Arc<RedisBackend> {
    NAMED.get().expect("set before the first call").clone()
}

#[cache(backend = named_backend(), namespace = "named", l1 = false)]
async fn named(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n + 1000
}

/// Computed once by whichever process calls it first.
#[cache(namespace = "shared", ttl = 300)]
fn computed_by(n: u64) -> String {
    format!("{n} computed by process {}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_against_redis() {
    if let Ok(server) = std::env::var(CHILD_SERVER) {
        return child(&server);
    }
    let mut server = ServerProcess::redis();
    let url = format!("redis://{}/0", server.address());
    let config = || {
        RedisBackendConfig::default()
            .url(url.clone())
            .timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300))
    };
    // Functions that name no backend take the process default at their first call.
    cachekit::set_default_backend(Arc::new(RedisBackend::new(config()).unwrap()));
    let named_backend = Arc::new(RedisBackend::new(config()).unwrap());
    NAMED.set(named_backend.clone()).unwrap();

    // async fn: the second call is a hit.
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

    // An explicit backend: the entry is on the server under a readable namespace.
    assert_eq!(named(1).await, 1001);
    assert_eq!(named(1).await, 1001);
    assert_eq!(runs(), 10);
    let key = format!(
        "named:named:{}",
        cachekit::key::args_part(&(1u64,)).unwrap()
    );
    assert!(
        cachekit::Backend::exists(&*named_backend, &key)
            .await
            .unwrap(),
        "{key} is on Redis"
    );
    assert!(named_invalidate(1).await.unwrap());
    assert!(
        !cachekit::Backend::exists(&*named_backend, &key)
            .await
            .unwrap()
    );

    // Two more processes share the server: the first computes, the second
    // reads the first's value, and this process reads it too.
    let first = run_child(&server.address());
    let second = run_child(&server.address());
    assert!(first.contains("computed by process"), "{first}");
    assert_eq!(
        first, second,
        "the second process got the first one's entry"
    );
    assert_eq!(computed_by(7), first, "and so does this one");

    // Outage: the server stops; calls run uncached and return right values.
    server.stop();
    let before = runs();
    assert_eq!(named(2).await, 1002);
    assert_eq!(named(2).await, 1002);
    assert_eq!(runs(), before + 2, "ran uncached");
    assert!(named_stats().errors >= 2);
    // Back up: the backend reconnects by itself and caches again.
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

/// Runs this test in a child process against `server`, which it finds
/// through the environment (`CACHEKIT_REDIS_URL`), and returns the
/// value it got.
fn run_child(server: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "macro_against_redis", "--nocapture"])
        .env(CHILD_SERVER, server)
        .env("CACHEKIT_REDIS_URL", format!("redis://{server}/0"))
        .output()
        .expect("the test binary runs");
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

/// The child's side: resolve the backend from the environment, call once.
fn child(server: &str) {
    assert_eq!(
        std::env::var("CACHEKIT_REDIS_URL"),
        Ok(format!("redis://{server}/0"))
    );
    println!("CHILD GOT: {}", computed_by(7));
    assert_eq!(computed_by_stats().errors, 0, "{:?}", computed_by_stats());
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
    let started = std::time::Instant::now();
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
