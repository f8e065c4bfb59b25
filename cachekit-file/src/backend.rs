//! `FileBackend`: the `Backend` over one local directory.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cachekit_core::backend::{
    Backend, Capabilities, Health, Identity, KeyTtl, Lock, LockToken, MAX_KEY_LEN, Touch,
    TtlInspect, validate_key,
};
use cachekit_core::{ConfigOrigin, ConfigSource, Error, Result};

use crate::config::{FileBackendConfig, setting};
use crate::index::Index;
use crate::lock::Locks;
use crate::name::Name;
use crate::scan;
use crate::store::{self, Found, Store};

/// Longest a write waits for the start's scan before it evicts: a scan
/// of a very large directory on a slow disk must not stall writes.
const FIRST_SCAN_WAIT: Duration = Duration::from_secs(10);

/// Victims whose file another process used since this one last did are
/// put back at most this many times per write; then the next is evicted
/// anyway, so a write's eviction work stays bounded.
const MAX_SECOND_CHANCES: usize = 8;

/// A persistent cache in a local directory, shared by the processes of one
/// host: one file per entry, written atomically, bounded by least-recently-
/// used eviction, with TTL inspection, touch, and locks across processes.
///
/// Every file operation runs on tokio's blocking threads
/// (`spawn_blocking`), never on the executor's. An operation whose future
/// is dropped still finishes there: a set lands whole or not at all, and
/// a lock taken for a dropped `try_lock` is released at once.
/// Clones share the directory and its index.
#[derive(Debug, Clone)]
pub struct FileBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: FileBackendConfig,
    store: Store,
    index: Index,
    capabilities: Capabilities,
}

impl FileBackend {
    /// The backend's name, as in `CACHEKIT_BACKEND=file`.
    pub const NAME: &'static str = "file";

    /// What the backend declares, but for `max_value_size`, which is the
    /// configured one (or `max_size`, when lower).
    pub const CAPABILITIES: Capabilities = Capabilities {
        ttl: true,
        ttl_inspect: true,
        touch: true,
        lock: true,
        persistent: true,
        // Processes of one host: the directory is local.
        shared: true,
        max_ttl: None,
        max_value_size: None,
        max_key_len: MAX_KEY_LEN,
    };

    /// A backend for `config`, validated, over its directory: created
    /// (mode 0700) if missing, refused if it is a symbolic link or another
    /// user's. These checks, and the removal of temp files that writers
    /// killed mid-write left (one listing of the directory's names), run
    /// here, at once, so that a bad directory is an error of the
    /// constructor and no orphan outlives it; the scan of the existing
    /// entries runs on a thread of its own.
    pub fn new(config: FileBackendConfig) -> Result<Self> {
        Self::open(config, |_| ConfigOrigin::Code)
    }

    /// A backend configured by `CACHEKIT_FILE_*` over `cachekit.toml`'s
    /// `[file]` over the defaults.
    pub fn from_env() -> Result<Self> {
        Self::from_config(&ConfigSource::from_process()?)
    }

    /// A backend configured by `source`.
    pub fn from_config(source: &ConfigSource) -> Result<Self> {
        let config = FileBackendConfig::from_source(source)?;
        Self::open(config, |field| source.origin(setting(field)))
    }

    fn open(config: FileBackendConfig, origin: impl Fn(&str) -> ConfigOrigin) -> Result<Self> {
        config.validate_with(&origin)?;
        let dirs = crate::dir::open(&config.cache_dir).map_err(|reason| Error::Config {
            setting: "file.cache_dir".into(),
            origin: origin("cache_dir"),
            reason,
        })?;
        let limit = config.value_limit();
        let max_value_size = usize::try_from(limit).unwrap_or(usize::MAX);
        let inner = Arc::new(Inner {
            store: Store::new(dirs, config.fsync, limit),
            index: Index::new(config.max_entries, config.max_size),
            capabilities: Capabilities {
                max_value_size: Some(max_value_size),
                ..Self::CAPABILITIES
            },
            config,
        });
        let orphans = scan::remove_orphans(&inner.store).map_err(|error| Error::Config {
            setting: "file.cache_dir".into(),
            origin: origin("cache_dir"),
            reason: format!("cannot list {}: {error}", inner.store.path().display()),
        })?;
        if orphans > 0 {
            tracing::info!(
                dir = %inner.store.path().display(),
                orphans,
                "cachekit removed temp files of writers that died mid-write"
            );
        }
        Inner::start_scan(&inner);
        Ok(FileBackend { inner })
    }

    /// The configuration in use.
    pub fn config(&self) -> &FileBackendConfig {
        &self.inner.config
    }

    /// Runs `operation` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Arc<Inner>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || operation(&inner))
            .await
            .map_err(|error| {
                Error::unavailable(Self::NAME, format!("a file operation failed: {error}"))
            })?
    }

    fn check_key(&self, key: &str) -> Result<()> {
        validate_key(key, MAX_KEY_LEN)
    }
}

impl Inner {
    fn locks(&self) -> Locks<'_> {
        Locks {
            store: &self.store,
            timeout: self.config.lock_timeout,
        }
    }

    /// Starts a scan on a thread of its own, if one is due.
    fn start_scan(inner: &Arc<Inner>) {
        if !inner.index.wants_scan() {
            return;
        }
        let mark = inner.index.scan_mark();
        let scanning = Arc::clone(inner);
        let started = std::thread::Builder::new()
            .name("cachekit-file-scan".into())
            .spawn(move || scanning.scan(mark));
        if let Err(error) = started {
            inner.index.scan_failed();
            tracing::warn!(%error, "cannot start the scan of the file cache; it runs after a later write");
        }
    }

    /// Lists the directory, takes in what it holds, and evicts down to the limits.
    fn scan(&self, mark: u64) {
        match scan::scan(&self.store) {
            Ok(found) => {
                if found.orphans > 0 || found.expired > 0 {
                    tracing::info!(
                        dir = %self.store.path().display(),
                        orphans = found.orphans,
                        expired = found.expired,
                        "cachekit's scan removed expired entries and temp files of writers that died mid-write"
                    );
                }
                self.index.merge(mark, found.entries);
                self.evict();
                let stale = self.locks().sweep();
                if stale > 0 {
                    tracing::info!(
                        dir = %self.store.path().display(),
                        stale,
                        "cachekit's scan removed locks whose holders never released them"
                    );
                }
            }
            Err(error) => {
                self.index.scan_failed();
                tracing::warn!(dir = %self.store.path().display(), %error, "cannot list the file cache");
            }
        }
    }

    /// Evicts least-recently-used entries until the index is within its
    /// limits. A victim another process used more recently than this one
    /// knows is put back with that use instead, a bounded number of times.
    fn evict(&self) {
        let mut chances = 0;
        while let Some((name, size, used)) = self.index.pop_victim() {
            if chances < MAX_SECOND_CHANCES {
                if let Some(elsewhere) = self.store.last_used(&name) {
                    // The second's margin: this process's own reads refresh
                    // access times up to a second late.
                    if elsewhere > used + 1_000_000 {
                        chances += 1;
                        self.index.restore(name, size, elsewhere);
                        continue;
                    }
                }
            }
            if let Err(error) = self.store.remove(&name) {
                tracing::warn!(%error, "cannot evict a file cache entry");
            }
        }
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let name = Name::of(key);
        match self.store.get(&name, key)? {
            Found::Hit(value, size) => {
                self.index.used(name, size);
                Ok(Some(value))
            }
            Found::Removed => {
                self.index.removed(&name);
                Ok(None)
            }
            Found::Missing => Ok(None),
        }
    }

    fn set(self: &Arc<Self>, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let name = Name::of(key);
        let size = self.store.write(&name, key, value, store::expiry_ms(ttl))?;
        self.index.wait_first_scan(FIRST_SCAN_WAIT);
        self.index.written(name, size);
        self.evict();
        Inner::start_scan(self);
        Ok(())
    }

    fn header(&self, key: &str) -> Result<Option<u64>> {
        let name = Name::of(key);
        match self.store.header(&name, key, false)? {
            Found::Hit((_, header), _) => Ok(Some(header.expiry_ms)),
            Found::Removed => {
                self.index.removed(&name);
                Ok(None)
            }
            Found::Missing => Ok(None),
        }
    }
}

#[async_trait]
impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        let key = key.to_owned();
        self.blocking(move |inner| inner.get(&key)).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.check_key(key)?;
        let limit = self.inner.config.value_limit();
        if value.len() as u64 > limit {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            });
        }
        let key = key.to_owned();
        self.blocking(move |inner| inner.set(&key, &value, ttl))
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let name = Name::of(key);
        self.blocking(move |inner| {
            let removed = inner.store.remove(&name)?;
            inner.index.removed(&name);
            Ok(removed)
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let key = key.to_owned();
        self.blocking(move |inner| Ok(inner.header(&key)?.is_some()))
            .await
    }

    /// The directory is there (made again if it was removed, as a write
    /// would) and can be read. No domains: the directory is the backend's
    /// one failure domain, and its path is in the error when it fails.
    async fn health(&self) -> Result<Health> {
        let started = std::time::Instant::now();
        self.blocking(|inner| {
            // A removed directory is made again, as a write would.
            let dirs = inner.store.dirs();
            inner.store.reopen(&dirs)?;
            rustix::fs::fstat(&inner.store.dirs().entries)
                .map_err(|errno| crate::errors::io("health", inner.store.path(), errno.into()))?;
            Ok(())
        })
        .await?;
        Ok(Health::new(Self::NAME).with_latency(started.elapsed()))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        for key in keys {
            self.check_key(key)?;
        }
        let keys: Vec<String> = keys.iter().map(|&key| key.to_owned()).collect();
        self.blocking(move |inner| keys.iter().map(|key| inner.get(key)).collect())
            .await
    }

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
impl TtlInspect for FileBackend {
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.check_key(key)?;
        let key = key.to_owned();
        let expiry = self.blocking(move |inner| inner.header(&key)).await?;
        Ok(match expiry {
            None => KeyTtl::Missing,
            Some(0) => KeyTtl::Forever,
            Some(at) => {
                let now = store::unix_ms(std::time::SystemTime::now());
                KeyTtl::Expires(Duration::from_millis(at.saturating_sub(now)))
            }
        })
    }
}

#[async_trait]
impl Touch for FileBackend {
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.check_key(key)?;
        let key = key.to_owned();
        let name = Name::of(&key);
        self.blocking(move |inner| {
            let touched = inner.store.touch(&name, &key, store::expiry_ms(ttl))?;
            if !touched {
                inner.index.removed(&name);
            }
            Ok(touched)
        })
        .await
    }
}

#[async_trait]
impl Lock for FileBackend {
    async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>> {
        self.check_key(key)?;
        let key = key.to_owned();
        let inner = Arc::clone(&self.inner);
        // The token travels back in a guard: if this future is dropped
        // before it arrives, the guard releases the lock wherever it is
        // dropped (on the blocking thread, or in the channel).
        let (deliver, taken) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let outcome = inner.locks().try_lock(&key, lease).map(|token| {
                token.map(|token| Pending {
                    inner: Arc::clone(&inner),
                    key,
                    token: Some(token),
                })
            });
            let _ = deliver.send(outcome);
        });
        let outcome = taken
            .await
            .map_err(|_| Error::unavailable(Self::NAME, "a file lock operation failed"))?;
        Ok(outcome?.map(Pending::take))
    }

    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool> {
        self.check_key(key)?;
        let (key, token) = (key.to_owned(), token.clone());
        self.blocking(move |inner| inner.locks().unlock(&key, &token))
            .await
    }

    async fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool> {
        self.check_key(key)?;
        let (key, token) = (key.to_owned(), token.clone());
        self.blocking(move |inner| inner.locks().extend(&key, &token, lease))
            .await
    }
}

/// A lock taken for a `try_lock` whose caller may be gone: released on
/// drop unless [`Pending::take`]n.
struct Pending {
    inner: Arc<Inner>,
    key: String,
    token: Option<LockToken>,
}

impl Pending {
    fn take(mut self) -> LockToken {
        self.token.take().expect("taken once")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let (inner, key) = (Arc::clone(&self.inner), std::mem::take(&mut self.key));
        let release = move || {
            if let Err(error) = inner.locks().unlock(&key, &token) {
                tracing::warn!(%error, "cannot release the file lock of a dropped try_lock; it expires with its lease");
            }
        };
        // Off the executor's threads when dropped on one.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}
