//! What the reliability layer counts of its backend: operations, failures
//! by kind, and (with the `metrics` feature) each operation's latency.

use crate::stats::{BackendStats, Count};
use crate::{BreakerState, Error};

/// Every value of [`Error::kind`], in the order of [`Meter::errors`].
const KINDS: [&str; 10] = [
    "unavailable",
    "circuit_open",
    "timeout",
    "rejected",
    "invalid_key",
    "value_too_large",
    "codec",
    "config",
    "unsupported",
    "lock_contended",
];

/// The counters of one backend.
#[derive(Debug)]
pub(super) struct Meter {
    backend: &'static str,
    /// `cachekit_backend_operations_total{backend}`.
    operations: Count,
    /// `cachekit_backend_errors_total{backend, kind}`, by [`KINDS`].
    errors: [Count; KINDS.len()],
}

impl Meter {
    pub(super) fn new(backend: &'static str) -> Self {
        Meter {
            backend,
            operations: Count::new("cachekit_backend_operations_total", &[("backend", backend)]),
            errors: KINDS.map(|kind| {
                Count::new(
                    "cachekit_backend_errors_total",
                    &[("backend", backend), ("kind", kind)],
                )
            }),
        }
    }

    /// Counts an operation that ended with `error`, if any.
    #[inline]
    pub(super) fn record(&self, error: Option<&Error>) {
        self.operations.bump();
        if let Some(error) = error {
            let kind = error.kind();
            if let Some(at) = KINDS.iter().position(|k| *k == kind) {
                self.errors[at].bump();
            }
        }
    }

    /// Records that `operation` took `seconds` (exported only).
    #[cfg(feature = "metrics")]
    #[inline]
    pub(super) fn latency(&self, operation: &'static str, seconds: f64) {
        metrics::histogram!(
            "cachekit_backend_operation_seconds",
            "backend" => self.backend,
            "operation" => operation
        )
        .record(seconds);
    }

    /// The snapshot, with the breaker's state and openings.
    pub(super) fn stats(&self, breaker: BreakerState, breaker_opened: u64) -> BackendStats {
        BackendStats {
            backend: self.backend,
            breaker,
            breaker_opened,
            operations: self.operations.get(),
            errors: KINDS
                .iter()
                .zip(&self.errors)
                .filter(|(_, count)| count.get() > 0)
                .map(|(kind, count)| (*kind, count.get()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_error_has_its_counter() {
        let meter = Meter::new("test");
        let errors = [
            Error::unavailable("test", "down"),
            Error::unavailable("test", crate::CircuitOpen::for_test()),
            Error::timeout("test", "get", std::time::Duration::from_secs(1)),
            Error::rejected("test", "no"),
            Error::invalid_key("a b", "space"),
            Error::ValueTooLarge { size: 2, limit: 1 },
            Error::Codec("bad".into()),
            Error::LockContended { key: "k".into() },
        ];
        for error in &errors {
            assert!(KINDS.contains(&error.kind()), "{}", error.kind());
            meter.record(Some(error));
        }
        meter.record(None);
        let stats = meter.stats(BreakerState::Closed, 0);
        assert_eq!(stats.operations, errors.len() as u64 + 1);
        assert_eq!(stats.errors.len(), errors.len(), "{:?}", stats.errors);
        assert!(stats.errors.contains(&("circuit_open", 1)));
    }
}
