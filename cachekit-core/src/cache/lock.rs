//! Locks taken by hand: [`Cache::lock`] tries once, [`Cache::lock_wait`]
//! waits for the holder up to a deadline.

use std::sync::Arc;
use std::time::Duration;

use super::Cache;
use crate::{Capability, Error, LockGuard, Result, key};

/// First pause between two tries while another holder has a lock.
pub(super) const LOCK_POLL_START: Duration = Duration::from_millis(5);
/// Longest pause between two tries.
pub(super) const LOCK_POLL_MAX: Duration = Duration::from_millis(100);

impl Cache {
    /// Takes the backend lock on `key` for `lease`: held until the guard is
    /// released or dropped, or until the lease runs out
    /// ([`LockGuard::extend`] restarts it).
    ///
    /// [`Error::Unsupported`] on a backend without locking (Memcached);
    /// [`Error::LockContended`] if another holder has it.
    pub async fn lock(&self, key: &str, lease: Duration) -> Result<LockGuard> {
        let key = key::lock_key(&self.key(key));
        match self.try_lock(&key, lease).await? {
            Some(guard) => Ok(guard),
            None => Err(Error::LockContended { key }),
        }
    }

    /// Takes the backend lock on `key` for `lease` as [`Cache::lock`] does,
    /// but while another holder has it, tries again (every 5 ms at first,
    /// then less often, up to every 100 ms) until `wait` has passed.
    ///
    /// [`Error::LockContended`] if the lock is still held after `wait`;
    /// [`Error::Unsupported`] on a backend without locking.
    pub async fn lock_wait(&self, key: &str, lease: Duration, wait: Duration) -> Result<LockGuard> {
        let key = key::lock_key(&self.key(key));
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = LOCK_POLL_START;
        loop {
            if let Some(guard) = self.try_lock(&key, lease).await? {
                return Ok(guard);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::LockContended { key });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
        }
    }

    /// One try at the lock on the built lock key `key`.
    pub(super) async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockGuard>> {
        let lock = self
            .raw()
            .as_lock()
            .ok_or(self.unsupported(Capability::Lock))?;
        let token = self
            .call("lock", key, false, || lock.try_lock(key, lease))
            .await?;
        // Held by a guard at once: whatever happens next, it is released.
        Ok(token
            .map(|token| LockGuard::new(Arc::clone(&self.inner.backend), key.to_owned(), token)))
    }
}
