//! `Reliable`: a backend behind the reliability layer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::ReliabilityConfig;
use super::breaker::Breaker;
use super::deadline::Deadline;
use super::meter::Meter;
use super::retry::Retry;
use crate::backend::Invalidations;
use crate::stats::BackendStats;
use crate::throttle::Throttle;
use crate::{
    Backend, Capabilities, Error, Health, Identity, KeyTtl, Lock, LockToken, Result, Touch,
    TtlInspect,
};

/// A backend behind the layer: each operation passes the breaker, runs
/// within the deadline, and is retried (when idempotent, and the backend
/// does not retry itself) until it passes, fails for good or the deadline
/// nears. In that order, outermost first: an open breaker costs no timer,
/// and retries never outlive the deadline.
#[derive(Debug)]
pub(crate) struct Reliable {
    inner: Arc<dyn Backend>,
    capabilities: Capabilities,
    breaker: Breaker,
    deadline: Deadline,
    /// `None` when the backend retries itself.
    retry: Option<Retry>,
    /// Warnings about this backend, shared by every cache over it.
    pub(crate) throttle: Throttle,
    meter: Meter,
}

impl Reliable {
    pub(super) fn new(inner: Arc<dyn Backend>, config: ReliabilityConfig) -> Self {
        let name = inner.name();
        Reliable {
            capabilities: inner.capabilities(),
            breaker: Breaker::new(
                name,
                config.failure_threshold,
                config.cool_down,
                config.probes,
                inner.failure_domains(),
            ),
            deadline: Deadline::new(name, config.timeout, inner.operation_timeout()),
            retry: (!inner.retries_itself())
                .then(|| Retry::new(config.retries, config.retry_backoff)),
            throttle: Throttle::new(),
            meter: Meter::new(name),
            inner,
        }
    }

    /// The backend's counters.
    pub(crate) fn stats(&self) -> BackendStats {
        self.meter
            .stats(self.breaker.state(), self.breaker.openings())
    }

    /// Where the layer's circuit breaker stands.
    pub(crate) fn breaker_state(&self) -> super::BreakerState {
        self.breaker.state()
    }

    /// The backend behind the layer.
    pub(crate) fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Runs `attempt` (an operation of the backend on `key`, if on one
    /// key) through the layer; it is tried again only if `idempotent`.
    /// Generic, so that a caller that knows this type pays no boxed future
    /// of the layer's own.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        key: Option<&str>,
        idempotent: bool,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let name = self.inner.name();
        let mut attempt = || crate::trace::backend_call(name, operation, key, attempt());
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        // Held across the await: a probe dropped before its answer frees its slot.
        let probe = match self.breaker.admit() {
            Ok(probe) => probe,
            Err(error) => {
                self.meter.record(Some(&error));
                return Err(error);
            }
        };
        let result = match &self.retry {
            Some(retry) if idempotent => {
                let deadline = Instant::now()
                    .checked_add(self.deadline.timeout())
                    .unwrap_or_else(far_future);
                retry
                    .run(deadline, || {
                        self.deadline.until(deadline, operation, attempt())
                    })
                    .await
            }
            _ => self.deadline.bound(operation, attempt()).await,
        };
        let result = result.map_err(|error| self.place(error, key));
        self.breaker.record(&result, probe.is_some());
        self.meter.record(result.as_ref().err());
        #[cfg(feature = "metrics")]
        self.meter
            .latency(operation, started.elapsed().as_secs_f64());
        result
    }

    /// `error`, charged to the failure domain that serves `key` when the
    /// backend has several and did not say which one failed (the layer's
    /// own timeout never does).
    fn place(&self, error: Error, key: Option<&str>) -> Error {
        match key {
            Some(key) if error.domain().is_none() && self.inner.failure_domains() > 1 => {
                let domain = self.inner.failure_domain(key);
                error.in_domain(domain)
            }
            _ => error,
        }
    }
}

/// An instant later than any deadline.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

#[async_trait]
impl Backend for Reliable {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.call("get", Some(key), true, || self.inner.get(key))
            .await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.call("set", Some(key), true, || {
            self.inner.set(key, value.clone(), ttl)
        })
        .await
    }

    /// Retried: an invalidation that did not happen leaves a stale entry,
    /// while a retry after a lost answer at worst reports `false`.
    async fn delete(&self, key: &str) -> Result<bool> {
        self.call("delete", Some(key), true, || self.inner.delete(key))
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.call("exists", Some(key), true, || self.inner.exists(key))
            .await
    }

    /// The backend's answer, bounded by the deadline, with the latency of
    /// the whole check and the breaker's state.
    async fn health(&self) -> Result<Health> {
        // Not through the breaker: a health check asks the backend itself.
        let started = Instant::now();
        let health = self.deadline.bound("health", self.inner.health()).await?;
        Ok(health
            .with_latency(started.elapsed())
            .with_breaker(self.breaker_state()))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.call("get_many", None, true, || self.inner.get_many(keys))
            .await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        self.call("set_many", None, true, || self.inner.set_many(entries, ttl))
            .await
    }

    /// The layer's own: it bounds every operation.
    fn operation_timeout(&self) -> Option<Duration> {
        Some(self.deadline.timeout())
    }

    /// The layer's own: it retries where the backend does not.
    fn retries_itself(&self) -> bool {
        true
    }

    fn failure_domains(&self) -> usize {
        self.inner.failure_domains()
    }

    fn failure_domain(&self, key: &str) -> usize {
        self.inner.failure_domain(key)
    }

    fn key_prefix(&self) -> &str {
        self.inner.key_prefix()
    }

    /// The backend's: the layer over it stands for it.
    fn identity(&self) -> Option<Identity> {
        Some(super::identity(&self.inner))
    }

    fn as_ttl_inspect(&self) -> Option<&dyn TtlInspect> {
        self.inner.as_ttl_inspect().map(|_| self as &dyn TtlInspect)
    }

    fn invalidations(&self) -> Option<Invalidations> {
        self.inner.invalidations()
    }

    fn as_touch(&self) -> Option<&dyn Touch> {
        self.inner.as_touch().map(|_| self as &dyn Touch)
    }

    fn as_lock(&self) -> Option<&dyn Lock> {
        self.inner.as_lock().map(|_| self as &dyn Lock)
    }
}

#[async_trait]
impl TtlInspect for Reliable {
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let inspect = self
            .inner
            .as_ttl_inspect()
            .expect("offered only when the backend has it");
        self.call("ttl", Some(key), true, || inspect.ttl(key)).await
    }
}

#[async_trait]
impl Touch for Reliable {
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let touch = self
            .inner
            .as_touch()
            .expect("offered only when the backend has it");
        self.call("touch", Some(key), true, || touch.touch(key, ttl))
            .await
    }
}

#[async_trait]
impl Lock for Reliable {
    /// Not retried: an answer lost after the lock was taken would make the
    /// retry find the lock held, by this very caller.
    async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>> {
        let lock = self
            .inner
            .as_lock()
            .expect("offered only when the backend has it");
        self.call("lock", Some(key), false, || lock.try_lock(key, lease))
            .await
    }

    /// Not retried either: an answer lost after the lock was released
    /// would make the retry report it lost.
    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool> {
        let lock = self
            .inner
            .as_lock()
            .expect("offered only when the backend has it");
        self.call("unlock", Some(key), false, || lock.unlock(key, token))
            .await
    }

    /// Retried: extending twice with one token extends once.
    async fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool> {
        let lock = self
            .inner
            .as_lock()
            .expect("offered only when the backend has it");
        self.call("extend", Some(key), true, || lock.extend(key, token, lease))
            .await
    }
}
