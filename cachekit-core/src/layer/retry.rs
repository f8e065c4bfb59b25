//! Retries of temporary failures ([`Error::is_temporary`]) for idempotent
//! operations, with jittered exponential backoff, never past the deadline.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::Result;

/// How one backend's failed operations are tried again.
#[derive(Debug)]
pub(super) struct Retry {
    /// Retries after the first attempt.
    retries: u32,
    /// The pause before the first retry; it doubles for each next one, and
    /// each pause is drawn between half and one and a half of it.
    backoff: Duration,
}

impl Retry {
    pub(super) fn new(retries: u32, backoff: Duration) -> Self {
        Retry { retries, backoff }
    }

    /// Runs `attempt` until it succeeds, fails for good, runs out of
    /// retries, or the next pause would end past `deadline`; returns the
    /// last result.
    pub(super) async fn run<T, F, Fut>(&self, deadline: Instant, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut pause = self.backoff;
        for _ in 0..self.retries {
            match attempt().await {
                Err(error) if error.is_temporary() => {
                    let jittered = jitter(pause);
                    if Instant::now() + jittered >= deadline {
                        return Err(error);
                    }
                    tracing::debug!(%error, pause = ?jittered, "retrying");
                    tokio::time::sleep(jittered).await;
                    pause = pause.saturating_mul(2);
                }
                result => return result,
            }
        }
        attempt().await
    }
}

/// `pause` scaled by a random factor in [0.5, 1.5): callers failing
/// together do not retry together.
fn jitter(pause: Duration) -> Duration {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let draw = RandomState::new().hash_one(DRAWS.fetch_add(1, Ordering::Relaxed));
    let factor = 0.5 + (draw >> 11) as f64 / (1_u64 << 53) as f64;
    pause.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::Error;

    #[tokio::test(start_paused = true)]
    async fn temporary_failures_are_retried_until_one_passes() {
        let retry = Retry::new(3, Duration::from_millis(10));
        let tries = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(1);
        let result = retry
            .run(deadline, || async {
                match tries.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(Error::unavailable("test", "down")),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_input_is_not_retried_and_retries_stop_at_the_deadline() {
        let retry = Retry::new(5, Duration::from_millis(100));
        let tries = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let bad: Result<()> = retry
            .run(deadline, || async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(Error::invalid_key("a b", "space"))
            })
            .await;
        assert!(bad.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1, "bad input is tried once");

        tries.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(250);
        let down: Result<()> = retry
            .run(deadline, || async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(Error::unavailable("test", "down"))
            })
            .await;
        assert!(down.is_err());
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "never past the deadline"
        );
        assert!(
            tries.load(Ordering::SeqCst) < 6,
            "stopped before the last retry"
        );
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..1000 {
            let pause = jitter(Duration::from_millis(100));
            assert!(pause >= Duration::from_millis(50) && pause < Duration::from_millis(150));
        }
    }
}
