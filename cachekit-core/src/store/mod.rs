//! A concurrent map of bytes bounded by entry count and by bytes, with TTL:
//! the storage under both the L1 tier and the in-memory backend.
//!
//! Keys are spread over [`shards`] shards by their hash, each a hash table
//! under a read-write lock with its share of both bounds and S3-FIFO
//! eviction (see [`shard`]): an entry read since it came in survives a scan
//! of keys read once, where first-in-first-out eviction would drop it. So
//! one value may take at most a shard's share of the bytes:
//! [`largest_value`] says how much.
//!
//! A hit takes its shard's read lock, so threads hitting one key do not
//! block each other (they do share the lock's cache line); it marks the entry read with a plain store (none
//! once the entry is marked hot), and counts itself in a [per-thread
//! count](crate::stats::PerThread). That is two locked instructions, the
//! lock's, where quick_cache's read lock and a shared hit count took three,
//! and the reason this store is written here rather than taken from
//! quick_cache, which has the same kind of eviction and keeps the same
//! hit ratio (docs/benchmarks.md, "A store of our own").
//!
//! Keys are hashed with foldhash (hashbrown's default hasher) rather than
//! std's SipHash, which is a large share of a hit this short
//! (docs/benchmarks.md). foldhash is seeded per process, so keys built from
//! user data cannot be crafted to collide without knowing the seed.

mod shard;

use std::hash::{BuildHasher, Hash};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::KeyTtl;
use crate::stats::PerThread;
use shard::{Read, Shard};

/// Bytes charged per entry on top of key and value, for the map's own bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// Most shards: enough that threads on different keys rarely share a lock
/// on the machines this runs on, few enough that a shard's share of the
/// bytes (the largest value) stays large.
const MAX_SHARDS: usize = 16;

/// Fewest entries a shard is sized for, so that small stores keep their
/// eviction policy meaningful.
const MIN_SHARD_ENTRIES: usize = 32;

/// Fewest bytes a shard is sized for: a store of a few MiB stays in few
/// shards, so that one value may still take most of it.
const MIN_SHARD_BYTES: usize = 1 << 20;

/// Keys a [`Store`] can hold: `str` for backend keys, `[u8]` for the
/// L1 tier (whose keys may be a function's serialized arguments).
pub(crate) trait StoreKey: Hash + Eq + AsRef<[u8]> + Send + Sync {
    /// An owned copy, as the map holds it.
    fn to_boxed(&self) -> Box<Self>;
}

impl StoreKey for str {
    fn to_boxed(&self) -> Box<str> {
        Box::from(self)
    }
}

impl StoreKey for [u8] {
    fn to_boxed(&self) -> Box<[u8]> {
        Box::from(self)
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

/// What a read does with the live value it finds (see [`Store::get_if`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Takes a clone: a hit.
    Take,
    /// Leaves it, unread.
    Leave,
    /// Removes it.
    Remove,
}

/// What [`Store::get_if`] found.
#[derive(Debug)]
pub(crate) enum Found<V> {
    /// A value its check took, and when it expires.
    Taken(V, Option<Instant>),
    /// No live value, or one its check left.
    Nothing,
    /// A value removed: expired, or its check said so.
    Removed,
}

impl<V> Found<V> {
    /// The value taken, if any.
    pub(crate) fn taken(self) -> Option<(V, Option<Instant>)> {
        match self {
            Found::Taken(value, expires_at) => Some((value, expires_at)),
            Found::Nothing | Found::Removed => None,
        }
    }
}

impl StoreValue for Bytes {
    fn size(&self) -> usize {
        self.len()
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
    /// Each shard's share of the entries: the same for all, so no more
    /// than `max_entries` in all (all of them when the shard count divides
    /// it, as it does the defaults), and at least one.
    shard_entries: usize,
    /// Each shard's share of the bytes: the most one entry may take.
    shard_bytes: usize,
}

impl Layout {
    const fn of(max_entries: usize, max_bytes: usize) -> Layout {
        let shards = shards(max_entries, max_bytes);
        let shard_entries = max_entries / shards;
        Layout {
            shards,
            shard_entries: if shard_entries == 0 { 1 } else { shard_entries },
            shard_bytes: max_bytes / shards,
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
    Layout::of(max_entries, max_bytes)
        .shard_bytes
        .saturating_sub(max_key_len + ENTRY_OVERHEAD)
}

pub(crate) struct Store<K: StoreKey + ?Sized = str, V: StoreValue = Bytes> {
    shards: Box<[RwLock<Shard<K, V>>]>,
    hasher: foldhash::fast::RandomState,
    /// The most bytes one entry may be charged: a shard's share.
    shard_bytes: usize,
    /// Reads that took a value (see [`Store::get_if`]), if counted.
    hits: Option<PerThread>,
}

impl<K: StoreKey + ?Sized, V: StoreValue> std::fmt::Debug for Store<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.len())
            .field("bytes", &self.bytes())
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K: StoreKey + ?Sized, V: StoreValue> Store<K, V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        let Layout {
            shards,
            shard_entries,
            shard_bytes,
        } = Layout::of(max_entries, max_bytes);
        Store {
            shards: (0..shards)
                .map(|_| RwLock::new(Shard::new(shard_entries, shard_bytes)))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            shard_bytes,
            hits: None,
        }
    }

    /// This store, counting its hits (see [`Store::hits`]).
    pub(crate) fn counting_hits(mut self) -> Self {
        self.hits = Some(PerThread::new());
        self
    }

    /// `key`'s hash and its shard's index.
    #[inline]
    fn locate(&self, key: &K) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        // Bits the shard's own table does not index by: hashbrown takes
        // the low bits for the bucket and the top seven for its tags.
        (hash, (hash >> 40) as usize & (self.shards.len() - 1))
    }

    // A shard is never left half changed (its counts are right before a
    // value is dropped or cloned), so a panic that poisoned its lock (a
    // value's `Clone` or `Drop`) leaves it usable.

    #[inline]
    fn read(&self, index: usize) -> RwLockReadGuard<'_, Shard<K, V>> {
        self.shards[index]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, index: usize) -> RwLockWriteGuard<'_, Shard<K, V>> {
        self.shards[index]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `key`'s hash and its shard, locked to write.
    fn shard(&self, key: &K) -> (u64, RwLockWriteGuard<'_, Shard<K, V>>) {
        let (hash, index) = self.locate(key);
        (hash, self.write(index))
    }

    fn each_shard(&self) -> impl Iterator<Item = RwLockReadGuard<'_, Shard<K, V>>> {
        (0..self.shards.len()).map(|index| self.read(index))
    }

    /// The value under `key` and when it expires, unless missing or expired.
    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<(V, Option<Instant>)> {
        self.get_if(key, |_| Check::Take).taken()
    }

    /// [`Store::get`], if `check` takes the live value found; a hit only
    /// then (see [`Store::hits`]). A read takes its shard's read lock: hits
    /// on one key from many threads do not wait for each other.
    #[inline]
    pub(crate) fn get_if(&self, key: &K, check: impl FnOnce(&V) -> Check) -> Found<V> {
        let (hash, index) = self.locate(key);
        let read = self.read(index).read(hash, key, check);
        match read {
            Read::Hit(value, expires_at) => {
                if let Some(hits) = &self.hits {
                    hits.bump();
                }
                Found::Taken(value, expires_at)
            }
            Read::Missing => Found::Nothing,
            Read::Remove(written) => match self.write(index).remove_written(hash, written) {
                true => Found::Removed,
                // A write came first: it stays, unread.
                false => Found::Nothing,
            },
        }
    }

    /// Stores `value` for `ttl` (`None`: until evicted). A value larger than
    /// a shard's share is not stored (and the key's old value is
    /// dropped); returns whether it was.
    pub(crate) fn insert(&self, key: &K, value: V, ttl: Option<Duration>) -> bool {
        if cost(key.as_ref(), &value) > self.shard_bytes {
            self.remove(key);
            return false;
        }
        // A TTL beyond what the clock counts is none.
        let expires_at = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        let (hash, mut shard) = self.shard(key);
        shard.insert(hash, key, value, expires_at);
        true
    }

    /// Removes `key`; `true` if a live entry was there.
    pub(crate) fn remove(&self, key: &K) -> bool {
        let (hash, mut shard) = self.shard(key);
        shard
            .remove(hash, key)
            .is_some_and(|node| !node.is_expired(Instant::now()))
    }

    /// Whether a live entry is under `key`. A look, not a use: it does not
    /// make the entry hotter.
    pub(crate) fn contains(&self, key: &K) -> bool {
        let (hash, index) = self.locate(key);
        self.read(index).peek(hash, key).is_some()
    }

    /// The remaining lifetime of `key`.
    pub(crate) fn ttl(&self, key: &K) -> KeyTtl {
        let (hash, index) = self.locate(key);
        match self.read(index).peek(hash, key).map(|node| node.expires_at) {
            Some(Some(at)) => KeyTtl::Expires(at.saturating_duration_since(Instant::now())),
            Some(None) => KeyTtl::Forever,
            None => KeyTtl::Missing,
        }
    }

    /// Sets the lifetime of a live `key` to `ttl`; `false` if missing.
    /// In place, under the shard's lock: a value set meanwhile is kept.
    pub(crate) fn touch(&self, key: &K, ttl: Option<Duration>) -> bool {
        let (hash, mut shard) = self.shard(key);
        let Some(node) = shard.peek_mut(hash, key) else {
            return false;
        };
        node.expires_at = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        true
    }

    /// Entries held, expired ones not yet dropped included.
    pub(crate) fn len(&self) -> usize {
        self.each_shard().map(|shard| shard.size().0).sum()
    }

    /// The largest value that fits under `key`.
    #[cfg(test)]
    fn value_limit(&self, key: &K) -> usize {
        self.shard_bytes
            .saturating_sub(key.as_ref().len() + ENTRY_OVERHEAD)
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        for index in 0..self.shards.len() {
            self.write(index).clear();
        }
    }

    /// Entries dropped so far to keep within the bounds.
    pub(crate) fn evictions(&self) -> u64 {
        self.each_shard().map(|shard| shard.evictions).sum()
    }

    /// Reads that took a value so far (see [`Store::get_if`]); 0 unless
    /// made [`counting_hits`](Store::counting_hits).
    pub(crate) fn hits(&self) -> u64 {
        self.hits.as_ref().map_or(0, PerThread::get)
    }

    /// Bytes charged for the entries held: keys, values and the per-entry
    /// overhead.
    pub(crate) fn bytes(&self) -> usize {
        self.each_shard().map(|shard| shard.size().1).sum()
    }
}

#[cfg(test)]
mod tests;
