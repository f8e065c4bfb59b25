//! A concurrent map of bytes bounded by entry count and by bytes, with TTL:
//! the storage under both the L1 tier and the in-memory backend.
//!
//! Eviction is FIFO by insertion: when an insert takes the store over either
//! bound, the oldest inserted entries go first. Expired entries are dropped
//! when read and when eviction reaches them. FIFO rather than LRU because a
//! hit then costs one shard read lock and no write: the insertion queue is
//! touched only by inserts. Overwriting a key counts as a new insertion.
//!
//! Keys are hashed with foldhash (hashbrown's default hasher) rather than
//! std's SipHash, which is a large share of a hit this short
//! (docs/benchmarks.md). foldhash is seeded per process, so keys built from
//! user data cannot be crafted to collide without knowing the seed.

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::KeyTtl;

/// Bytes charged per entry on top of key and value, for the map's own bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// Keys a [`Store`] can hold: `str` for backend keys, `[u8]` for the
/// L1 tier (whose keys may be a function's serialized arguments).
pub(crate) trait StoreKey: Hash + Eq + AsRef<[u8]> {
    /// An owned copy, as the map holds it.
    fn to_arc(&self) -> Arc<Self>;
}

impl StoreKey for str {
    fn to_arc(&self) -> Arc<str> {
        Arc::from(self)
    }
}

impl StoreKey for [u8] {
    fn to_arc(&self) -> Arc<[u8]> {
        Arc::from(self)
    }
}

/// Values a [`Store`] can hold: bytes, or the L1 copies of cached
/// functions' results; `size` is what an entry is charged.
pub(crate) trait StoreValue: Clone {
    fn size(&self) -> usize;
}

impl StoreValue for Bytes {
    fn size(&self) -> usize {
        self.len()
    }
}

#[derive(Debug)]
pub(crate) struct Store<K: StoreKey + ?Sized = str, V: StoreValue = Bytes> {
    map: DashMap<Arc<K>, Entry<V>, foldhash::fast::RandomState>,
    /// Keys in insertion order, with the generation that inserted them; an
    /// item whose generation no longer matches the map is stale and skipped.
    order: Mutex<VecDeque<(Arc<K>, u64)>>,
    bytes: AtomicUsize,
    generation: AtomicU64,
    /// Entries dropped to keep within the bounds.
    evictions: AtomicU64,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires_at: Option<Instant>,
    generation: u64,
}

impl<V: StoreValue> Entry<V> {
    fn cost(&self, key: &[u8]) -> usize {
        cost(key, &self.value)
    }

    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

fn cost(key: &[u8], value: &impl StoreValue) -> usize {
    key.len() + value.size() + ENTRY_OVERHEAD
}

impl<K: StoreKey + ?Sized, V: StoreValue> Store<K, V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Store {
            map: DashMap::default(),
            order: Mutex::new(VecDeque::new()),
            bytes: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The value under `key` and when it expires, unless missing or expired.
    pub(crate) fn get(&self, key: &K) -> Option<(V, Option<Instant>)> {
        let now = Instant::now();
        {
            let entry = self.map.get(key)?;
            if !entry.is_expired(now) {
                return Some((entry.value.clone(), entry.expires_at));
            }
        }
        self.remove_if(key, |entry| entry.is_expired(now));
        None
    }

    /// Stores `value` for `ttl` (`None`: until evicted). A value larger than
    /// the byte bound is not stored; returns whether it was.
    pub(crate) fn insert(&self, key: &K, value: V, ttl: Option<Duration>) -> bool {
        let size = cost(key.as_ref(), &value);
        if size > self.max_bytes {
            self.remove(key);
            return false;
        }
        let key = key.to_arc();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            value,
            // A TTL beyond what the clock counts is none.
            expires_at: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
            generation,
        };
        let mut order = self
            .order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = self.map.insert(key.clone(), entry) {
            self.bytes
                .fetch_sub(old.cost((*key).as_ref()), Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
        order.push_back((key, generation));
        self.evict(&mut order);
        true
    }

    /// Removes `key`; `true` if a live entry was there.
    pub(crate) fn remove(&self, key: &K) -> bool {
        let now = Instant::now();
        self.remove_if(key, |_| true)
            .is_some_and(|entry| !entry.is_expired(now))
    }

    /// Whether a live entry is under `key`.
    pub(crate) fn contains(&self, key: &K) -> bool {
        let now = Instant::now();
        self.map
            .get(key)
            .is_some_and(|entry| !entry.is_expired(now))
    }

    /// The remaining lifetime of `key`.
    pub(crate) fn ttl(&self, key: &K) -> KeyTtl {
        let now = Instant::now();
        match self.map.get(key) {
            Some(entry) if !entry.is_expired(now) => match entry.expires_at {
                Some(at) => KeyTtl::Expires(at - now),
                None => KeyTtl::Forever,
            },
            _ => KeyTtl::Missing,
        }
    }

    /// Sets the lifetime of a live `key` to `ttl`; `false` if missing.
    pub(crate) fn touch(&self, key: &K, ttl: Option<Duration>) -> bool {
        let now = Instant::now();
        match self.map.get_mut(key) {
            Some(mut entry) if !entry.is_expired(now) => {
                entry.expires_at = ttl.and_then(|ttl| now.checked_add(ttl));
                true
            }
            _ => false,
        }
    }

    /// Entries held, expired ones not yet dropped included.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The largest value that fits under `key`.
    pub(crate) fn value_limit(&self, key: &K) -> usize {
        self.max_bytes
            .saturating_sub(key.as_ref().len() + ENTRY_OVERHEAD)
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<Arc<K>> = self
            .map
            .iter()
            .map(|entry| Arc::clone(entry.key()))
            .collect();
        for key in keys {
            self.remove_if(&key, |_| true);
        }
        order.clear();
    }

    /// Entries dropped so far to keep within the bounds.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Bytes charged for the entries held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn remove_if(&self, key: &K, condition: impl FnOnce(&Entry<V>) -> bool) -> Option<Entry<V>> {
        let (key, entry) = self.map.remove_if(key, |_, entry| condition(entry))?;
        self.bytes
            .fetch_sub(entry.cost((*key).as_ref()), Ordering::Relaxed);
        Some(entry)
    }

    /// Drops the oldest entries until both bounds hold, then compacts the
    /// queue if stale items (overwritten or removed keys) dominate it.
    fn evict(&self, order: &mut VecDeque<(Arc<K>, u64)>) {
        while self.map.len() > self.max_entries || self.bytes() > self.max_bytes {
            let Some((key, generation)) = order.pop_front() else {
                break;
            };
            if self
                .remove_if(&key, |entry| entry.generation == generation)
                .is_some()
            {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        if order.len() > 2 * self.map.len() + 64 {
            order.retain(|(key, generation)| {
                self.map
                    .get(key)
                    .is_some_and(|entry| entry.generation == *generation)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(len: usize) -> Bytes {
        Bytes::from(vec![7; len])
    }

    #[test]
    fn evicts_oldest_first_when_over_entry_bound() {
        let store = Store::new(3, usize::MAX);
        for key in ["a", "b", "c", "d"] {
            assert!(store.insert(key, value(1), None));
        }
        assert_eq!(store.len(), 3);
        assert!(!store.contains("a"), "oldest entry must go first");
        assert!(store.contains("b") && store.contains("c") && store.contains("d"));
    }

    #[test]
    fn overwrite_refreshes_position_and_bytes() {
        let store = Store::new(2, usize::MAX);
        store.insert("a", value(10), None);
        store.insert("b", value(10), None);
        store.insert("a", value(20), None);
        store.insert("c", value(10), None);
        assert!(store.contains("a"), "re-inserted key is young again");
        assert!(!store.contains("b"));
        assert_eq!(
            store.bytes(),
            cost(b"a", &value(20)) + cost(b"c", &value(10))
        );
    }

    #[test]
    fn byte_bound_holds_and_oversized_values_are_refused() {
        let per_entry = cost(b"k00", &value(100));
        let store: Store = Store::new(1000, per_entry * 5);
        for i in 0..50 {
            store.insert(&format!("k{i:02}"), value(100), None);
            assert!(store.bytes() <= per_entry * 5);
        }
        assert_eq!(store.len(), 5);
        assert!(store.contains("k49") && !store.contains("k44"));
        assert!(!store.insert("huge", value(per_entry * 5), None));
        assert!(!store.contains("huge"));
    }

    #[test]
    fn queue_stays_bounded_under_overwrites() {
        let store = Store::new(10, usize::MAX);
        for _ in 0..10_000 {
            store.insert("same", value(1), None);
        }
        assert_eq!(store.len(), 1);
        assert!(
            store.order.lock().unwrap().len() <= 2 + 64 + 1,
            "stale queue items are compacted"
        );
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
}
