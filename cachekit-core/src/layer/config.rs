//! `ReliabilityConfig`: the reliability layer's settings, their defaults,
//! variables and ranges.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Setting, SettingKind, seconds};

/// The reliability layer's settings: the `[reliability]` section of
/// `cachekit.toml` and the `CACHEKIT_RELIABILITY_*` variables.
pub const RELIABILITY_SETTINGS: &[Setting] = &[
    Setting {
        key: "reliability.timeout",
        env: "CACHEKIT_RELIABILITY_TIMEOUT",
        // Also read under the name the setting had outside the section.
        env_aliases: &["CACHEKIT_OPERATION_TIMEOUT"],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(3_600),
        },
        default: "3.0",
        description: "Longest one backend operation may take, retries included, seconds; no timer is added where the backend enforces a shorter one.",
    },
    Setting {
        key: "reliability.retries",
        env: "CACHEKIT_RELIABILITY_RETRIES",
        env_aliases: &[],
        kind: SettingKind::Integer { min: 0, max: 10 },
        default: "2",
        description: "Retries of a temporary failure of an idempotent operation, for backends that do not retry themselves.",
    },
    Setting {
        key: "reliability.retry_backoff",
        env: "CACHEKIT_RELIABILITY_RETRY_BACKOFF",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(10),
        },
        default: "0.05",
        description: "Pause before the first retry, seconds; it doubles for each next one, jittered by half either way.",
    },
    Setting {
        key: "reliability.failure_threshold",
        env: "CACHEKIT_RELIABILITY_FAILURE_THRESHOLD",
        env_aliases: &[],
        kind: SettingKind::Integer { min: 1, max: 1_000 },
        default: "5",
        description: "Consecutive failures (of every failure domain of the backend) that open the circuit breaker.",
    },
    Setting {
        key: "reliability.cool_down",
        env: "CACHEKIT_RELIABILITY_COOL_DOWN",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(3_600),
        },
        default: "5.0",
        description: "How long the breaker stays open before it lets probes through, seconds.",
    },
    Setting {
        key: "reliability.probes",
        env: "CACHEKIT_RELIABILITY_PROBES",
        env_aliases: &[],
        kind: SettingKind::Integer { min: 1, max: 100 },
        default: "1",
        description: "Calls let through a half-open breaker at once; one success closes it.",
    },
];

/// How the reliability layer guards a backend (see [`ReliabilityLayer`](crate::ReliabilityLayer)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReliabilityConfig {
    /// Longest one operation may take, retries included (default 3 s). No
    /// timer is added where the backend enforces a shorter timeout itself.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Retries of a temporary failure of an idempotent operation (default 2),
    /// for backends that do not retry themselves.
    pub retries: u32,
    /// Pause before the first retry (default 50 ms); it doubles for each
    /// next one, each pause drawn between half and one and a half of it.
    #[serde(with = "seconds")]
    pub retry_backoff: Duration,
    /// Consecutive failures of every failure domain that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long the breaker stays open before it lets probes through (default 5 s).
    #[serde(with = "seconds")]
    pub cool_down: Duration,
    /// Calls let through a half-open breaker at once (default 1).
    pub probes: u32,
}

/// Builder-style setters, one per field.
impl ReliabilityConfig {
    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`retries`](Self::retries).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets [`retry_backoff`](Self::retry_backoff).
    pub fn retry_backoff(mut self, retry_backoff: Duration) -> Self {
        self.retry_backoff = retry_backoff;
        self
    }

    /// Sets [`failure_threshold`](Self::failure_threshold).
    pub fn failure_threshold(mut self, failure_threshold: u32) -> Self {
        self.failure_threshold = failure_threshold;
        self
    }

    /// Sets [`cool_down`](Self::cool_down).
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// Sets [`probes`](Self::probes).
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }
}

impl Default for ReliabilityConfig {
    fn default() -> Self {
        ReliabilityConfig {
            timeout: Duration::from_secs(3),
            retries: 2,
            retry_backoff: Duration::from_millis(50),
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
            probes: 1,
        }
    }
}
