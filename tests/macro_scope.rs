//! Cached functions re-pointed at one backend after another in one test
//! binary (`cachekit::testing::scoped_backend`): memory, a real memcached,
//! a failing backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::testing::scoped_backend;
use cachekit::{Backend, MemoryBackend, cache};
use cachekit_core::backend::testkit::{Fault, FaultyBackend, ServerProcess};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache]
async fn double(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * 2
}

/// The backend key of `double(2)`: the namespace setting, the module path.
const KEY: &str = "cachekit:macro_scope:double:02";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_functions_follow_the_scoped_backend() {
    let memory = Arc::new(MemoryBackend::new());
    let scope = scoped_backend(memory.clone());
    assert_eq!(double(2).await, 4);
    assert_eq!(double(2).await, 4);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert!(
        memory.exists(KEY).await.unwrap(),
        "stored in the scope's backend"
    );
    assert_eq!(double_stats().loads, 1);
    drop(scope);

    let server = ServerProcess::memcached();
    let memcached = Arc::new(
        MemcachedBackend::new(MemcachedBackendConfig {
            servers: vec![server.address()],
            ..Default::default()
        })
        .unwrap(),
    );
    let scope = scoped_backend(memcached.clone());
    assert_eq!(double(2).await, 4, "not the last scope's L1 copy");
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(double(2).await, 4);
    assert!(memcached.exists(KEY).await.unwrap(), "stored in memcached");
    assert_eq!(double_stats().loads, 1, "counters are the scope's");
    assert!(double_invalidate(2).await.unwrap());
    assert!(!memcached.exists(KEY).await.unwrap());
    drop(scope);

    let failing = FaultyBackend::new(MemoryBackend::new());
    failing.set_fault(Fault::Down);
    let scope = scoped_backend(Arc::new(failing));
    assert_eq!(double(2).await, 4, "runs uncached");
    assert_eq!(double(2).await, 4);
    assert_eq!(RUNS.load(Ordering::SeqCst), 4);
    assert!(double_stats().errors >= 2);
    drop(scope);
}

#[cache]
async fn square(n: u64) -> u64 {
    n * n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_counts_from_zero_and_lets_go_of_its_backend() {
    let first = Arc::new(MemoryBackend::new());
    let scope = scoped_backend(first.clone());
    assert_eq!(square(3).await, 9);
    assert_eq!(square_stats().loads, 1);
    drop(scope);
    assert_eq!(
        Arc::strong_count(&first),
        1,
        "the caches over a scope's backend are dropped at its end"
    );

    let second = Arc::new(MemoryBackend::new());
    let scope = scoped_backend(second.clone());
    assert_eq!(
        square_stats(),
        cachekit::CacheStats::default(),
        "nothing counted in a scope before its first call"
    );
    assert_eq!(square(3).await, 9);
    assert_eq!(square_stats().loads, 1);
    drop(scope);
    assert_eq!(Arc::strong_count(&second), 1);
}

#[test]
fn a_second_scope_on_one_thread_panics_instead_of_waiting_for_itself() {
    let scope = scoped_backend(Arc::new(MemoryBackend::new()));
    let nested = std::panic::catch_unwind(|| scoped_backend(Arc::new(MemoryBackend::new())));
    let message = nested.expect_err("a nested scope must panic");
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| message.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(message.contains("holds a scope already"), "{message}");
    drop(scope);
    // The thread may start one again once the first has ended.
    drop(scoped_backend(Arc::new(MemoryBackend::new())));
}
