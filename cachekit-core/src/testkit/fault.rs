//! Backends that wrap a real one to take capabilities away or inject faults,
//! for testing the framework's fallbacks and degradation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Backend, Capabilities, Error, Identity, Result};

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

    async fn health(&self) -> Result<()> {
        self.0.health().await
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

/// Wraps a backend and fails or hangs on demand; its optional capabilities
/// are those of [`PlainBackend`].
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
        Capabilities {
            ttl_inspect: false,
            touch: false,
            lock: false,
            ..self.inner.capabilities()
        }
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

    async fn health(&self) -> Result<()> {
        self.check().await?;
        self.inner.health().await
    }
}
