//! The clock of cached functions' L1 copies, read at every hit.
//!
//! A precise monotonic clock costs about 19 ns a read on this project's
//! machines (a third of a hit; docs/benchmarks.md), the kernel's coarse
//! one (`CLOCK_MONOTONIC_COARSE`, through `coarsetime`) next to nothing.
//! The coarse clock lags by up to one tick, so a copy's deadline is
//! [`SLACK`] before its entry's expiry: it never outlives the entry.
//!
//! Where `coarsetime` has no monotonic coarse clock (it falls back to the
//! wall clock on some Unixes), the precise clock serves instead.
//!
//! This clock does not follow tokio's paused test clock: in a test that
//! advances paused time past a cached function's TTL, turn its L1 off
//! (`l1 = false`, or `CACHEKIT_L1_MAX_ENTRIES=0`).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// More than the coarse clock's tick: 4 ms at Linux's usual 250 Hz, 10 ms
/// at 100 Hz, 15.6 ms on Windows.
pub(super) const SLACK: Duration = Duration::from_millis(20);

/// A time on this clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Tick(u64);

impl Tick {
    /// `after` later, saturating.
    pub(super) fn plus(self, after: Duration) -> Tick {
        Tick(self.0.saturating_add(ticks(after)))
    }
}

/// Whether `coarsetime` reads a monotonic coarse clock here; elsewhere it
/// falls back to the wall clock, and the precise clock serves instead.
const COARSE: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "dragonfly",
    windows
));

/// When the precise clock's ticks (nanoseconds) count from.
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// `duration` in this clock's ticks.
fn ticks(duration: Duration) -> u64 {
    if COARSE {
        coarsetime::Duration::from(duration).as_ticks()
    } else {
        u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Now on this clock: where it is coarse, a read of the kernel's last
/// tick, with no write to shared memory.
#[inline]
pub(super) fn now() -> Tick {
    if COARSE {
        Tick(coarsetime::Instant::now_without_cache_update().as_ticks())
    } else {
        Tick(ticks(START.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_and_durations_add() {
        let start = now();
        std::thread::sleep(Duration::from_millis(60));
        let later = now();
        assert!(later > start.plus(Duration::from_millis(30)));
        assert!(later < start.plus(Duration::from_secs(60)));
        assert_eq!(start.plus(Duration::MAX), Tick(u64::MAX));
    }
}
