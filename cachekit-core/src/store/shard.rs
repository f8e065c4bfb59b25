//! One shard of a [`Store`](super::Store): a hash table of entries and
//! S3-FIFO eviction (Yang et al., "FIFO queues are all you need for cache
//! eviction", SOSP 2023), under the shard's lock.
//!
//! New entries go into a small FIFO queue (2% of the shard); an entry
//! read while there moves on to the main queue, and one read never leaves
//! a trace in a ghost queue of hashes. A new key whose hash is in the ghost
//! queue was evicted too early: it goes straight into the main queue. The
//! main queue evicts like CLOCK: an entry read since it last passed the
//! head goes round again (up to three times for entries read often). So a
//! scan of keys read once passes through the small queue and leaves the
//! main queue's hot entries alone.
//!
//! A read sets a counter in the entry, under the lock the read takes
//! anyway, so it writes no other memory: no shared counter, no queue
//! movement. Queues hold marks (hash and insert number), not entries: a
//! mark whose entry was removed is skipped when met, and the queues are
//! compacted when such marks outnumber the entries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};

use hashbrown::HashTable;
use tokio::time::Instant;

use super::{Check, StoreKey, StoreValue, cost};

/// The most times an entry goes round the main queue unread.
const MAX_FREQ: u8 = 3;

/// The share of a shard's entries and bytes the small queue keeps, in
/// percent. The paper's 10% keeps 0.647 of hits on the benchmark's Zipf
/// trace, where 2% keeps 0.654, which quick_cache (3%) and moka do not
/// beat (docs/benchmarks.md, "A store of our own").
const SMALL_PERCENT: usize = 2;

/// How many hashes the ghost queue keeps, in percent of the shard's
/// entries: half, as quick_cache keeps; the paper's 100% keeps fewer hits
/// on the same trace (0.651 against 0.654).
const GHOST_PERCENT: usize = 50;

/// The fewest entries the small queue keeps before it evicts: in a shard
/// of under 100 entries, 2% is none, and a new key would be evicted by the
/// next insert unless read in between.
const MIN_SMALL_ENTRIES: usize = 2;

/// `percent` of `n`, rounded down, without overflow.
const fn share(n: usize, percent: usize) -> usize {
    n / 100 * percent + n % 100 * percent / 100
}

/// An entry and its place in the eviction order.
pub(super) struct Node<K: ?Sized, V> {
    key: Box<K>,
    hash: u64,
    /// Which insert made it: marks of removed entries match none.
    id: u64,
    /// Which write set its value: `id` at first, a new number at each
    /// overwrite in place (which keeps `id`, and so its mark).
    written: u64,
    pub(super) value: V,
    pub(super) expires_at: Option<Instant>,
    /// The bytes it is charged (see [`cost`]).
    cost: usize,
    /// Reads since it entered its queue or last went round it: set by
    /// reads under the shard's read lock, hence atomic.
    freq: AtomicU8,
    main: bool,
}

impl<K: ?Sized, V> Node<K, V> {
    pub(super) fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether it is expired, reading the clock only if it can expire.
    fn has_expired(&self) -> bool {
        self.expires_at.is_some() && self.is_expired(Instant::now())
    }
}

/// What [`Shard::read`] found.
pub(super) enum Read<V> {
    Hit(V, Option<Instant>),
    Missing,
    /// The write number of an entry to remove.
    Remove(u64),
}

/// A queue's reference to an entry.
#[derive(Clone, Copy)]
struct Mark {
    hash: u64,
    id: u64,
}

/// The hashes of entries evicted from the small queue, oldest first: as
/// many as [`GHOST_PERCENT`] of the entries the shard holds (not of its
/// bound: where the bytes bound the shard to fewer entries, the ghost queue
/// shrinks with them).
#[derive(Default)]
struct Ghost {
    order: VecDeque<u64>,
    /// Each hash in `order` and how many times it is there.
    counts: HashTable<(u64, u32)>,
}

impl Ghost {
    fn contains(&self, hash: u64) -> bool {
        self.counts.find(hash, |&(h, _)| h == hash).is_some()
    }

    /// Adds `hash`, keeping at most `capacity` hashes.
    fn add(&mut self, hash: u64, capacity: usize) {
        while self.order.len() >= capacity.max(1) {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Ok(mut entry) = self.counts.find_entry(oldest, |&(h, _)| h == oldest) {
                entry.get_mut().1 -= 1;
                if entry.get().1 == 0 {
                    entry.remove();
                }
            }
        }
        self.order.push_back(hash);
        match self.counts.find_mut(hash, |&(h, _)| h == hash) {
            Some(entry) => entry.1 += 1,
            None => {
                self.counts.insert_unique(hash, (hash, 1), |&(h, _)| h);
            }
        }
    }

    fn clear(&mut self) {
        self.order.clear();
        self.counts.clear();
    }
}

/// One shard: its entries, queues and counts, within its bounds.
pub(super) struct Shard<K: ?Sized, V> {
    table: HashTable<Node<K, V>>,
    small: VecDeque<Mark>,
    main: VecDeque<Mark>,
    ghost: Ghost,
    next_id: u64,
    entries: usize,
    bytes: usize,
    small_entries: usize,
    small_bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// The small queue's share of the bounds.
    small_max_entries: usize,
    small_max_bytes: usize,
    /// Entries dropped to keep within the bounds.
    pub(super) evictions: u64,
}

impl<K: StoreKey + ?Sized, V: StoreValue> Shard<K, V> {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Shard {
            table: HashTable::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: Ghost::default(),
            small_max_entries: share(max_entries, SMALL_PERCENT).max(MIN_SMALL_ENTRIES),
            small_max_bytes: share(max_bytes, SMALL_PERCENT),
            next_id: 0,
            entries: 0,
            bytes: 0,
            small_entries: 0,
            small_bytes: 0,
            max_entries,
            max_bytes,
            evictions: 0,
        }
    }

    /// The live entry under `key`, without making it hotter.
    pub(super) fn peek(&self, hash: u64, key: &K) -> Option<&Node<K, V>> {
        self.table
            .find(hash, |node| *node.key == *key)
            .filter(|node| !node.has_expired())
    }

    /// The live entry under `key`, to change in place.
    pub(super) fn peek_mut(&mut self, hash: u64, key: &K) -> Option<&mut Node<K, V>> {
        self.table
            .find_mut(hash, |node| *node.key == *key)
            .filter(|node| !node.has_expired())
    }

    /// What a read under the shard's read lock finds under `key`: a clone
    /// of the live value and its expiry if `check` takes it (then the read
    /// counts for eviction); or, for an entry to remove (expired, or
    /// `check` said so), its write number, for the caller to remove it
    /// under the write lock.
    #[inline]
    pub(super) fn read(&self, hash: u64, key: &K, check: impl FnOnce(&V) -> Check) -> Read<V> {
        let Some(node) = self.table.find(hash, |node| *node.key == *key) else {
            return Read::Missing;
        };
        let verdict = if node.has_expired() {
            Check::Remove
        } else {
            check(&node.value)
        };
        match verdict {
            Check::Take => {
                // A plain store, and none once the entry is at the top:
                // a hot entry's line is not written by every read.
                let freq = node.freq.load(Ordering::Relaxed);
                if freq < MAX_FREQ {
                    node.freq.store(freq + 1, Ordering::Relaxed);
                }
                Read::Hit(node.value.clone(), node.expires_at)
            }
            Check::Leave => Read::Missing,
            Check::Remove => Read::Remove(node.written),
        }
    }

    /// Removes the entry under `hash` whose value write number `written`
    /// set, if it is still there: a read found it to remove, and a write
    /// since then (which the read must not undo) renumbered or replaced it.
    /// `true` if it was removed.
    pub(super) fn remove_written(&mut self, hash: u64, written: u64) -> bool {
        let Ok(entry) = self.table.find_entry(hash, |node| node.written == written) else {
            return false;
        };
        let (node, _) = entry.remove();
        self.forget(&node);
        self.compact_if_sparse();
        true
    }

    /// Stores `value` under `key`, evicting first to make room (so the
    /// new entry is never the one evicted). A value no larger than the one
    /// it replaces keeps that entry's place; a larger one enters as a new
    /// entry. The caller has checked that the entry fits in the shard.
    pub(super) fn insert(&mut self, hash: u64, key: &K, value: V, expires_at: Option<Instant>) {
        let cost = cost(key.as_ref(), &value);
        if let Some(node) = self.table.find_mut(hash, |node| *node.key == *key) {
            if cost <= node.cost {
                self.bytes = self.bytes - node.cost + cost;
                if !node.main {
                    self.small_bytes = self.small_bytes - node.cost + cost;
                }
                node.cost = cost;
                node.expires_at = expires_at;
                node.written = self.next_id;
                self.next_id += 1;
                // The old value is dropped here, after the counts are right.
                node.value = value;
                return;
            }
            self.remove(hash, key);
        }
        while self.entries + 1 > self.max_entries || self.bytes + cost > self.max_bytes {
            if !self.evict_one() {
                break;
            }
        }
        let main = self.ghost.contains(hash);
        let id = self.next_id;
        self.next_id += 1;
        let mark = Mark { hash, id };
        if main {
            self.main.push_back(mark);
        } else {
            self.small.push_back(mark);
            self.small_entries += 1;
            self.small_bytes += cost;
        }
        self.entries += 1;
        self.bytes += cost;
        let node = Node {
            key: key.to_boxed(),
            hash,
            id,
            written: id,
            value,
            expires_at,
            cost,
            freq: AtomicU8::new(0),
            main,
        };
        self.table.insert_unique(hash, node, |node| node.hash);
    }

    /// Removes the entry under `key`, live or expired.
    pub(super) fn remove(&mut self, hash: u64, key: &K) -> Option<Node<K, V>> {
        let entry = self.table.find_entry(hash, |node| *node.key == *key).ok()?;
        let (node, _) = entry.remove();
        self.forget(&node);
        self.compact_if_sparse();
        Some(node)
    }

    /// Compacts the queues before the marks of removed entries, which stay
    /// until met, outnumber the entries.
    fn compact_if_sparse(&mut self) {
        if self.small.len() + self.main.len() > 2 * self.entries + 64 {
            let table = &self.table;
            let live = |mark: &Mark| table.find(mark.hash, |node| node.id == mark.id).is_some();
            self.small.retain(live);
            self.main.retain(live);
        }
    }

    /// Drops every entry (the count of evictions stays). The values are
    /// dropped last, so a panicking `Drop` leaves the shard empty and its
    /// counts right.
    pub(super) fn clear(&mut self) {
        let table = std::mem::take(&mut self.table);
        self.small.clear();
        self.main.clear();
        self.ghost.clear();
        (self.entries, self.bytes) = (0, 0);
        (self.small_entries, self.small_bytes) = (0, 0);
        drop(table);
    }

    /// Entries held, expired ones not yet dropped included, and their bytes.
    pub(super) fn size(&self) -> (usize, usize) {
        (self.entries, self.bytes)
    }

    /// Marks in the queues, removed entries' included.
    #[cfg(test)]
    pub(super) fn marks(&self) -> usize {
        self.small.len() + self.main.len()
    }

    /// The counts without `node`, just taken out of the table.
    fn forget(&mut self, node: &Node<K, V>) {
        self.entries -= 1;
        self.bytes -= node.cost;
        if !node.main {
            self.small_entries -= 1;
            self.small_bytes -= node.cost;
        }
    }

    /// Whether the small queue is over its share, so that it evicts next.
    fn small_is_over(&self) -> bool {
        // One entry larger than the byte share still has its turn.
        self.small_entries > 0
            && (self.small_entries > self.small_max_entries
                || (self.small_entries > 1 && self.small_bytes > self.small_max_bytes)
                || self.small_entries == self.entries)
    }

    /// Evicts one entry; `false` if there is none. Entries read while in
    /// the small queue move to the main queue on the way, and entries of
    /// the main queue read since they last passed go round again: each
    /// mark is met at most [`MAX_FREQ`] + 2 times, so this ends.
    fn evict_one(&mut self) -> bool {
        loop {
            let from_small = self.small_is_over();
            let queue = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            let Some(mark) = queue.pop_front() else {
                return false;
            };
            let Ok(mut entry) = self.table.find_entry(mark.hash, |node| node.id == mark.id) else {
                continue;
            };
            let node = entry.get_mut();
            let freq = node.freq.get_mut();
            if *freq > 0 {
                if from_small {
                    node.main = true;
                    *freq = 0;
                    self.small_entries -= 1;
                    self.small_bytes -= node.cost;
                } else {
                    *freq -= 1;
                }
                self.main.push_back(mark);
                continue;
            }
            let (node, _) = entry.remove();
            self.forget(&node);
            if from_small {
                let capacity = share(self.entries, GHOST_PERCENT);
                self.ghost.add(mark.hash, capacity);
            }
            self.evictions += 1;
            return true;
        }
    }
}
