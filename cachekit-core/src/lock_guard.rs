//! A held backend lock, released explicitly or on drop.

use std::sync::Arc;
use std::time::Duration;

use crate::{Backend, Capability, Error, Lock, LockToken, Result};

/// A lock taken with [`Cache::lock`](crate::Cache::lock). Release it with
/// [`LockGuard::release`]; if dropped instead, it is released in the
/// background on the current tokio runtime, or else left to its lease.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    key: String,
    token: Option<LockToken>,
}

impl LockGuard {
    pub(crate) fn new(backend: Arc<dyn Backend>, key: String, token: LockToken) -> Self {
        LockGuard {
            backend,
            key,
            token: Some(token),
        }
    }

    /// The backend key the lock is held on.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fencing value of this acquisition, if the backend gives one
    /// (see [`LockToken::fence`]): pass it to the store the lock guards, so
    /// that it can refuse a holder whose lease ran out.
    pub fn fence(&self) -> Option<u64> {
        self.token().fence()
    }

    /// Restarts the lease at `lease` from now; `false` if the lock is no
    /// longer held (its lease ran out), and then nothing changes.
    pub async fn extend(&self, lease: Duration) -> Result<bool> {
        let lock = lock_of(&*self.backend)?;
        lock.extend(&self.key, self.token(), lease).await
    }

    fn token(&self) -> &LockToken {
        self.token
            .as_ref()
            .expect("a guard holds its token until released")
    }

    /// Releases the lock; `false` if the lease had already run out and
    /// someone else may hold it now. If this future is dropped before the
    /// backend answers, the lock is released in the background, as on drop.
    pub async fn release(mut self) -> Result<bool> {
        let released = unlock(&*self.backend, &self.key, self.token()).await;
        self.token = None;
        released
    }
}

async fn unlock(backend: &dyn Backend, key: &str, token: &LockToken) -> Result<bool> {
    lock_of(backend)?.unlock(key, token).await
}

fn lock_of(backend: &dyn Backend) -> Result<&dyn Lock> {
    backend.as_lock().ok_or(Error::Unsupported {
        backend: backend.name(),
        capability: Capability::Lock,
    })
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(key = %self.key, "lock guard dropped outside a runtime: left to its lease");
            return;
        };
        let backend = Arc::clone(&self.backend);
        let key = std::mem::take(&mut self.key);
        runtime.spawn(async move {
            if let Err(error) = unlock(&*backend, &key, &token).await {
                tracing::warn!(%key, %error, "releasing a dropped lock failed: left to its lease");
            }
        });
    }
}
