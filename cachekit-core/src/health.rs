//! Health: what [`Backend::health`](crate::Backend::health) reports (the
//! check's latency, the breaker, and the state of each failure domain), and
//! [`health`], the report on every backend the process uses.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::{Backend, BreakerState, Result, layer};

/// The answer of a backend that can serve: how long the check took, where
/// its circuit breaker stands and, for a backend of several failure domains
/// (memcached servers, Redis Cluster nodes), the state of each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The backend's [`name`](crate::Backend::name).
    pub backend: &'static str,
    /// How long the whole check took.
    pub latency: Duration,
    /// Where the reliability layer's breaker stands: a bare backend,
    /// without the layer, reports [`BreakerState::Closed`].
    pub breaker: BreakerState,
    /// One entry per failure domain; empty for a backend with one, unnamed.
    pub domains: Vec<DomainHealth>,
}

impl Health {
    /// A healthy `backend` (its [`name`](crate::Backend::name)), with no
    /// domains, a zero latency and a closed breaker.
    pub fn new(backend: &'static str) -> Self {
        Health {
            backend,
            latency: Duration::ZERO,
            breaker: BreakerState::Closed,
            domains: Vec::new(),
        }
    }

    /// This report, the check having taken `latency`.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// This report, with the state of each failure domain.
    #[must_use]
    pub fn with_domains(mut self, domains: Vec<DomainHealth>) -> Self {
        self.domains = domains;
        self
    }

    /// The health of `backend` from the checks of its failure domains,
    /// which took `latency`: `Err` ([`Error::Unavailable`](crate::Error),
    /// naming each domain and why) when none is up, since it cannot serve
    /// at all.
    pub fn of_domains(
        backend: &'static str,
        latency: Duration,
        domains: Vec<DomainHealth>,
    ) -> Result<Self> {
        if !domains.iter().any(|d| d.state == DomainState::Up) {
            let states: Vec<String> = domains
                .iter()
                .map(|d| match &d.state {
                    DomainState::Down { error } => format!("{}: {error}", d.name),
                    state => format!("{}: {state:?}", d.name),
                })
                .collect();
            return Err(crate::Error::unavailable(backend, states.join("; ")));
        }
        Ok(Health::new(backend)
            .with_latency(latency)
            .with_domains(domains))
    }

    /// This report, with the breaker in `breaker` (the layer's part).
    pub(crate) fn with_breaker(mut self, breaker: BreakerState) -> Self {
        self.breaker = breaker;
        self
    }
}

/// One failure domain of a backend: a memcached server, a Redis node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DomainHealth {
    /// Which one: a memcached server's `host:port`, a Redis node's.
    pub name: String,
    /// Whether it answers.
    pub state: DomainState,
    /// How long it took to answer, when it did.
    pub latency: Option<Duration>,
}

impl DomainHealth {
    /// `name` answered in `latency`.
    pub fn up(name: impl Into<String>, latency: Duration) -> Self {
        DomainHealth {
            name: name.into(),
            state: DomainState::Up,
            latency: Some(latency),
        }
    }

    /// `name` did not answer: `error` says why.
    pub fn down(name: impl Into<String>, error: impl fmt::Display) -> Self {
        DomainHealth {
            name: name.into(),
            state: DomainState::Down {
                error: error.to_string(),
            },
            latency: None,
        }
    }

    /// `name` is left out by the backend since `since`, and was not asked.
    pub fn ejected(name: impl Into<String>, since: SystemTime) -> Self {
        DomainHealth {
            name: name.into(),
            state: DomainState::Ejected { since },
            latency: None,
        }
    }
}

/// Where a failure domain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DomainState {
    /// It answered the check.
    Up,
    /// It did not answer the check.
    Down {
        /// Why, as the error said.
        error: String,
    },
    /// The backend took it out after failures (memcached's ejection) and
    /// sends it nothing until its dead time is over.
    Ejected {
        /// When it was taken out.
        since: SystemTime,
    },
}

/// The health of every backend in use in the process, from [`health`].
#[derive(Debug)]
#[non_exhaustive]
pub struct HealthReport {
    /// One entry per backend instance, in the order they were first used.
    pub backends: Vec<BackendHealth>,
}

/// One backend's entry in a [`HealthReport`].
#[derive(Debug)]
#[non_exhaustive]
pub struct BackendHealth {
    /// The backend's [`name`](crate::Backend::name).
    pub backend: &'static str,
    /// Its check's answer: `Err` when it cannot serve at all.
    pub health: Result<Health>,
}

impl HealthReport {
    /// Whether every backend answered its check (`Ok`), some of its failure
    /// domains possibly down.
    ///
    /// An open breaker does not make a backend unready when its check
    /// answered: the check goes around the breaker, so the backend is back,
    /// the breaker closes at its next probe, and meanwhile cached calls run
    /// uncached rather than fail. A backend that does not answer makes the
    /// process unready, breaker or not.
    pub fn is_ready(&self) -> bool {
        self.backends.iter().all(|entry| entry.health.is_ok())
    }
}

/// Checks every backend in use in the process, at once: each backend
/// instance that a [`Cache`](crate::Cache) or a cached function holds (through
/// its reliability layer, shared by all of them), each check bounded by that
/// layer's deadline. For a readiness probe: see [`HealthReport::is_ready`].
pub async fn health() -> HealthReport {
    let layers = layer::in_use();
    let checks = layers.iter().map(|layer| async move {
        BackendHealth {
            backend: layer.name(),
            health: layer.health().await,
        }
    });
    HealthReport {
        backends: futures_util::future::join_all(checks).await,
    }
}
