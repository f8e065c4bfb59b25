//! The backend keys of real `#[cache]` calls, whose arguments go one by one
//! into the call's key: pinned as bincode 2 gave them (see
//! cachekit-core/tests/key_vectors.rs for the types one by one), and one key
//! for a `HashMap` argument whatever its order.
#![cfg(feature = "macros")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use cachekit::{Backend, MemoryBackend, cache};
use serde::Serialize;

fn backend() -> Arc<MemoryBackend> {
    static BACKEND: OnceLock<Arc<MemoryBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(MemoryBackend::new()))
        .clone()
}

#[derive(Serialize)]
enum Tier {
    Free,
    Paid { seats: u16 },
}

#[cache(namespace = "pin", backend = backend(), l1 = false)]
async fn mixed(id: u64, name: &str, delta: i64, tier: Tier) -> u8 {
    let _ = (id, name, delta, tier);
    1
}

#[cache(namespace = "pin", backend = backend(), l1 = false)]
async fn hashed(tags: Vec<Option<String>>, c: char, ratio: f64) -> u8 {
    let _ = (tags, c, ratio);
    2
}

static BY_MAP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(namespace = "pin", backend = backend())]
async fn by_map(map: HashMap<String, u32>) -> usize {
    BY_MAP_RUNS.fetch_add(1, Ordering::SeqCst);
    map.len()
}

async fn stored(key: &str) -> bool {
    backend().exists(key).await.unwrap()
}

#[tokio::test]
async fn the_keys_of_calls_are_the_ones_recorded_with_bincode() {
    mixed(300, "é", -2, Tier::Paid { seats: 251 }).await;
    // 300: fb 2c 01; "é": 02 c3 a9; -2: 03; Paid: 01, 251: fb fb 00.
    assert!(stored("pin:mixed:fb2c0102c3a90301fbfb00").await);
    mixed(1, "", 0, Tier::Free).await;
    assert!(stored("pin:mixed:01000000").await);
    hashed(vec![Some("a".into()), None], '€', -0.0).await;
    // 16 bytes: hashed; BLAKE3 of bincode's bytes, computed apart.
    assert!(stored("pin:hashed:f6ed6ddd8ec23bac369e67f66543d35b").await);
}

#[tokio::test]
async fn a_hash_map_argument_hits_whatever_its_order() {
    let entries: Vec<(String, u32)> = (0..40).map(|i| (format!("k{i}"), i)).collect();
    for round in 0..5 {
        // A new `RandomState` every round: another iteration order.
        let map: HashMap<String, u32> = if round % 2 == 0 {
            entries.iter().cloned().collect()
        } else {
            entries.iter().rev().cloned().collect()
        };
        assert_eq!(by_map(map).await, 40);
    }
    assert_eq!(BY_MAP_RUNS.load(Ordering::SeqCst), 1);
}
