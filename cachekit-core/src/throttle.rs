//! Warnings at most one per [`INTERVAL`] for each source.
//!
//! During an outage every call fails the same way; a warning per call (or
//! per cached function) floods the logs and hides everything else. Each
//! backend instance has one [`Throttle`] in its reliability layer, shared by
//! every cache over it: the first warning of an interval is written, with
//! the number of warnings left out since the last one written.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Shortest time between two warnings about one backend.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// The warnings of one backend.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// When the next warning may be written, in nanoseconds after [`epoch`].
    next: AtomicU64,
    /// Warnings left out since the last one written.
    suppressed: AtomicU64,
}

impl Throttle {
    /// A throttle that lets the first warning through.
    pub(crate) const fn new() -> Self {
        Throttle {
            next: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Calls `warn` with the number of warnings left out before this one,
    /// if a warning may be written now; else counts this one as left out.
    pub(crate) fn warn(&self, warn: impl FnOnce(u64)) {
        let now = nanos_since_epoch();
        let next = self.next.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(INTERVAL.as_nanos() as u64),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            warn(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn nanos_since_epoch() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(Instant::now().saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_interval_counting_the_rest() {
        let throttle = Throttle::new();
        let mut written = Vec::new();
        for _ in 0..100 {
            throttle.warn(|suppressed| written.push(suppressed));
        }
        assert_eq!(written, [0]);
        tokio::time::advance(INTERVAL).await;
        throttle.warn(|suppressed| written.push(suppressed));
        assert_eq!(written, [0, 99]);
    }
}
