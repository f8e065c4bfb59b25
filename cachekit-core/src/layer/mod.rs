//! Layers: a backend wrapped in another that adds what every backend needs
//! and none should write again (the models: tower's `Layer`, OpenDAL's
//! layers).
//!
//! The reliability layer guards one backend, in this order, outermost first:
//!
//! 1. the circuit breaker ([`ReliabilityConfig::failure_threshold`],
//!    `cool_down`, `probes`): skips a backend whose every failure domain
//!    keeps failing, so cached functions run uncached at full speed;
//! 2. the deadline ([`ReliabilityConfig::timeout`]): bounds each operation,
//!    retries included, unless the backend bounds its own more tightly;
//! 3. retries ([`ReliabilityConfig::retries`], `retry_backoff`): of temporary
//!    failures of idempotent operations, jittered, never past the deadline,
//!    unless the backend retries itself;
//! 4. the backend.
//!
//! It is applied once per backend instance: every [`Cache`](crate::Cache)
//! and cached function over one backend (the process default, the
//! configured one, a `backend = ...`, an `Arc` given to several caches)
//! shares one breaker, so twenty cached functions over a dead server stop
//! calling it together, after `failure_threshold` failures in all. A cache
//! built over a backend applies the layer with the configured settings
//! (`[reliability]`, `CACHEKIT_RELIABILITY_*`) unless the backend has it
//! already; to choose the settings in code, apply it yourself with
//! [`ReliabilityLayer`] and give the caches what it returns.

mod breaker;
mod config;
mod deadline;
mod reliable;
mod retry;

use std::sync::{Arc, Mutex, PoisonError, Weak};

pub use breaker::CircuitOpen;
pub use config::{RELIABILITY_SETTINGS, ReliabilityConfig};
pub(crate) use reliable::Reliable;

use crate::Backend;

/// Applies the reliability layer (see the [module](self) documentation).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachekit_core::layer::{ReliabilityConfig, ReliabilityLayer};
/// use cachekit_core::{Backend, Cache, MemoryBackend};
///
/// # fn main() -> cachekit_core::Result<()> {
/// let config = ReliabilityConfig {
///     failure_threshold: 3,
///     cool_down: Duration::from_secs(1),
///     ..ReliabilityConfig::default()
/// };
/// let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
/// let guarded = ReliabilityLayer::new(config).layer(backend);
/// let cache = Cache::builder().shared_backend(guarded).build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ReliabilityLayer {
    config: ReliabilityConfig,
}

impl ReliabilityLayer {
    /// The layer with `config`.
    pub fn new(config: ReliabilityConfig) -> Self {
        ReliabilityLayer { config }
    }

    /// `backend` behind the layer. A backend that has the layer already
    /// (given here again, or to a cache before) is returned as it is, with
    /// the settings it was first given: one breaker per backend.
    pub fn layer(&self, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        reliable(&backend, self.config)
    }
}

/// The layered `backend`: `backend` itself if it is one, else the layer
/// already over it, else a new one with `config`.
pub(crate) fn reliable(backend: &Arc<dyn Backend>, config: ReliabilityConfig) -> Arc<Reliable> {
    /// The layers made, by the backend under them, while they live.
    type Made = (Weak<dyn Backend>, Weak<Reliable>);
    static MADE: Mutex<Vec<Made>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    made.retain(|(_, layer)| layer.strong_count() > 0);
    let given = Arc::as_ptr(backend);
    let found = made.iter().find_map(|(under, layer)| {
        let layer = layer.upgrade()?;
        let same = std::ptr::addr_eq(Arc::as_ptr(&layer), given)
            || std::ptr::addr_eq(under.as_ptr(), given);
        same.then_some(layer)
    });
    if let Some(layer) = found {
        return layer;
    }
    let layer = Arc::new(Reliable::new(Arc::clone(backend), config));
    made.push((Arc::downgrade(backend), Arc::downgrade(&layer)));
    layer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    #[test]
    fn one_layer_per_backend_however_often_applied() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let layer = ReliabilityLayer::default();
        let once = layer.layer(Arc::clone(&backend));
        let twice = layer.layer(Arc::clone(&backend));
        assert!(Arc::ptr_eq(&once, &twice), "the same backend");
        let again = layer.layer(Arc::clone(&once));
        assert!(Arc::ptr_eq(&once, &again), "a layered backend");
        let other: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        assert!(!Arc::ptr_eq(&once, &layer.layer(other)));
    }
}
