//! Per-operation timeouts and a circuit breaker around backend calls.
//!
//! After [`ReliabilityConfig::failure_threshold`] consecutive failures
//! (unavailable or timed out) the breaker opens: calls fail at once with
//! [`Error::Unavailable`] instead of waiting on a dead backend, so cached
//! functions run uncached at full speed. After `open_for`, one call is let
//! through as a probe; its success closes the breaker, its failure reopens it.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// Timeouts and breaker settings of a [`Cache`](crate::Cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReliabilityConfig {
    /// Longest a single backend operation may take (default 3 s). Backends
    /// enforce their own, usually shorter, timeouts as well; this is the net
    /// under all of them.
    pub operation_timeout: Duration,
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe (default 5 s).
    pub open_for: Duration,
}

impl Default for ReliabilityConfig {
    fn default() -> Self {
        ReliabilityConfig {
            operation_timeout: Duration::from_secs(3),
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// Guards the calls to one backend.
#[derive(Debug)]
pub(crate) struct Guard {
    backend: &'static str,
    config: ReliabilityConfig,
    /// The backend bounds its own operations within `operation_timeout`.
    backend_bounded: bool,
    failures: AtomicU32,
    /// When the breaker may let a probe through, in nanoseconds after [`epoch`]; 0: closed.
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl Guard {
    /// Guards `backend`; `backend_timeout` is the bound it enforces itself, if any.
    pub(crate) fn new(
        backend: &'static str,
        config: ReliabilityConfig,
        backend_timeout: Option<Duration>,
    ) -> Self {
        Guard {
            backend,
            config,
            backend_bounded: backend_timeout.is_some_and(|own| own <= config.operation_timeout),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// Runs `operation` under the timeout, unless the breaker is open.
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        // Held across the await: a probe dropped before its answer (a
        // caller's timeout, `select!`) gives its slot back for the next call.
        let probe = self.admit()?;
        let result = if self.backend_bounded {
            future.await
        } else {
            match tokio::time::timeout(self.config.operation_timeout, future).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout {
                    backend: self.backend,
                    operation,
                    after: self.config.operation_timeout,
                }),
            }
        };
        self.record(&result, probe.is_some());
        result
    }

    /// Whether the breaker is open now.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    /// `Ok` if the call may go ahead, with the probe slot if it is the probe.
    fn admit(&self) -> Result<Option<Probe<'_>>> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(None);
        }
        if now_nanos() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(Some(Probe { guard: self }));
        }
        Err(Error::Unavailable {
            backend: self.backend,
            reason: format!(
                "circuit open after {} consecutive failures; calls skip the backend until a probe succeeds",
                self.config.failure_threshold
            ),
        })
    }

    fn record<T>(&self, result: &Result<T>, probe: bool) {
        match result {
            Err(error) if error.is_backend_failure() => {
                let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if probe || failures >= self.config.failure_threshold {
                    let until = now_nanos().saturating_add(nanos(self.config.open_for));
                    if self.open_until.swap(until.max(1), Ordering::AcqRel) == 0 {
                        tracing::warn!(backend = self.backend, %error, "backend failing: circuit opened");
                    }
                }
            }
            // Read before written: on the hot path nothing changes, and a
            // read leaves the cache line shared between threads.
            _ => {
                if self.failures.load(Ordering::Acquire) != 0 {
                    self.failures.store(0, Ordering::Release);
                }
                if self.open_until.load(Ordering::Acquire) != 0
                    && self.open_until.swap(0, Ordering::AcqRel) != 0
                {
                    tracing::info!(
                        backend = self.backend,
                        "backend answering again: circuit closed"
                    );
                }
            }
        }
    }
}

/// The one call let through an open breaker; its slot is free again once
/// it is dropped, answered or not.
struct Probe<'g> {
    guard: &'g Guard,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.guard.probing.store(false, Ordering::Release);
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_nanos() -> u64 {
    nanos(Instant::now().saturating_duration_since(epoch())) + 1
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Result<()> {
        Err(Error::Unavailable {
            backend: "test",
            reason: "down".into(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_recovers_through_a_probe() {
        let config = ReliabilityConfig {
            operation_timeout: Duration::from_secs(1),
            failure_threshold: 3,
            open_for: Duration::from_secs(5),
        };
        let guard = Guard::new("test", config, None);
        for _ in 0..3 {
            assert!(guard.call("get", async { down() }).await.is_err());
        }
        assert!(guard.is_open());
        let mut ran = false;
        let skipped = guard
            .call("get", async {
                ran = true;
                Ok(())
            })
            .await;
        assert!(
            matches!(skipped, Err(Error::Unavailable { .. })) && !ran,
            "open breaker skips the backend"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            guard.call("get", async { down() }).await.is_err(),
            "failed probe"
        );
        assert!(guard.is_open(), "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(6)).await;
        guard.call("get", async { Ok(()) }).await.unwrap();
        assert!(!guard.is_open(), "a good probe closes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_before_its_answer_lets_the_next_call_probe() {
        let config = ReliabilityConfig {
            operation_timeout: Duration::from_secs(10),
            failure_threshold: 1,
            open_for: Duration::from_secs(5),
        };
        let guard = Guard::new("test", config, None);
        assert!(guard.call("get", async { down() }).await.is_err());
        tokio::time::advance(Duration::from_secs(6)).await;
        // The probe's caller gives up (a timeout of its own) before the answer.
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            guard.call("get", std::future::pending::<Result<()>>()),
        )
        .await;
        assert!(dropped.is_err(), "the probe was still waiting");
        guard
            .call("get", async { Ok(()) })
            .await
            .expect("the next call probes, and its success closes the breaker");
        assert!(!guard.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_time_out_and_bad_input_does_not_count() {
        let config = ReliabilityConfig {
            failure_threshold: 2,
            ..ReliabilityConfig::default()
        };
        let guard = Guard::new("test", config, None);
        let slow = guard.call("get", async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        assert!(matches!(
            slow.await,
            Err(Error::Timeout {
                operation: "get",
                ..
            })
        ));
        for _ in 0..5 {
            let bad: Result<()> = Err(Error::invalid_key("a b", "space"));
            assert!(guard.call("get", async { bad }).await.is_err());
        }
        assert!(!guard.is_open(), "invalid input is not a backend failure");
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_with_its_own_timeout_gets_no_second_timer() {
        let config = ReliabilityConfig {
            operation_timeout: Duration::from_secs(3),
            ..ReliabilityConfig::default()
        };
        let bounded = Guard::new("test", config, Some(Duration::from_secs(1)));
        assert!(bounded.backend_bounded);
        let slow = bounded.call("get", async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        });
        assert!(slow.await.is_ok(), "the backend's own timeout is trusted");
        let longer = Guard::new("test", config, Some(Duration::from_secs(5)));
        assert!(
            !longer.backend_bounded,
            "a backend bound longer than the cache's keeps the cache's timer"
        );
    }
}
