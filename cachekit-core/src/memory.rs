//! The in-process backend: the default when nothing else is configured, and
//! the backend the core tests exercise every capability check against.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::time::Instant;

use crate::key;
use crate::store::{self, Store};
use crate::{
    Backend, Capabilities, Health, Identity, KeyTtl, Lock, LockToken, Result, Touch, TtlInspect,
};

/// Entries in this process's memory, bounded by entries and bytes
/// (scan-resistant eviction that keeps what is in use), with TTL, touch, TTL inspection and an
/// in-process lock. Not shared with other processes, lost on exit.
///
/// Keys follow the same rules as the network backends (printable ASCII, at
/// most 250 bytes) so that swapping backends never changes which keys work.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// The largest value taken, under any key (see `store::largest_value`).
    max_value_size: usize,
    /// Held locks: the token and the end of the lease (`None`: beyond the clock).
    locks: DashMap<String, (LockToken, Option<Instant>)>,
    /// The last fencing value given (see [`LockToken::fence`]): one counter
    /// for every lock, so each lock's values grow too.
    fences: AtomicU64,
}

impl MemoryBackend {
    /// Entries held unless told otherwise.
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
    /// Bytes held unless told otherwise: 256 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

    /// The backend's name, as in `CACHEKIT_BACKEND=memory`.
    pub const NAME: &'static str = "memory";

    /// What the in-memory backend declares.
    pub const CAPABILITIES: Capabilities = Capabilities {
        ttl: true,
        ttl_inspect: true,
        touch: true,
        lock: true,
        persistent: false,
        shared: false,
        max_ttl: None,
        // With the default bounds; `capabilities()` gives a backend's own.
        max_value_size: Some(store::largest_value(
            Self::DEFAULT_MAX_ENTRIES,
            Self::DEFAULT_MAX_BYTES,
            key::MAX_KEY_LEN,
        )),
        max_key_len: key::MAX_KEY_LEN,
    };

    /// A backend with the default bounds.
    pub fn new() -> Self {
        Self::with_limits(Self::DEFAULT_MAX_ENTRIES, Self::DEFAULT_MAX_BYTES)
    }

    /// A backend holding at most `max_entries` entries and `max_bytes` bytes.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                store: Store::new(max_entries, max_bytes),
                max_value_size: store::largest_value(max_entries, max_bytes, key::MAX_KEY_LEN),
                locks: DashMap::new(),
                fences: AtomicU64::new(0),
            }),
        }
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(key: &str) -> Result<()> {
        key::validate(key, Self::CAPABILITIES.max_key_len)
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_value_size: Some(self.inner.max_value_size),
            ..Self::CAPABILITIES
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Self::check(key)?;
        Ok(self.inner.store.get(key).map(|(value, _)| value))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        Self::check(key)?;
        let ttl = Self::CAPABILITIES.clamp_ttl(ttl);
        // One limit for every key, the one `capabilities()` declares (the
        // store would take a little more under a short key).
        let limit = self.inner.max_value_size;
        if value.len() > limit || !self.inner.store.insert(key, value.clone(), ttl) {
            // The key's old value goes: a reader must not get it back
            // after a write that failed.
            self.inner.store.remove(key);
            return Err(crate::Error::ValueTooLarge {
                size: value.len(),
                limit,
            });
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Self::check(key)?;
        Ok(self.inner.store.remove(key))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Self::check(key)?;
        Ok(self.inner.store.contains(key))
    }

    /// Always healthy: nothing to ask, no domains.
    async fn health(&self) -> Result<Health> {
        Ok(Health::new(Self::NAME))
    }

    /// No operation waits: the reliability layer needs no timer.
    fn operation_timeout(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }

    /// No operation fails for a reason a retry would pass.
    fn retries_itself(&self) -> bool {
        true
    }

    /// Clones share the entries.
    fn identity(&self) -> Option<Identity> {
        Some(Identity::of(&self.inner))
    }

    fn as_ttl_inspect(&self) -> Option<&dyn TtlInspect> {
        Some(self)
    }

    fn as_touch(&self) -> Option<&dyn Touch> {
        Some(self)
    }

    fn as_lock(&self) -> Option<&dyn Lock> {
        Some(self)
    }
}

#[async_trait]
impl TtlInspect for MemoryBackend {
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        Self::check(key)?;
        Ok(self.inner.store.ttl(key))
    }
}

#[async_trait]
impl Touch for MemoryBackend {
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        Self::check(key)?;
        Ok(self
            .inner
            .store
            .touch(key, Self::CAPABILITIES.clamp_ttl(ttl)))
    }
}

#[async_trait]
impl Lock for MemoryBackend {
    async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>> {
        Self::check(key)?;
        let now = Instant::now();
        let until = now.checked_add(lease);
        // Taken under the entry's lock, so acquisitions of one lock get
        // their fences in the order they hold it.
        let fence = || {
            LockToken::random().with_fence(self.inner.fences.fetch_add(1, Ordering::Relaxed) + 1)
        };
        let token;
        match self.inner.locks.entry(key.to_owned()) {
            Entry::Occupied(mut held) if held.get().1.is_some_and(|end| end <= now) => {
                token = fence();
                held.insert((token.clone(), until));
            }
            Entry::Occupied(_) => return Ok(None),
            Entry::Vacant(free) => {
                token = fence();
                free.insert((token.clone(), until));
            }
        }
        Ok(Some(token))
    }

    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool> {
        Self::check(key)?;
        let now = Instant::now();
        Ok(self
            .inner
            .locks
            .remove_if(key, |_, (held, until)| {
                held == token && until.is_none_or(|end| end > now)
            })
            .is_some())
    }

    async fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool> {
        Self::check(key)?;
        let now = Instant::now();
        let Some(mut held) = self.inner.locks.get_mut(key) else {
            return Ok(false);
        };
        let (holder, until) = &mut *held;
        if holder != token || until.is_some_and(|end| end <= now) {
            return Ok(false);
        }
        *until = now.checked_add(lease);
        Ok(true)
    }
}
