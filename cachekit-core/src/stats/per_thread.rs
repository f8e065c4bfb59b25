//! A counter that threads bump without a locked instruction, for the
//! counts of L1 hits.
//!
//! Each thread claims a slot for its life (a cache line in every such
//! counter), so a bump is a plain load and store of a line that no other
//! thread writes, and threads on different cores never share one. Reads add
//! the slots up. A thread that finds every slot taken bumps a shared line
//! with an atomic add instead. A slot is given back when its thread ends,
//! and the next thread to claim it goes on from its count.
//!
//! Why not an atomic add on a line of one's own: a locked instruction
//! costs about 4.5 ns on this project's machines, a fifth of an L1 hit
//! (docs/benchmarks.md, "A store of our own").

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots: twice the CPUs, rounded up to a power of two, from 8 to 64 (one
/// bit each in [`CLAIMED`]).
static SLOTS: LazyLock<usize> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    (2 * cpus).next_power_of_two().clamp(8, 64)
});

/// Which slots threads hold: bit `i` for slot `i`.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SLOT: Claim = Claim::take();
}

/// A thread's slot, if one was free when it first counted.
struct Claim(Option<usize>);

impl Claim {
    fn take() -> Claim {
        let slots = *SLOTS;
        let mut claimed = CLAIMED.load(Ordering::Relaxed);
        loop {
            let free = (!claimed).trailing_zeros() as usize;
            if free >= slots {
                return Claim(None);
            }
            // Acquire: this thread's bumps go on from the last owner's.
            match CLAIMED.compare_exchange_weak(
                claimed,
                claimed | 1 << free,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Claim(Some(free)),
                Err(now) => claimed = now,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            // Release: the next owner sees this thread's last bump.
            CLAIMED.fetch_and(!(1 << slot), Ordering::Release);
        }
    }
}

/// One slot, alone on its cache line (two lines: the prefetcher pairs them).
#[repr(align(128))]
#[derive(Default)]
struct Line(AtomicU64);

/// The counter: a line per slot, then the shared line.
pub(crate) struct PerThread {
    lines: Box<[Line]>,
}

impl PerThread {
    pub(crate) fn new() -> Self {
        PerThread {
            lines: (0..=*SLOTS).map(|_| Line::default()).collect(),
        }
    }

    /// Adds one.
    #[inline]
    pub(crate) fn bump(&self) {
        let shared = self.lines.len() - 1;
        match SLOT.try_with(|claim| claim.0) {
            Ok(Some(slot)) if slot < shared => {
                let line = &self.lines[slot].0;
                // This thread alone writes the line while it holds the slot.
                line.store(line.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            // No slot free, or the thread is ending.
            _ => {
                self.lines[shared].0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.lines
            .iter()
            .map(|line| line.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl std::fmt::Debug for PerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::{PerThread, SLOTS};

    #[test]
    fn every_bump_counts_whoever_holds_a_slot() {
        let count = PerThread::new();
        // More threads at once than slots: some share the atomic line.
        let threads = *SLOTS + 8;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| (0..10_000).for_each(|_| count.bump()));
            }
        });
        count.bump();
        assert_eq!(count.get(), threads as u64 * 10_000 + 1);
        // Slots came back as their threads ended: new threads count on.
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| (0..1_000).for_each(|_| count.bump()));
            }
        });
        assert_eq!(count.get(), threads as u64 * 11_000 + 1);
    }
}
