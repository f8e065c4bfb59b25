//! What a batch asks of the backend: one `get_many` for the keys L1 does
//! not hold, one `set_many` for the loaded values (or, with TTL jitter, a
//! set each, each with its own TTL), and no single reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cachekit_core::backend::Bytes;
use cachekit_core::{
    Backend, Cache, ConfigSource, Health, KeyTtl, L1Config, MemoryBackend, Result,
};

/// The in-process store, counting the operations asked of it.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryBackend,
    gets: AtomicUsize,
    get_manys: AtomicUsize,
    sets: AtomicUsize,
    set_manys: AtomicUsize,
}

#[async_trait]
impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn capabilities(&self) -> cachekit_core::Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.get_manys.fetch_add(1, Ordering::SeqCst);
        self.inner.get_many(keys).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.inner.set(key, value, ttl).await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        self.set_manys.fetch_add(1, Ordering::SeqCst);
        self.inner.set_many(entries, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key).await
    }

    async fn health(&self) -> Result<Health> {
        Ok(Health::new(self.name()))
    }
}

fn counts(backend: &Counting) -> [usize; 4] {
    [
        &backend.gets,
        &backend.get_manys,
        &backend.sets,
        &backend.set_manys,
    ]
    .map(|count| count.swap(0, Ordering::SeqCst))
}

fn keys() -> Vec<String> {
    (0..1_000).map(|n| format!("k{n}")).collect()
}

async fn load(missing: Vec<String>) -> Vec<u64> {
    missing
        .iter()
        .map(|key| key[1..].parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_batch_is_one_get_many_and_one_set_many() {
    let backend = Arc::new(Counting::default());
    let cache = Cache::builder()
        .shared_backend(backend.clone())
        .l1(L1Config::default())
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let ttl = Some(Duration::from_secs(60));
    let keys = keys();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let first: Vec<u64> = cache.get_or_insert_many(&keys[..900], ttl, load).await;
    assert_eq!(first.len(), 900);
    assert_eq!(
        counts(&backend),
        [0, 1, 0, 1],
        "gets, get_manys, sets, set_manys"
    );
    // 900 in L1 now: the other 100 in one get_many, then one set_many.
    let mut asked = 0;
    let all: Vec<u64> = cache
        .get_or_insert_many(&keys, ttl, |missing| {
            asked = missing.len();
            load(missing)
        })
        .await;
    assert_eq!(all, (0..1_000).collect::<Vec<_>>());
    assert_eq!(asked, 100);
    assert_eq!(counts(&backend), [0, 1, 0, 1]);
    let stats = cache.stats();
    assert_eq!(
        (stats.l1_hits, stats.misses, stats.loads),
        (900, 1_000, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn with_jitter_each_entry_gets_its_own_ttl() {
    let backend = Arc::new(Counting::default());
    let cache = Cache::builder()
        .shared_backend(backend.clone())
        .without_l1()
        .ttl_jitter(20)
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let keys = keys();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let _: Vec<u64> = cache
        .get_or_insert_many(&keys[..100], Some(Duration::from_secs(1000)), load)
        .await;
    assert_eq!(counts(&backend), [0, 1, 100, 0]);
    let inspect = backend.inner.as_ttl_inspect().unwrap();
    let mut ttls = Vec::new();
    for key in &keys[..100] {
        match inspect.ttl(&cache.backend_key(key)).await.unwrap() {
            KeyTtl::Expires(left) => ttls.push(left.as_secs()),
            other => panic!("{other:?}"),
        }
    }
    ttls.sort();
    assert!(ttls[0] >= 790 && ttls[99] <= 1200, "{ttls:?}");
    assert!(ttls[99] - ttls[0] > 100, "spread: {ttls:?}");
}

#[tokio::test]
async fn a_batch_that_cannot_be_stored_is_returned_uncached() {
    let cache = Cache::builder()
        .backend(cachekit_core::backend::testkit::PlainBackend(
            MemoryBackend::new(),
        ))
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    // `Vec<()>` cannot be encoded (zero-sized elements): the store fails.
    let values: Vec<Vec<()>> = cache
        .get_or_insert_many(&["a", "b"], None, |missing| async move {
            missing.iter().map(|_| vec![(); 3]).collect()
        })
        .await;
    assert_eq!(
        values,
        vec![vec![(); 3], vec![(); 3]],
        "returned all the same"
    );
    assert_eq!(cache.get::<Vec<()>>("a").await.unwrap(), None, "not stored");
}

#[tokio::test]
async fn a_failed_read_loads_only_what_l1_does_not_have_and_counts_each_key_once() {
    use cachekit_core::backend::testkit::{Fault, FaultyBackend};
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let cache = Cache::builder()
        .backend(faulty.clone())
        .l1(L1Config::default())
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let _: Vec<u64> = cache.get_or_insert_many(&["k1"], None, load).await;
    let before = cache.stats();
    faulty.set_fault(Fault::Down);
    let mut asked = Vec::new();
    let values: Vec<u64> = cache
        .get_or_insert_many(&["k1", "k2"], None, |missing| {
            asked = missing.clone();
            load(missing)
        })
        .await;
    assert_eq!(values, vec![1, 2]);
    assert_eq!(asked, vec!["k2".to_owned()], "k1 was in L1");
    let after = cache.stats();
    assert_eq!(
        (after.l1_hits - before.l1_hits, after.misses - before.misses),
        (1, 1),
        "{after:?}"
    );
    // `get_many` fails as a whole, and counts no hit it did not return.
    assert!(cache.get_many::<u64>(&["k1", "k2"]).await.is_err());
    assert_eq!(cache.stats().l1_hits, after.l1_hits);
}
