//! A concurrent map of bytes bounded by entry count and by bytes, with TTL:
//! the storage under both the L1 tier and the in-memory backend.
//!
//! Built on `quick_cache`, whose eviction (a Clock-PRO variant close to
//! S3-FIFO) keeps what is hot: an entry read since it came in survives a
//! scan of keys read once, where first-in-first-out eviction would drop it.
//! A hit takes one shard read lock and sets a reference counter in place;
//! inserts and evictions take the shard's write lock.
//!
//! Two bounds in one weight: the cache holds at most `max_bytes` of weight,
//! and an entry weighs its cost (key, value and a fixed overhead) but never
//! less than `max_bytes / max_entries` (rounded down). So the weights bound
//! the bytes, and also the entries: no more than `max_entries` of the least
//! weight fit.
//!
//! The bytes are split over [`shards`] shards, each holding its share, so
//! one value may take at most a shard's share (less quick_cache's reserve
//! for cold entries): [`largest_value`] says how much.
//!
//! Keys are hashed with foldhash (hashbrown's default hasher) rather than
//! std's SipHash, which is a large share of a hit this short
//! (docs/benchmarks.md). foldhash is seeded per process, so keys built from
//! user data cannot be crafted to collide without knowing the seed.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};
use tokio::time::Instant;

use crate::KeyTtl;

/// Bytes charged per entry on top of key and value, for the map's own bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// The share of a shard's bytes that entries in use may take: quick_cache's
/// default, which keeps the rest for entries on trial. One value may take
/// no more.
const HOT_ALLOCATION: f64 = 0.97;

/// Most shards: enough that threads on different keys rarely share a lock
/// on the machines this runs on, few enough that a shard's share of the
/// bytes (the largest value) stays large.
const MAX_SHARDS: usize = 16;

/// Fewest entries a shard is sized for, so that small stores keep their
/// eviction policy meaningful (quick_cache's own floor).
const MIN_SHARD_ENTRIES: usize = 32;

/// Fewest bytes a shard is sized for: a store of a few MiB stays in few
/// shards, so that one value may still take most of it.
const MIN_SHARD_BYTES: usize = 1 << 20;

/// Keys a [`Store`] can hold: `str` for backend keys, `[u8]` for the
/// L1 tier (whose keys may be a function's serialized arguments).
pub(crate) trait StoreKey: Hash + Eq + AsRef<[u8]> + Send + Sync {
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
pub(crate) trait StoreValue: Clone + Send + Sync {
    fn size(&self) -> usize;

    /// Who checks the value's expiry, `ttl` after it was made; by default
    /// the store.
    fn expiry(&mut self, _ttl: Duration) -> Expiry {
        Expiry::ByStore
    }
}

/// Who checks a value's expiry (see [`StoreValue::expiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The store, from the TTL it is given.
    ByStore,
    /// The value itself, at every read: the store keeps it without a TTL.
    Itself,
    /// Nobody: it would expire at once, so it is not kept.
    Over,
}

impl StoreValue for Bytes {
    fn size(&self) -> usize {
        self.len()
    }
}

#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    expires_at: Option<Instant>,
}

impl<V> Entry<V> {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

fn cost(key: &[u8], value: &impl StoreValue) -> usize {
    key.len() + value.size() + ENTRY_OVERHEAD
}

/// How many shards a store gets: a power of two, at most [`MAX_SHARDS`],
/// each sized for at least [`MIN_SHARD_ENTRIES`] entries and
/// [`MIN_SHARD_BYTES`] bytes.
const fn shards(max_entries: usize, max_bytes: usize) -> usize {
    let by_entries = max_entries / MIN_SHARD_ENTRIES;
    let by_bytes = max_bytes / MIN_SHARD_BYTES;
    let wanted = if by_entries < by_bytes {
        by_entries
    } else {
        by_bytes
    };
    let wanted = if wanted < 1 {
        1
    } else if wanted > MAX_SHARDS {
        MAX_SHARDS
    } else {
        wanted
    };
    // The largest power of two not above `wanted`.
    1 << wanted.ilog2()
}

/// How a store of `max_entries` and `max_bytes` is laid out over its
/// shards; a `const fn` so that a backend can declare the largest value a
/// store of its default bounds takes.
struct Layout {
    shards: usize,
    /// The weight all entries together may have.
    capacity: u64,
    /// The least weight of an entry.
    floor: u64,
    /// The most one entry may weigh: a shard's share for entries in use.
    max_weight: u64,
}

impl Layout {
    const fn of(max_entries: usize, max_bytes: usize) -> Layout {
        let max_entries = if max_entries == 0 { 1 } else { max_entries };
        let shards = shards(max_entries, max_bytes);
        // Room for whole shards of least-weight entries: every shard takes
        // the same number, and together no more than `max_entries` (all of
        // them when the shard count divides it, as it does the defaults).
        let per_shard = if max_entries / shards == 0 {
            1
        } else {
            max_entries / shards
        };
        let room = (shards * per_shard) as u64;
        let floor = max_bytes as u64 / room;
        // A whole number of floors per shard, and no more than `max_bytes`
        // in all; without a floor (fewer bytes than entries), a multiple
        // of the shard count.
        let capacity = if floor > 0 {
            floor * room
        } else {
            (max_bytes - max_bytes % shards) as u64
        };
        let max_weight = ((capacity / shards as u64) as f64 * HOT_ALLOCATION) as u64;
        Layout {
            shards,
            capacity,
            // Never above what one entry may weigh, or a store of one entry
            // (whose floor is its whole capacity) would take none.
            floor: if floor < max_weight {
                floor
            } else {
                max_weight
            },
            max_weight,
        }
    }
}

/// The largest value a store of these bounds takes under any key of at
/// most `max_key_len` bytes.
pub(crate) const fn largest_value(
    max_entries: usize,
    max_bytes: usize,
    max_key_len: usize,
) -> usize {
    (Layout::of(max_entries, max_bytes).max_weight as usize)
        .saturating_sub(max_key_len + ENTRY_OVERHEAD)
}

/// An entry's weight: its cost, but at least `floor` (see the module docs).
#[derive(Debug, Clone)]
struct Weight {
    floor: u64,
}

impl<K: StoreKey + ?Sized, V: StoreValue> Weighter<Arc<K>, Entry<V>> for Weight {
    fn weight(&self, key: &Arc<K>, entry: &Entry<V>) -> u64 {
        (cost((**key).as_ref(), &entry.value) as u64).max(self.floor)
    }
}

/// Keeps the byte count and the eviction count as quick_cache drops
/// entries: evicted ones, replaced ones and refused ones all pass here.
#[derive(Debug, Clone)]
struct Tally {
    bytes: Arc<AtomicUsize>,
    evictions: Arc<AtomicU64>,
}

/// What one insert learns from [`Tally`]: entries of other keys dropped
/// to make room are evictions; the inserted key's own old value is not.
struct Dropped<K: ?Sized> {
    inserted: Option<Arc<K>>,
}

impl<K: ?Sized> Default for Dropped<K> {
    fn default() -> Self {
        Dropped { inserted: None }
    }
}

impl<K: StoreKey + ?Sized, V: StoreValue> Lifecycle<Arc<K>, Entry<V>> for Tally {
    type RequestState = Dropped<K>;

    fn on_evict(&self, dropped: &mut Self::RequestState, key: Arc<K>, entry: Entry<V>) {
        self.bytes
            .fetch_sub(cost((*key).as_ref(), &entry.value), Ordering::Relaxed);
        if dropped.inserted.as_deref() != Some(&*key) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Store<K: StoreKey + ?Sized = str, V: StoreValue = Bytes> {
    map: Cache<Arc<K>, Entry<V>, Weight, foldhash::fast::RandomState, Tally>,
    tally: Tally,
    /// The most one entry may weigh: a shard's share for entries in use.
    max_weight: u64,
}

impl<K: StoreKey + ?Sized, V: StoreValue> std::fmt::Debug for Store<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.map.len())
            .field("bytes", &self.bytes())
            .field("capacity", &self.map.capacity())
            .finish_non_exhaustive()
    }
}

impl<K: StoreKey + ?Sized, V: StoreValue> Store<K, V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        let Layout {
            shards,
            capacity,
            floor,
            max_weight,
        } = Layout::of(max_entries, max_bytes);
        let max_entries = max_entries.max(1);
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(max_entries)
            .weight_capacity(capacity)
            .hot_allocation(HOT_ALLOCATION)
            .build()
            .expect("the options are within quick_cache's ranges");
        let tally = Tally {
            bytes: Arc::new(AtomicUsize::new(0)),
            evictions: Arc::new(AtomicU64::new(0)),
        };
        Store {
            map: Cache::with_options(
                options,
                Weight { floor },
                foldhash::fast::RandomState::default(),
                tally.clone(),
            ),
            tally,
            max_weight,
        }
    }

    /// The value under `key` and when it expires, unless missing or expired.
    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<(V, Option<Instant>)> {
        let entry = self.map.get(key)?;
        // The clock only for entries that expire.
        let Some(at) = entry.expires_at else {
            return Some((entry.value, None));
        };
        let now = Instant::now();
        if at > now {
            return Some((entry.value, entry.expires_at));
        }
        self.remove_if(key, |entry| entry.is_expired(now));
        None
    }

    /// Stores `value` for `ttl` (`None`: until evicted). A value larger than
    /// a shard's share is not stored (and the key's old value is
    /// dropped); returns whether it was.
    pub(crate) fn insert(&self, key: &K, value: V, ttl: Option<Duration>) -> bool {
        let size = cost(key.as_ref(), &value);
        if size as u64 > self.max_weight {
            self.remove(key);
            return false;
        }
        let key = key.to_arc();
        let entry = Entry {
            value,
            // A TTL beyond what the clock counts is none.
            expires_at: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
        };
        self.tally.bytes.fetch_add(size, Ordering::Relaxed);
        let mut dropped = Dropped {
            inserted: Some(key.clone()),
        };
        self.map.insert_with_lifecycle(key, entry, &mut dropped);
        true
    }

    /// Removes `key`; `true` if a live entry was there.
    pub(crate) fn remove(&self, key: &K) -> bool {
        let now = Instant::now();
        self.remove_if(key, |_| true)
            .is_some_and(|entry| !entry.is_expired(now))
    }

    /// Whether a live entry is under `key`. A look, not a use: it does not
    /// make the entry hotter.
    pub(crate) fn contains(&self, key: &K) -> bool {
        let now = Instant::now();
        self.map
            .peek(key)
            .is_some_and(|entry| !entry.is_expired(now))
    }

    /// The remaining lifetime of `key`.
    pub(crate) fn ttl(&self, key: &K) -> KeyTtl {
        let now = Instant::now();
        match self.map.peek(key) {
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
        // In place, under the shard's lock: a value set meanwhile is kept.
        let key = key.to_arc();
        let touched = self.map.entry(&key, Some(Duration::ZERO), |_, entry| {
            if entry.is_expired(now) {
                return EntryAction::Retain(false);
            }
            entry.expires_at = ttl.and_then(|ttl| now.checked_add(ttl));
            EntryAction::Retain(true)
        });
        // A vacant key gives a guard for loading it, dropped here unfilled.
        matches!(touched, EntryResult::Retained(true))
    }

    /// Entries held, expired ones not yet dropped included.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The largest value that fits under `key`.
    #[cfg(test)]
    fn value_limit(&self, key: &K) -> usize {
        (self.max_weight as usize).saturating_sub(key.as_ref().len() + ENTRY_OVERHEAD)
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        self.map.retain(|key, entry| {
            self.tally
                .bytes
                .fetch_sub(cost((**key).as_ref(), &entry.value), Ordering::Relaxed);
            false
        });
    }

    /// Entries dropped so far to keep within the bounds.
    pub(crate) fn evictions(&self) -> u64 {
        self.tally.evictions.load(Ordering::Relaxed)
    }

    /// Bytes charged for the entries held: keys, values and the per-entry
    /// overhead (not the weights, which round small entries up).
    pub(crate) fn bytes(&self) -> usize {
        self.tally.bytes.load(Ordering::Relaxed)
    }

    fn remove_if(&self, key: &K, condition: impl FnOnce(&Entry<V>) -> bool) -> Option<Entry<V>> {
        let (key, entry) = self.map.remove_if(key, condition)?;
        self.tally
            .bytes
            .fetch_sub(cost((*key).as_ref(), &entry.value), Ordering::Relaxed);
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
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
