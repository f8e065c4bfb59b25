//! `cachekit_core::health()`: one entry per backend in use, each check
//! bounded by its layer's deadline and run at once, and readiness.
//!
//! One test: the report covers every layer of the process, so no other
//! test of this binary may make caches meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::{Fault, FaultyBackend};
use cachekit_core::{
    Backend, BreakerState, Cache, ConfigSource, Error, MemoryBackend, ReliabilityConfig,
    ReliabilityLayer,
};

fn cache_over(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .shared_backend(backend)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_every_backend_in_use_and_readiness_follows_their_checks() {
    assert!(
        cachekit_core::health().await.backends.is_empty(),
        "no cache yet, no backend in use"
    );
    let timeout = Duration::from_millis(300);
    let layer = ReliabilityLayer::new(ReliabilityConfig {
        timeout,
        failure_threshold: 1,
        cool_down: Duration::from_secs(60),
        ..ReliabilityConfig::default()
    });
    let memory = cache_over(layer.layer(Arc::new(MemoryBackend::new())));
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let hanging = FaultyBackend::new(MemoryBackend::new());
    let faulty_cache = cache_over(layer.layer(Arc::new(faulty.clone())));
    let hanging_cache = cache_over(layer.layer(Arc::new(hanging.clone())));

    let report = cachekit_core::health().await;
    let names: Vec<&str> = report.backends.iter().map(|b| b.backend).collect();
    assert_eq!(names, ["memory", "faulty", "faulty"], "{report:?}");
    assert!(report.is_ready(), "{report:?}");
    for entry in &report.backends {
        let health = entry.health.as_ref().unwrap();
        assert_eq!(health.backend, entry.backend);
        assert_eq!(health.breaker, BreakerState::Closed);
        assert!(health.domains.is_empty(), "one unnamed domain each");
    }

    // One backend fails, one never answers: both checks run at once, the
    // hanging one ends at its layer's deadline.
    faulty.set_fault(Fault::Down);
    hanging.set_fault(Fault::Hang);
    let started = Instant::now();
    let report = cachekit_core::health().await;
    let took = started.elapsed();
    assert!(!report.is_ready(), "{report:?}");
    assert!(report.backends[0].health.is_ok(), "{report:?}");
    assert!(matches!(
        report.backends[1].health,
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        report.backends[2].health,
        Err(Error::Timeout { .. })
    ));
    assert!(took >= timeout && took < timeout * 3, "took {took:?}");

    // The breaker opens on the failing backend's calls; once its check
    // answers again, an open breaker still counts as ready.
    assert!(faulty_cache.get::<u8>("k").await.is_err());
    faulty.set_fault(Fault::None);
    drop(hanging_cache);
    let report = cachekit_core::health().await;
    assert_eq!(
        report.backends.len(),
        2,
        "a dropped cache's backend is gone"
    );
    let health = report.backends[1].health.as_ref().unwrap();
    assert_eq!(health.breaker, BreakerState::Open);
    assert!(report.is_ready(), "{report:?}");
    drop(memory);
}
