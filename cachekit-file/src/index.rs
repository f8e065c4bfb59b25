//! The in-process index of the entries: their sizes and last uses, in
//! least-recently-used order, so that a write over a limit finds what to
//! evict without listing the directory.
//!
//! A scan at the start fills it; this process's reads and writes keep it
//! current; a scan again after many writes takes in what other processes
//! wrote (see [`Index::wants_scan`]). Other processes' reads reach it
//! through the files' access times, checked before a victim is evicted.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::name::Name;

/// Least time between two scans after the first: a scan lists and stats
/// every file, so a busy writer pays for it at most this often.
const SCAN_INTERVAL: Duration = Duration::from_secs(30);

/// One entry as the index knows it.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Size of the file in bytes.
    size: u64,
    /// Last use, microseconds since the Unix epoch (strictly increasing
    /// over this process's uses).
    used: u64,
}

/// The limits an index keeps, and its entries.
#[derive(Debug)]
pub(crate) struct Index {
    state: Mutex<State>,
    /// Signalled when the first scan is over.
    first_scan: Condvar,
    max_entries: u64,
    max_size: u64,
}

#[derive(Debug)]
struct State {
    entries: HashMap<Name, Meta>,
    /// `(used, name)` of every entry: the first is the least recently used.
    order: BTreeSet<(u64, Name)>,
    /// Sum of the sizes.
    bytes: u64,
    /// The last use handed out.
    clock: u64,
    /// Writes since the last scan started.
    writes: u64,
    /// When the last scan started; `None` until the first.
    scanned_at: Option<Instant>,
    /// Whether a scan is running.
    scanning: bool,
    /// Whether the first scan is over (done or failed).
    first_scan_over: bool,
}

impl Index {
    pub(crate) fn new(max_entries: u64, max_size: u64) -> Self {
        Index {
            state: Mutex::new(State {
                entries: HashMap::new(),
                order: BTreeSet::new(),
                bytes: 0,
                clock: 0,
                writes: 0,
                scanned_at: None,
                scanning: false,
                first_scan_over: false,
            }),
            first_scan: Condvar::new(),
            max_entries,
            max_size,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic: every change is whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `name` (`size` bytes) was just read or written: it is now the most
    /// recently used.
    pub(crate) fn used(&self, name: Name, size: u64) {
        let mut state = self.state();
        let used = state.tick();
        state.put(name, Meta { size, used });
    }

    /// `name` (`size` bytes) was just written.
    pub(crate) fn written(&self, name: Name, size: u64) {
        let mut state = self.state();
        state.writes += 1;
        let used = state.tick();
        state.put(name, Meta { size, used });
    }

    /// `name` is gone.
    pub(crate) fn removed(&self, name: &Name) {
        self.state().take(name);
    }

    /// Takes the least recently used entry out of the index while the
    /// entries are over a limit: the next to evict, with its size and last
    /// use. The last entry stays: it is the one just written, which may
    /// exceed `max_size` by its header and key.
    pub(crate) fn pop_victim(&self) -> Option<(Name, u64, u64)> {
        let mut state = self.state();
        let over = state.entries.len() as u64 > self.max_entries || state.bytes > self.max_size;
        if state.entries.len() <= 1 {
            return None;
        }
        if !over {
            return None;
        }
        let &(_, name) = state.order.first()?;
        let meta = state.take(&name)?;
        Some((name, meta.size, meta.used))
    }

    /// Puts back a victim that another process used at `used`.
    pub(crate) fn restore(&self, name: Name, size: u64, used: u64) {
        self.state().put(name, Meta { size, used });
    }

    /// Whether a scan should start now (and if so, marks one started):
    /// the first one, or after `max_entries / 2` writes and
    /// [`SCAN_INTERVAL`] since the last.
    pub(crate) fn wants_scan(&self) -> bool {
        let mut state = self.state();
        let due = match state.scanned_at {
            None => true,
            Some(at) => {
                state.writes >= (self.max_entries / 2).max(64) && at.elapsed() >= SCAN_INTERVAL
            }
        };
        if due && !state.scanning {
            state.scanning = true;
            state.scanned_at = Some(Instant::now());
            state.writes = 0;
            true
        } else {
            false
        }
    }

    /// The mark of a scan starting now: every later use is at or after it.
    pub(crate) fn scan_mark(&self) -> u64 {
        self.state().clock + 1
    }

    /// Takes in a scan that started at `since` ([`Index::scan_mark`]) and found
    /// `found` (name, size, last use): entries this process used since
    /// keep what it knows; entries it knew from before that the scan did
    /// not find are gone.
    pub(crate) fn merge(&self, since: u64, found: Vec<(Name, u64, u64)>) {
        let seen: std::collections::HashSet<Name> = found.iter().map(|(name, ..)| *name).collect();
        // In slices, so that readers and writers are not held up for a
        // whole directory's worth.
        for chunk in found.chunks(1024) {
            let mut state = self.state();
            for &(name, size, used) in chunk {
                match state.entries.get(&name) {
                    Some(meta) if meta.used >= since => {}
                    Some(meta) => {
                        let used = used.max(meta.used);
                        state.put(name, Meta { size, used });
                    }
                    None => state.put(name, Meta { size, used }),
                }
            }
        }
        let mut state = self.state();
        let gone: Vec<Name> = state
            .entries
            .iter()
            .filter(|(name, meta)| meta.used < since && !seen.contains(name))
            .map(|(name, _)| *name)
            .collect();
        for name in gone {
            state.take(&name);
        }
        state.scanning = false;
        state.first_scan_over = true;
        self.first_scan.notify_all();
    }

    /// Marks a failed scan as over.
    pub(crate) fn scan_failed(&self) {
        let mut state = self.state();
        state.scanning = false;
        state.first_scan_over = true;
        self.first_scan.notify_all();
    }

    /// Waits, at most `limit`, until the first scan is over, so that
    /// evictions weigh the entries already on disk: a write right after
    /// the start evicts what it should. Reads do not wait.
    pub(crate) fn wait_first_scan(&self, limit: Duration) {
        let state = self.state();
        let _ = self
            .first_scan
            .wait_timeout_while(state, limit, |state| !state.first_scan_over);
    }

    /// How many entries, and how many bytes, the index holds.
    #[cfg(test)]
    pub(crate) fn totals(&self) -> (usize, u64) {
        let state = self.state();
        (state.entries.len(), state.bytes)
    }
}

impl State {
    /// A new last use: now, or just after the last one handed out.
    fn tick(&mut self) -> u64 {
        let now = crate::scan::now_us();
        self.clock = now.max(self.clock + 1);
        self.clock
    }

    fn put(&mut self, name: Name, meta: Meta) {
        self.take(&name);
        self.order.insert((meta.used, name));
        self.bytes += meta.size;
        self.entries.insert(name, meta);
    }

    fn take(&mut self, name: &Name) -> Option<Meta> {
        let meta = self.entries.remove(name)?;
        self.order.remove(&(meta.used, *name));
        self.bytes -= meta.size;
        Some(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u32) -> Name {
        Name::of(&i.to_string())
    }

    #[test]
    fn the_least_recently_used_goes_first_and_reads_count() {
        let index = Index::new(3, u64::MAX);
        for i in 0..3 {
            index.written(name(i), 10);
        }
        assert!(index.pop_victim().is_none(), "at the limit, not over it");
        index.used(name(0), 10);
        index.written(name(3), 10);
        assert_eq!(index.pop_victim().map(|v| v.0), Some(name(1)));
        assert!(index.pop_victim().is_none());
        assert_eq!(index.totals(), (3, 30));
    }

    #[test]
    fn bytes_count_against_max_size() {
        let index = Index::new(100, 25);
        index.written(name(0), 10);
        index.written(name(1), 10);
        index.written(name(0), 20);
        assert_eq!(index.totals(), (2, 30));
        assert_eq!(index.pop_victim().map(|v| v.0), Some(name(1)));
        assert_eq!(index.totals(), (1, 20));
    }

    #[test]
    fn the_entry_just_written_stays_even_over_max_size() {
        let index = Index::new(100, 25);
        index.written(name(0), 10);
        index.written(name(1), 30);
        assert_eq!(index.pop_victim().map(|v| v.0), Some(name(0)));
        assert!(index.pop_victim().is_none());
        assert_eq!(index.totals(), (1, 30));
    }

    #[test]
    fn a_scan_keeps_what_was_used_since_and_drops_what_vanished() {
        let index = Index::new(100, u64::MAX);
        index.written(name(0), 1);
        index.written(name(1), 1);
        let since = index.scan_mark();
        index.written(name(2), 5);
        // The scan found 1 (stale size) and 3 (another process's), not 0.
        index.merge(since, vec![(name(1), 7, 0), (name(3), 3, 0)]);
        assert_eq!(index.totals(), (3, 5 + 7 + 3));
    }
}
