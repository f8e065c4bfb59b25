//! `#[cache(batch)]`: a function from a `Vec` of keys to a map of the keys
//! found; each key's value is an entry of its own, the body runs once with
//! the keys that missed, and a key the body leaves out is not stored.
#![cfg(feature = "macros")]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cachekit::{MemoryBackend, cache};

fn shared_backend() -> Arc<MemoryBackend> {
    static BACKEND: OnceLock<Arc<MemoryBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(MemoryBackend::new()))
        .clone()
}

/// The keys each run of `names` was given.
static ASKED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
static NAME_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Users 1 to 999 exist; 0 and 1000 up do not.
#[cache(batch, ttl = "5m", namespace = "users", backend = shared_backend())]
async fn names(ids: Vec<u64>) -> HashMap<u64, String> {
    NAME_RUNS.fetch_add(1, Ordering::SeqCst);
    ASKED.lock().unwrap().push(ids.clone());
    ids.into_iter()
        .filter(|id| (1..1000).contains(id))
        .map(|id| (id, format!("user {id}")))
        .collect()
}

#[tokio::test]
async fn a_batch_runs_its_body_once_with_the_keys_that_missed() {
    let first = names((1..=900).collect()).await;
    assert_eq!(first.len(), 900);
    // 1,000 keys, 100 of them not stored yet (901..=1000, and 1000 absent).
    let all = names((1..=1000).collect()).await;
    assert_eq!(all.len(), 999, "1000 does not exist");
    assert_eq!(all[&950], "user 950");
    assert_eq!(NAME_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(
        ASKED.lock().unwrap()[1],
        (901..=1000).collect::<Vec<_>>(),
        "the second run got only the misses"
    );
    let stats = names_stats();
    assert_eq!(
        (stats.l2_hits, stats.misses, stats.loads),
        (900, 1000, 2),
        "{stats:?}"
    );
    // A key the body left out is not stored: asked again.
    let again = names(vec![5, 1000]).await;
    assert_eq!(again.len(), 1);
    assert_eq!(ASKED.lock().unwrap()[2], vec![1000]);
    // Invalidated keys are loaded again.
    names_invalidate(vec![5, 6]).await.unwrap();
    names(vec![5, 6, 7]).await;
    assert_eq!(ASKED.lock().unwrap()[3], vec![5, 6]);
}

#[derive(serde::Serialize)]
struct Repo {
    tenant: u64,
}

impl Repo {
    /// The receiver is part of each key: tenants do not share results.
    #[cache(batch, namespace = "repo", backend = shared_backend())]
    async fn labels(&self, ids: Vec<u64>) -> HashMap<u64, String> {
        ids.into_iter()
            .map(|id| (id, format!("tenant {} item {id}", self.tenant)))
            .collect()
    }
}

#[tokio::test]
async fn a_batch_method_keys_its_receiver() {
    let one = Repo { tenant: 1 }.labels(vec![7]).await;
    let two = Repo { tenant: 2 }.labels(vec![7]).await;
    assert_eq!(one[&7], "tenant 1 item 7");
    assert_eq!(two[&7], "tenant 2 item 7");
}

/// Ordered, not hashable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
struct Sku(String);

#[cache(batch, namespace = "prices", backend = shared_backend())]
async fn prices(mut skus: Vec<Sku>) -> BTreeMap<Sku, u64> {
    skus.sort();
    skus.into_iter()
        .map(|sku| {
            let price = sku.0.len() as u64;
            (sku, price)
        })
        .collect()
}

#[tokio::test]
async fn a_batch_may_return_a_btree_map_and_bind_its_keys_mut() {
    let skus = vec![Sku("bb".into()), Sku("a".into())];
    let got = prices(skus.clone()).await;
    assert_eq!(got[&Sku("bb".into())], 2);
    assert_eq!(prices(skus).await, got, "stored");
    assert_eq!(prices_stats().l2_hits, 2);
}
