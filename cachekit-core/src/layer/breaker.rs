//! The circuit breaker: stops calling a backend that keeps failing.
//!
//! Each failure domain of the backend (a memcached server; one for most
//! backends) counts its consecutive temporary failures ([`Error::is_temporary`]:
//! never bad input, never a configuration error). The breaker opens when
//! every domain has failed [`failure_threshold`](super::ReliabilityConfig::failure_threshold)
//! times in a row: a failure confined to one domain (a frozen server, which
//! the backend ejects by itself) never cuts the others off, and any success
//! resets the counts. Open, it fails calls at once with
//! [`Error::Unavailable`] ([`CircuitOpen`]), so cached functions run
//! uncached at full speed. After the cool-down it half-opens: up to
//! `probes` calls go through; a success closes it, a failure reopens it.
//! A probe dropped before its answer frees its slot.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::Count;
use crate::{Error, Result};

/// The breaker of one backend.
#[derive(Debug)]
pub(super) struct Breaker {
    backend: &'static str,
    threshold: u32,
    cool_down: Duration,
    probes: u32,
    /// Consecutive temporary failures of each failure domain.
    failures: Box<[AtomicU32]>,
    /// When the breaker may let probes through, in nanoseconds after
    /// [`epoch`]; 0: closed.
    open_until: AtomicU64,
    /// Probes in flight.
    probing: AtomicU32,
    /// `cachekit_breaker_transitions_total{backend, to="open"}`.
    opened: Count,
    /// `cachekit_breaker_transitions_total{backend, to="closed"}`.
    closed: Count,
    /// `cachekit_breaker_open{backend}`: this breaker adds 1 while open, so
    /// that instances of one backend kind add up rather than overwrite.
    #[cfg(feature = "metrics")]
    open_gauge: metrics::Gauge,
}

/// The typed cause of an [`Error::Unavailable`] from an open breaker.
#[derive(Debug)]
pub struct CircuitOpen {
    failures: u32,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit open: the backend failed repeatedly ({} times in a row opens it); calls skip it until a probe succeeds",
            self.failures
        )
    }
}

impl std::error::Error for CircuitOpen {}

#[cfg(test)]
impl CircuitOpen {
    pub(crate) fn for_test() -> Self {
        CircuitOpen { failures: 1 }
    }
}

/// Where a backend's circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls reach the backend.
    Closed,
    /// Calls fail at once without reaching the backend, until the cool-down ends.
    Open,
    /// The cool-down ended: the next calls probe the backend.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`: the name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Breaker {
    /// A closed breaker for `backend`, with `domains` failure domains.
    pub(super) fn new(
        backend: &'static str,
        threshold: u32,
        cool_down: Duration,
        probes: u32,
        domains: usize,
    ) -> Self {
        Breaker {
            backend,
            threshold: threshold.max(1),
            cool_down,
            probes: probes.max(1),
            failures: (0..domains.max(1)).map(|_| AtomicU32::new(0)).collect(),
            open_until: AtomicU64::new(0),
            probing: AtomicU32::new(0),
            opened: transitions(backend, "open"),
            closed: transitions(backend, "closed"),
            #[cfg(feature = "metrics")]
            open_gauge: {
                let gauge = metrics::gauge!("cachekit_breaker_open", "backend" => backend);
                // The series exists, at 0, before the first opening.
                gauge.increment(0.0);
                gauge
            },
        }
    }

    /// `Ok` if a call may go ahead, with a probe slot if it is a probe.
    pub(super) fn admit(&self) -> Result<Option<Probe<'_>>> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(None);
        }
        if now_nanos() >= until {
            let taken = self
                .probing
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |probing| {
                    (probing < self.probes).then_some(probing + 1)
                });
            if taken.is_ok() {
                return Ok(Some(Probe { breaker: self }));
            }
        }
        Err(Error::unavailable(
            self.backend,
            CircuitOpen {
                failures: self.threshold,
            },
        ))
    }

    /// Records a call's result: a temporary failure counts (and a probe's
    /// reopens the breaker), a success resets the counts and closes it, and
    /// any other error (bad input, refused before the backend was asked)
    /// does neither.
    pub(super) fn record<T>(&self, result: &Result<T>, probe: bool) {
        match result {
            Err(error) if error.is_temporary() => self.failed(error, probe),
            Err(_) => {}
            // Read before written: on the hot path nothing changes, and a
            // read leaves the cache lines shared between threads.
            Ok(_) => {
                for failures in self.failures.iter() {
                    if failures.load(Ordering::Relaxed) != 0 {
                        failures.store(0, Ordering::Relaxed);
                    }
                }
                if self.open_until.load(Ordering::Acquire) != 0
                    && self.open_until.swap(0, Ordering::AcqRel) != 0
                {
                    self.closed.bump();
                    #[cfg(feature = "metrics")]
                    self.open_gauge.decrement(1.0);
                    tracing::info!(
                        backend = self.backend,
                        "backend answering again: circuit closed"
                    );
                }
            }
        }
    }

    fn failed(&self, error: &Error, probe: bool) {
        match error.domain().and_then(|domain| self.failures.get(domain)) {
            Some(failures) => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            // Not confined to one domain: every domain failed.
            None => self.failures.iter().for_each(|failures| {
                failures.fetch_add(1, Ordering::Relaxed);
            }),
        }
        let all_failing = self
            .failures
            .iter()
            .all(|failures| failures.load(Ordering::Relaxed) >= self.threshold);
        if probe || all_failing {
            let until = now_nanos().saturating_add(nanos(self.cool_down));
            if self.open_until.swap(until.max(1), Ordering::AcqRel) == 0 {
                self.opened.bump();
                #[cfg(feature = "metrics")]
                self.open_gauge.increment(1.0);
                tracing::warn!(backend = self.backend, %error, "backend failing: circuit opened");
            }
        }
    }

    /// Whether the breaker is open now.
    #[cfg(test)]
    pub(super) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    /// Times the breaker opened.
    pub(super) fn openings(&self) -> u64 {
        self.opened.get()
    }

    /// Where the breaker stands now.
    pub(super) fn state(&self) -> BreakerState {
        match self.open_until.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            until if now_nanos() < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Breaker {
    /// A breaker dropped open leaves the gauge as if it had closed.
    fn drop(&mut self) {
        if *self.open_until.get_mut() != 0 {
            self.open_gauge.decrement(1.0);
        }
    }
}

/// A call let through a half-open breaker; its slot is free again once it
/// is dropped, answered or not.
#[derive(Debug)]
pub(super) struct Probe<'b> {
    breaker: &'b Breaker,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.breaker.probing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The counter of a breaker's transitions `to` a state.
fn transitions(backend: &'static str, to: &'static str) -> Count {
    Count::new(
        "cachekit_breaker_transitions_total",
        &[("backend", backend), ("to", to)],
    )
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

    fn down(domain: Option<usize>) -> Result<()> {
        let error = Error::unavailable("test", "down");
        Err(match domain {
            Some(domain) => error.in_domain(domain),
            None => error,
        })
    }

    /// Records `result` as a call through `breaker` would.
    fn call(breaker: &Breaker, result: Result<()>) -> Result<()> {
        let probe = breaker.admit()?;
        breaker.record(&result, probe.is_some());
        result
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_recovers_through_a_probe() {
        let breaker = Breaker::new("test", 3, Duration::from_secs(5), 1, 1);
        for _ in 0..3 {
            assert!(call(&breaker, down(None)).is_err());
        }
        assert!(breaker.is_open());
        assert_eq!(breaker.state(), BreakerState::Open);
        let skipped = breaker.admit();
        assert!(
            matches!(&skipped, Err(Error::Unavailable { source, .. }) if source.is::<CircuitOpen>()),
            "open breaker skips the backend: {skipped:?}"
        );
        drop(skipped);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(call(&breaker, down(None)).is_err(), "failed probe");
        assert!(breaker.is_open(), "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(6)).await;
        call(&breaker, Ok(())).unwrap();
        assert!(!breaker.is_open(), "a good probe closes");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_before_its_answer_lets_the_next_call_probe() {
        let breaker = Breaker::new("test", 1, Duration::from_secs(5), 1, 1);
        assert!(call(&breaker, down(None)).is_err());
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = breaker.admit().unwrap();
        assert!(probe.is_some());
        assert!(breaker.admit().is_err(), "one probe at a time");
        drop(probe); // its caller gave up
        call(&breaker, Ok(())).expect("the next call probes, and closes the breaker");
        assert!(!breaker.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_the_configured_number_of_probes_through() {
        let breaker = Breaker::new("test", 1, Duration::from_secs(5), 3, 1);
        assert!(call(&breaker, down(None)).is_err());
        tokio::time::advance(Duration::from_secs(6)).await;
        let probes: Vec<_> = (0..3).map(|_| breaker.admit().unwrap()).collect();
        assert!(probes.iter().all(Option::is_some));
        assert!(breaker.admit().is_err(), "no fourth probe");
    }

    #[tokio::test(start_paused = true)]
    async fn one_failing_domain_never_opens_the_breaker_for_the_others() {
        let breaker = Breaker::new("test", 2, Duration::from_secs(5), 1, 3);
        for _ in 0..100 {
            assert!(call(&breaker, down(Some(1))).is_err());
        }
        assert!(!breaker.is_open(), "domains 0 and 2 have not failed");
        for domain in [0, 2, 0, 2] {
            let _ = call(&breaker, down(Some(domain)));
        }
        assert!(breaker.is_open(), "every domain failed twice in a row");
        tokio::time::advance(Duration::from_secs(6)).await;
        call(&breaker, Ok(())).unwrap();
        for _ in 0..100 {
            let _ = call(&breaker, down(Some(1)));
            call(&breaker, Ok(())).unwrap();
        }
        assert!(!breaker.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn bad_input_neither_fails_nor_closes() {
        let breaker = Breaker::new("test", 2, Duration::from_secs(5), 1, 1);
        let bad = || -> Result<()> { Err(Error::invalid_key("a b", "space")) };
        for _ in 0..5 {
            assert!(call(&breaker, bad()).is_err());
        }
        assert!(!breaker.is_open(), "invalid input is not a backend failure");
        for _ in 0..2 {
            let _ = call(&breaker, down(None));
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            call(&breaker, bad()).is_err(),
            "a probe refused as bad input"
        );
        assert!(breaker.is_open(), "did not prove the backend answers");
        assert!(breaker.admit().unwrap().is_some(), "and freed its slot");
    }
}
