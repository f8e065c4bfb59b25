//! `cachekit::health()`: one entry per backend in use, whatever uses it
//! (caches, cached functions), and readiness.
//!
//! One test: the report covers every backend of the process, so no other
//! test of this binary may make caches meanwhile.

use std::sync::OnceLock;

use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::{Cache, ConfigSource, MemoryBackend, cache};
use cachekit_core::backend::testkit::ServerProcess;

static MEMCACHED: OnceLock<MemcachedBackend> = OnceLock::new();

/// Cached on the memcached backend of the caches below (a clone of it).
#[cache(backend = MEMCACHED.get().expect("set first").clone())]
async fn doubled(n: u64) -> u64 {
    n * 2
}

fn cache_over(backend: impl cachekit::Backend + 'static) -> Cache {
    Cache::builder()
        .backend(backend)
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_each_backend_in_use_and_readiness_follows_a_stopped_server() {
    let mut server = ServerProcess::memcached();
    let memcached = MemcachedBackend::new(MemcachedBackendConfig {
        servers: vec![server.address()],
        ..Default::default()
    })
    .unwrap();
    MEMCACHED.set(memcached.clone()).unwrap();
    let in_memory = cache_over(MemoryBackend::new());
    let shared = cache_over(memcached);
    assert_eq!(doubled(21).await, 42);

    let report = cachekit::health().await;
    let names: Vec<&str> = report.backends.iter().map(|b| b.backend).collect();
    assert_eq!(
        names,
        ["memory", "memcached"],
        "the cached function shares the memcached cache's backend: {report:?}"
    );
    assert!(report.is_ready(), "{report:?}");
    let memcached = report.backends[1].health.as_ref().unwrap();
    assert_eq!(memcached.domains.len(), 1);
    assert_eq!(memcached.domains[0].name, server.address());
    assert_eq!(memcached.domains[0].state, cachekit::DomainState::Up);

    server.stop();
    let report = cachekit::health().await;
    assert!(!report.is_ready(), "{report:?}");
    assert!(report.backends[0].health.is_ok(), "memory still answers");
    let error = report.backends[1].health.as_ref().unwrap_err();
    assert!(
        error.to_string().contains(&server.address()),
        "the error names the server: {error}"
    );
    drop((in_memory, shared));
}
