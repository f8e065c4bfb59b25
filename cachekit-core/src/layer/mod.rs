//! Layers: a backend wrapped in another that adds what every backend needs
//! and none should write again (the models: tower's `Layer`, OpenDAL's
//! layers). The reliability layer is documented on [`ReliabilityLayer`].

mod breaker;
mod config;
mod deadline;
mod meter;
mod reliable;
mod retry;

use std::sync::{Arc, Mutex, PoisonError, Weak};

pub use breaker::{BreakerState, CircuitOpen};
pub use config::{RELIABILITY_SETTINGS, ReliabilityConfig};
pub(crate) use reliable::Reliable;

use crate::{Backend, Identity};

/// Applies the reliability layer to a backend.
///
/// The reliability layer guards one backend, in this order, outermost first:
///
/// 1. the circuit breaker ([`ReliabilityConfig::failure_threshold`],
///    `cool_down`, `probes`): skips a backend whose every failure domain
///    keeps failing, so cached functions run uncached at full speed;
/// 2. the deadline ([`ReliabilityConfig::timeout`]): bounds each operation,
///    retries included, unless the backend bounds its own more tightly;
/// 3. retries ([`ReliabilityConfig::retries`], `retry_backoff`): of temporary
///    failures of idempotent operations, jittered, never past the deadline,
///    unless the backend retries itself;
/// 4. the backend.
///
/// It is applied once per backend instance: every [`Cache`](crate::Cache)
/// and cached function over one backend (the process default, the
/// configured one, a `backend = ...`, an `Arc` or a clone given to several
/// caches) shares one breaker, so twenty cached functions over a dead
/// server stop calling it together, after `failure_threshold` failures in
/// all. Two backends built apart (two `MemcachedBackend::new` calls) are
/// two instances, with a breaker each. A cache
/// built over a backend applies the layer with the configured settings
/// (`[reliability]`, `CACHEKIT_RELIABILITY_*`) unless the backend has it
/// already; to choose the settings in code, apply it yourself with
/// this type and give the caches what it returns.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachekit_core::{ReliabilityConfig, ReliabilityLayer};
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

/// The layers made, by the identity of the backend under them, while
/// they live. A layer holds its backend, so no identity is reused while
/// its entry is here.
static MADE: Mutex<Vec<(Identity, Weak<Reliable>)>> = Mutex::new(Vec::new());

/// The layered `backend`: `backend` itself if it is one, else the layer
/// already over it (or over a clone of it), else a new one with `config`.
pub(crate) fn reliable(backend: &Arc<dyn Backend>, config: ReliabilityConfig) -> Arc<Reliable> {
    let id = identity(backend);
    let find = |made: &mut Vec<(Identity, Weak<Reliable>)>| {
        made.retain(|(_, layer)| layer.strong_count() > 0);
        let (_, layer) = made.iter().find(|(made_for, _)| *made_for == id)?;
        layer.upgrade()
    };
    if let Some(layer) = find(&mut lock(&MADE)) {
        return layer;
    }
    // Made with no lock held: `new` asks the backend (its name, its
    // capabilities), which is the backend crate's code.
    let new = Arc::new(Reliable::new(Arc::clone(backend), config));
    let mut made = lock(&MADE);
    if let Some(layer) = find(&mut made) {
        return layer;
    }
    made.push((id, Arc::downgrade(&new)));
    new
}

/// The layers in use: every backend instance that a cache or a cached
/// function holds, through its layer, in the order they were made.
pub(crate) fn in_use() -> Vec<Arc<Reliable>> {
    let mut made = lock(&MADE);
    made.retain(|(_, layer)| layer.strong_count() > 0);
    made.iter()
        .filter_map(|(_, layer)| layer.upgrade())
        .collect()
}

/// What tells one backend instance from another: its own
/// [`Backend::identity`], else its `Arc`.
fn identity(backend: &Arc<dyn Backend>) -> Identity {
    backend.identity().unwrap_or_else(|| Identity::of(backend))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        let memory = MemoryBackend::new();
        let clone: Arc<dyn Backend> = Arc::new(memory.clone());
        let first = layer.layer(Arc::new(memory));
        assert!(Arc::ptr_eq(&first, &layer.layer(clone)), "a clone");
        let other: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        assert!(!Arc::ptr_eq(&once, &layer.layer(other)));
    }
}
