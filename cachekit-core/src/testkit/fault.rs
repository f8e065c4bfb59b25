//! Backends that wrap a real one to take capabilities away or inject faults,
//! for testing the framework's fallbacks and degradation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::Invalidations;
use crate::{
    Backend, Capabilities, Error, Health, Identity, KeyTtl, Lock, LockToken, Result, Touch,
    TtlInspect,
};

/// Exposes only the required operations of the backend it wraps: no TTL
/// inspection, no touch, no lock (like Memcached's lack of a lock).
#[derive(Debug)]
pub struct PlainBackend<B>(pub B);

#[async_trait]
impl<B: Backend> Backend for PlainBackend<B> {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ttl_inspect: false,
            touch: false,
            lock: false,
            ..self.0.capabilities()
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.get(key).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.0.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.0.delete(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.0.exists(key).await
    }

    /// The wrapped backend's, under this one's name.
    async fn health(&self) -> Result<Health> {
        let mut health = self.0.health().await?;
        health.backend = self.name();
        Ok(health)
    }
}

/// How a [`FaultyBackend`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Passes every call to the wrapped backend.
    None = 0,
    /// Fails every call with [`Error::Unavailable`].
    Down = 1,
    /// Never answers (until the caller's timeout).
    Hang = 2,
}

/// Wraps a backend and fails or hangs on demand. It offers the wrapped
/// backend's capabilities, optional operations (lock, touch, TTL
/// inspection) included, and applies the fault to every operation, so the
/// failure paths of a lock-capable backend can be tested too. Wrap it in a
/// [`PlainBackend`] to take the optional operations away.
#[derive(Debug, Clone)]
pub struct FaultyBackend<B> {
    inner: Arc<B>,
    fault: Arc<AtomicU8>,
    asked: Arc<AtomicU64>,
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner`, healthy at first.
    pub fn new(inner: B) -> Self {
        FaultyBackend {
            inner: Arc::new(inner),
            fault: Arc::new(AtomicU8::new(Fault::None as u8)),
            asked: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Changes the behaviour of this backend and its clones.
    pub fn set_fault(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Operations asked of this backend and its clones so far, failed ones
    /// included: what a breaker or a retry policy let through.
    pub fn asked(&self) -> u64 {
        self.asked.load(Ordering::SeqCst)
    }

    async fn check(&self) -> Result<()> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        match self.fault.load(Ordering::SeqCst) {
            1 => Err(Error::unavailable("faulty", "injected fault")),
            2 => {
                // Bounded: callers time out long before this.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(Error::unavailable("faulty", "injected hang ended"))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl<B: Backend> Backend for FaultyBackend<B> {
    fn name(&self) -> &'static str {
        "faulty"
    }

    fn identity(&self) -> Option<Identity> {
        Some(Identity::of(&self.fault))
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check().await?;
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.check().await?;
        self.inner.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.check().await?;
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.check().await?;
        self.inner.exists(key).await
    }

    /// The wrapped backend's, under this one's name, unless a fault fails it.
    async fn health(&self) -> Result<Health> {
        self.check().await?;
        let mut health = self.inner.health().await?;
        health.backend = self.name();
        Ok(health)
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
impl<B: Backend> TtlInspect for FaultyBackend<B> {
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let inspect = self
            .inner
            .as_ttl_inspect()
            .expect("offered only when the wrapped backend has it");
        self.check().await?;
        inspect.ttl(key).await
    }
}

#[async_trait]
impl<B: Backend> Touch for FaultyBackend<B> {
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let touch = self
            .inner
            .as_touch()
            .expect("offered only when the wrapped backend has it");
        self.check().await?;
        touch.touch(key, ttl).await
    }
}

#[async_trait]
impl<B: Backend> Lock for FaultyBackend<B> {
    async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>> {
        let lock = self
            .inner
            .as_lock()
            .expect("offered only when the wrapped backend has it");
        self.check().await?;
        lock.try_lock(key, lease).await
    }

    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool> {
        let lock = self
            .inner
            .as_lock()
            .expect("offered only when the wrapped backend has it");
        self.check().await?;
        lock.unlock(key, token).await
    }

    async fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool> {
        let lock = self
            .inner
            .as_lock()
            .expect("offered only when the wrapped backend has it");
        self.check().await?;
        lock.extend(key, token, lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    #[test]
    fn faulty_offers_the_wrapped_capabilities_and_plain_takes_them_away() {
        let faulty = FaultyBackend::new(MemoryBackend::new());
        assert_eq!(faulty.capabilities(), MemoryBackend::CAPABILITIES);
        assert!(faulty.as_lock().is_some());
        assert!(faulty.as_touch().is_some());
        assert!(faulty.as_ttl_inspect().is_some());
        let plain = PlainBackend(faulty);
        let caps = plain.capabilities();
        assert!(!caps.lock && !caps.touch && !caps.ttl_inspect);
        assert!(plain.as_lock().is_none());
        assert!(plain.as_touch().is_none());
        assert!(plain.as_ttl_inspect().is_none());
        let faulty_plain = FaultyBackend::new(PlainBackend(MemoryBackend::new()));
        assert!(!faulty_plain.capabilities().lock);
        assert!(faulty_plain.as_lock().is_none());
    }

    #[tokio::test]
    async fn faults_apply_to_the_optional_operations() {
        let faulty = FaultyBackend::new(MemoryBackend::new());
        let (lock, touch, inspect) = (
            faulty.as_lock().unwrap(),
            faulty.as_touch().unwrap(),
            faulty.as_ttl_inspect().unwrap(),
        );
        let token = lock.try_lock("k", Duration::from_secs(30)).await.unwrap();
        let token = token.expect("a free lock is taken");
        assert_eq!(faulty.asked(), 1);

        faulty.set_fault(Fault::Down);
        let down = |result: Result<bool>| matches!(result, Err(Error::Unavailable { .. }));
        assert!(matches!(
            lock.try_lock("k2", Duration::from_secs(30)).await,
            Err(Error::Unavailable { .. })
        ));
        assert!(down(lock.unlock("k", &token).await));
        assert!(down(touch.touch("k", None).await));
        assert!(matches!(
            inspect.ttl("k").await,
            Err(Error::Unavailable { .. })
        ));
        assert_eq!(faulty.asked(), 5);

        faulty.set_fault(Fault::Hang);
        let hung = tokio::time::timeout(Duration::from_millis(50), lock.unlock("k", &token)).await;
        assert!(hung.is_err(), "a hanging backend answered {hung:?}");

        faulty.set_fault(Fault::None);
        assert!(
            lock.unlock("k", &token).await.unwrap(),
            "the lock outlived the faults"
        );
    }
}
