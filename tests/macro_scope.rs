//! Cached functions re-pointed at one backend after another in one test
//! binary (`cachekit::testing::scoped_backend`): memory, a real memcached,
//! a failing backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::testing::scoped_backend;
use cachekit::{Backend, MemoryBackend, cache};
use cachekit_core::testkit::{Fault, FaultyBackend, ServerProcess};

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
