//! The counters of a cache: each call counts once, as one of `l1_hits`,
//! `l2_hits`, `misses` and `coalesced`, the same on a backend with a lock
//! (memory) and without one (memcached's case, played by `PlainBackend`).

use std::sync::Arc;
use std::time::Duration;

use cachekit_core::ConfigSource;
use cachekit_core::backend::testkit::PlainBackend;
use cachekit_core::{Backend, Cache, CacheStats, L1Config, MemoryBackend};

fn backends() -> [Arc<dyn Backend>; 2] {
    [
        Arc::new(MemoryBackend::new()),
        Arc::new(PlainBackend(MemoryBackend::new())),
    ]
}

fn cache_over(backend: Arc<dyn Backend>, l1: bool) -> Cache {
    let builder = Cache::builder()
        .shared_backend(backend)
        .namespace("stats")
        .config(ConfigSource::defaults_only());
    let builder = if l1 {
        builder.l1(L1Config::default())
    } else {
        builder.without_l1()
    };
    builder.build().expect("valid cache")
}

/// `(l1_hits, l2_hits, misses, coalesced, loads, errors)`.
fn counts(stats: CacheStats) -> [u64; 6] {
    [
        stats.l1_hits,
        stats.l2_hits,
        stats.misses,
        stats.coalesced,
        stats.loads,
        stats.errors,
    ]
}

#[tokio::test]
async fn each_call_counts_once_the_same_on_every_backend() {
    let mut seen = Vec::new();
    for backend in backends() {
        let name = backend.name();
        let cache = cache_over(backend, true);
        let load = || async { "v".to_string() };
        cache.get_or_insert_with("a", None, load).await; // miss, load
        assert_eq!(counts(cache.stats()), [0, 0, 1, 0, 1, 0], "{name}");
        cache.get_or_insert_with("a", None, load).await; // L1
        assert_eq!(cache.get::<String>("b").await.unwrap(), None); // miss
        cache.set("c", "w", None).await.unwrap();
        let other = cache_over(Arc::clone(cache.backend()), true);
        assert_eq!(
            other.get::<String>("c").await.unwrap().as_deref(),
            Some("w")
        ); // backend
        assert_eq!(counts(other.stats()), [0, 1, 0, 0, 0, 0], "{name}");
        assert_eq!(counts(cache.stats()), [1, 0, 2, 0, 1, 0], "{name}");
        seen.push(counts(cache.stats()));
    }
    assert_eq!(seen[0], seen[1], "memory and plain count alike");
}

#[tokio::test(start_paused = true)]
async fn waiters_of_one_load_are_coalesced_not_missed() {
    for backend in backends() {
        let name = backend.name();
        let cache = cache_over(backend, false);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with("hot", None, || async {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            7_u32
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 7);
        }
        assert_eq!(counts(cache.stats()), [0, 0, 1, 49, 1, 0], "{name}");
    }
}
