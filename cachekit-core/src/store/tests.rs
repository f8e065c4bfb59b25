//! The store's tests: bounds, eviction, expiry and the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use super::*;

fn value(len: usize) -> Bytes {
    Bytes::from(vec![7; len])
}

#[test]
fn holds_at_most_max_entries() {
    for max_entries in [1, 3, 100, 1000] {
        let store: Store = Store::new(max_entries, usize::MAX / 2);
        for i in 0..max_entries * 4 {
            assert!(store.insert(&format!("k{i}"), value(1), None));
            assert!(
                store.len() <= max_entries,
                "{} > {max_entries}",
                store.len()
            );
        }
        assert!(
            store.len() >= max_entries / 2,
            "a full store keeps most of its room"
        );
        assert_eq!(
            store.evictions() as usize,
            max_entries * 4 - store.len(),
            "every entry gone was evicted"
        );
    }
}

#[test]
fn the_default_bounds_hold_exactly_max_entries_small_entries() {
    for (max_entries, max_bytes) in [(10_000, 64 << 20), (100_000, 256 << 20), (7, 1000)] {
        let store: Store = Store::new(max_entries, max_bytes);
        for i in 0..max_entries * 2 {
            store.insert(&format!("{i}"), value(1), None);
        }
        let held = store.len();
        assert!(held <= max_entries, "{held} > {max_entries}");
        if max_entries % 16 == 0 {
            assert_eq!(held, max_entries, "small entries fill every place");
        }
    }
}

#[test]
fn hot_entries_survive_a_scan_of_cold_ones() {
    let store: Store = Store::new(1000, usize::MAX / 2);
    let hot: Vec<String> = (0..100).map(|i| format!("hot{i}")).collect();
    for key in &hot {
        store.insert(key, value(1), None);
    }
    // Read twice: hot keys are in use.
    for _ in 0..2 {
        for key in &hot {
            assert!(store.get(key).is_some());
        }
    }
    // Ten times the capacity of keys read once.
    for i in 0..10_000 {
        store.insert(&format!("scan{i}"), value(1), None);
    }
    let kept = hot.iter().filter(|key| store.contains(key)).count();
    assert!(
        kept >= 90,
        "only {kept} of 100 hot entries survived the scan"
    );
}

#[test]
fn overwrite_keeps_bytes_exact_and_is_no_eviction() {
    let store: Store = Store::new(2, 1 << 20);
    store.insert("a", value(10), None);
    store.insert("b", value(10), None);
    store.insert("a", value(20), None);
    assert_eq!(store.evictions(), 0, "an overwrite is not an eviction");
    assert_eq!(
        store.bytes(),
        cost(b"a", &value(20)) + cost(b"b", &value(10))
    );
    for _ in 0..10_000 {
        store.insert("same", value(1), None);
    }
    assert!(store.len() <= 2);
    assert!(store.remove("same"));
    store.clear();
    assert_eq!((store.len(), store.bytes()), (0, 0));
}

#[test]
fn byte_bound_holds_and_oversized_values_are_refused() {
    let per_entry = cost(b"k00", &value(100));
    let store: Store = Store::new(1000, per_entry * 5);
    for i in 0..50 {
        assert!(store.insert(&format!("k{i:02}"), value(100), None));
        assert!(store.bytes() <= per_entry * 5, "{}", store.bytes());
    }
    assert!(store.len() <= 5);
    let limit = store.value_limit("huge");
    assert!(limit >= 100 && limit < per_entry * 5, "{limit}");
    store.insert("huge", value(1), None);
    assert!(!store.insert("huge", value(limit + 1), None));
    assert!(!store.contains("huge"), "a refused value drops the old one");
    assert!(store.insert("huge", value(limit), None));
}

#[test]
fn a_large_store_takes_values_up_to_a_shards_share() {
    let store: Store = Store::new(100_000, 256 << 20);
    let limit = store.value_limit("k");
    assert!(limit > 15 << 20, "{limit}");
    assert!(store.insert("k", value(limit), None));
    assert_eq!(store.get("k").map(|(v, _)| v.len()), Some(limit));
}

#[test]
fn a_key_evicted_unread_comes_back_into_the_main_queue() {
    // One shard of 100 entries: its small queue holds 2.
    let store: Store = Store::new(100, 1 << 20);
    for i in 0..100 {
        store.insert(&format!("old{i}"), value(1), None);
        assert!(store.get(&format!("old{i}")).is_some());
    }
    store.insert("again", value(1), None);
    for i in 0..10 {
        store.insert(&format!("push{i}"), value(1), None);
    }
    assert!(
        !store.contains("again"),
        "evicted unread from the small queue"
    );
    // Back from the ghost queue: into the main queue, where a scan of
    // keys read once does not reach it; a new key is not so kept.
    store.insert("again", value(1), None);
    store.insert("new", value(1), None);
    for i in 0..1000 {
        store.insert(&format!("scan{i}"), value(1), None);
    }
    assert!(
        store.contains("again"),
        "a key seen twice outlives the scan"
    );
    assert!(!store.contains("new"), "a key seen once does not");
}

#[test]
fn a_read_counts_only_what_its_check_takes() {
    let store: Store = Store::new(10, 1 << 20).counting_hits();
    store.insert("k", value(3), None);
    assert!(store.get_if("k", |_| Check::Leave).taken().is_none());
    assert!(store.contains("k"), "left in place");
    assert_eq!(store.hits(), 0);
    assert_eq!(
        store
            .get_if("k", |_| Check::Take)
            .taken()
            .map(|(v, _)| v.len()),
        Some(3)
    );
    assert_eq!(store.hits(), 1);
    assert!(store.get_if("k", |_| Check::Remove).taken().is_none());
    assert!(!store.contains("k"));
    assert_eq!((store.len(), store.bytes(), store.hits()), (0, 0, 1));
}

#[test]
fn removed_entries_leave_a_bounded_trail() {
    let store: Store = Store::new(100, 1 << 20);
    for i in 0..50 {
        store.insert(&format!("stay{i}"), value(1), None);
    }
    for i in 0..100_000 {
        let key = format!("churn{}", i % 7);
        store.insert(&key, value(1), None);
        assert!(store.remove(&key));
    }
    assert_eq!(store.len(), 50);
    let marks = store.shards[0].read().unwrap().marks();
    assert!(marks <= 2 * 50 + 64, "{marks} marks");
}

#[test]
fn a_read_that_removes_never_undoes_a_newer_write() {
    let store: Store = Store::new(10, 1 << 20);
    store.insert("k", value(5), None);
    let (hash, index) = store.locate("k");
    // A read finds the value to remove and lets go of its read lock...
    let Read::Remove(written) = store.read(index).read(hash, "k", |_| Check::Remove) else {
        panic!("the read finds the value to remove");
    };
    // ...a write of the same size lands in place...
    let newer = Bytes::from_static(b"newer");
    store.insert("k", newer.clone(), None);
    // ...and the read's removal leaves it.
    assert!(!store.write(index).remove_written(hash, written));
    assert_eq!(store.get("k").map(|(found, _)| found), Some(newer));
}

#[tokio::test(start_paused = true)]
async fn removals_by_reads_leave_a_bounded_trail() {
    let store: Store = Store::new(100, 1 << 20);
    for i in 0..50 {
        store.insert(&format!("stay{i}"), value(1), None);
    }
    for i in 0..20_000 {
        let key = format!("churn{}", i % 7);
        if i % 2 == 0 {
            store.insert(&key, value(1), None);
            assert!(store.get_if(&key, |_| Check::Remove).taken().is_none());
        } else {
            store.insert(&key, value(1), Some(Duration::from_millis(1)));
            tokio::time::advance(Duration::from_millis(2)).await;
            assert!(store.get(&key).is_none(), "expired");
        }
    }
    assert_eq!(store.len(), 50);
    let marks = store.shards[0].read().unwrap().marks();
    assert!(marks <= 2 * 50 + 64, "{marks} marks");
}

#[test]
fn bounds_at_the_top_of_the_range_do_not_overflow() {
    let store: Store = Store::new(usize::MAX, usize::MAX);
    assert!(store.insert("k", value(1), None));
    assert!(store.contains("k"));
}

/// A value whose `Drop` panics once armed.
#[derive(Clone)]
struct Boom(Arc<AtomicBool>);

impl StoreValue for Boom {
    fn size(&self) -> usize {
        1
    }
}

impl Drop for Boom {
    fn drop(&mut self) {
        if self.0.swap(false, AtomicOrdering::SeqCst) {
            panic!("boom");
        }
    }
}

#[test]
fn a_panicking_drop_in_clear_leaves_the_counts_right() {
    let armed = Arc::new(AtomicBool::new(false));
    let store: Store<str, Boom> = Store::new(10, 1 << 20);
    store.insert("a", Boom(armed.clone()), None);
    store.insert("b", Boom(Arc::default()), None);
    armed.store(true, AtomicOrdering::SeqCst);
    let cleared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.clear()));
    assert!(cleared.is_err(), "the value's drop panicked");
    assert_eq!((store.len(), store.bytes()), (0, 0));
    assert!(store.insert("c", Boom(Arc::default()), None));
    assert!(store.contains("c"));
}

#[test]
fn in_a_small_shard_a_new_key_outlives_the_next_insert() {
    // One shard of 64 entries, all read once: 2% of it is no entry.
    let store: Store = Store::new(64, 1 << 20);
    for i in 0..64 {
        store.insert(&format!("old{i}"), value(1), None);
        assert!(store.get(&format!("old{i}")).is_some());
    }
    store.insert("x", value(1), None);
    store.insert("y", value(1), None);
    assert!(store.contains("x"), "x has its turn in the small queue");
}

#[test]
fn tiny_stores_hold_their_bounds() {
    for max_entries in 1..=4 {
        let store: Store = Store::new(max_entries, 1 << 20);
        for i in 0..1000 {
            let key = format!("k{}", i % 7);
            store.insert(&key, value(i % 50), None);
            if i % 3 == 0 {
                store.get(&key);
            }
            if i % 11 == 0 {
                store.remove(&format!("k{}", i % 5));
            }
            assert!(store.len() <= max_entries);
        }
    }
    let store: Store = Store::new(10, 10);
    assert!(!store.insert("k", value(1), None), "smaller than one entry");
    assert_eq!((store.len(), store.bytes()), (0, 0));
}

proptest::proptest! {
    /// Whatever the operations, a read returns the value last stored
    /// under its key or nothing, and the bounds and byte count hold.
    #[test]
    fn reads_never_return_another_value_and_the_bounds_hold(
        ops in proptest::collection::vec((0u8..3, 0u8..24, 0usize..300), 1..400),
    ) {
        let max_bytes = 2_000;
        let store: Store = Store::new(8, max_bytes);
        let mut last: std::collections::HashMap<String, Bytes> = Default::default();
        for (op, key, len) in ops {
            let key = format!("k{key}");
            match op {
                0 => {
                    let stored = Bytes::from(vec![len as u8; len]);
                    store.insert(&key, stored.clone(), None);
                    last.insert(key, stored);
                }
                1 => {
                    store.remove(&key);
                    last.remove(&key);
                }
                _ => {
                    if let Some((found, _)) = store.get(&key) {
                        proptest::prop_assert_eq!(Some(&found), last.get(&key));
                    }
                }
            }
            proptest::prop_assert!(store.len() <= 8);
            proptest::prop_assert!(store.bytes() <= max_bytes);
            let held: usize = last
                .iter()
                .filter(|(key, _)| store.contains(key))
                .map(|(key, stored)| cost(key.as_bytes(), stored))
                .sum();
            proptest::prop_assert_eq!(store.bytes(), held);
            proptest::prop_assert_eq!(
                store.len(),
                last.keys().filter(|key| store.contains(key)).count()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_ttl() {
    let store = Store::new(10, usize::MAX);
    store.insert("k", value(1), Some(Duration::from_secs(10)));
    store.insert("forever", value(1), None);
    assert_eq!(store.ttl("k"), KeyTtl::Expires(Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(store.get("k").is_some());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(store.get("k").is_none());
    assert_eq!(store.ttl("k"), KeyTtl::Missing);
    assert_eq!(store.len(), 1, "expired entry dropped on read");
    assert_eq!(store.bytes(), cost(b"forever", &value(1)));
    assert_eq!(store.ttl("forever"), KeyTtl::Forever);
}

#[tokio::test(start_paused = true)]
async fn touch_moves_expiry() {
    let store = Store::new(10, usize::MAX);
    store.insert("k", value(1), Some(Duration::from_secs(1)));
    assert!(store.touch("k", Some(Duration::from_secs(100))));
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(store.contains("k"));
    assert!(!store.touch("missing", None));
}
