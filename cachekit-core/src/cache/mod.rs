//! The `Cache` handle: typed reads and writes, cache-aside with single-flight
//! and the backend lock, capability-checked lock/ttl/touch, and graceful
//! degradation when the backend fails.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{CORE_SETTINGS, ConfigSource, CoreSettings};
use crate::flight::{Flights, Joined};
use crate::l1::L1;
use crate::reliability::Guard;
use crate::resolve::{self, ResolvedFrom};
use crate::stats::Counters;
use crate::{
    Backend, CacheStats, Capabilities, Capability, Error, KeyTtl, L1Config, Lock, LockGuard,
    LockToken, MemoryBackend, ReliabilityConfig, Result, codec, key,
};

/// First pause between reads while another process holds the load lock.
const LOCK_POLL_START: Duration = Duration::from_millis(5);
/// Longest pause between those reads.
const LOCK_POLL_MAX: Duration = Duration::from_millis(100);

/// A cache: a namespace over a backend, with an optional in-process L1 tier.
///
/// Cheap to clone; clones share everything. Keys given to it are turned into
/// safe backend keys (see [`key`](crate::key)), so any string is a valid key.
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn Backend>,
    capabilities: Capabilities,
    namespace: String,
    /// The namespace part of every key.
    prefix: key::Prefix,
    max_key_len: usize,
    default_ttl: Option<Duration>,
    l1: Option<L1>,
    flights: Flights,
    guard: Guard,
    lock_lease: Duration,
    counters: Counters,
    said_no_lock: AtomicBool,
}

impl Cache {
    /// Starts building a cache.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The backend under this cache.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// What the backend can do.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    /// The namespace, the first part of every key.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Counters since the cache was built.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// The backend key for `key` in this cache's namespace.
    pub fn backend_key(&self, key: &str) -> String {
        self.key(key).to_string()
    }

    /// [`Cache::backend_key`], held inline.
    pub(crate) fn key(&self, key: &str) -> key::Built {
        self.inner.prefix.build(key, self.inner.max_key_len)
    }

    /// The backend key for the call of cached function `function` whose
    /// arguments part is `args` (the key of [`key::for_call`] in this cache).
    pub(crate) fn call_key(&self, function: &str, args: &str) -> key::Built {
        self.inner
            .prefix
            .build_call(function, args, self.inner.max_key_len)
    }

    /// The value under `key`, or `None` on a miss. Unreadable bytes (corrupt,
    /// another type, an older format) are a miss and a warning.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let key = self.key(key);
        Ok(self
            .read(&key)
            .await?
            .and_then(|payload| self.decode(&key, &payload)))
    }

    /// Stores `value` under `key` for `ttl` (`None`: the cache's default TTL;
    /// `Some(Duration::ZERO)`: no expiry). TTLs beyond the backend's maximum
    /// are clamped to it.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let key = self.key(key);
        let ttl = self.effective_ttl(ttl)?;
        let bytes = codec::encode(value, expiry(ttl))?;
        self.write(&key, bytes, ttl).await
    }

    /// Removes `key`; `true` if the backend had it.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.remove(&self.key(key)).await
    }

    /// Whether `key` is present.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        let key = self.key(key);
        if self
            .inner
            .l1
            .as_ref()
            .is_some_and(|l1| l1.contains(key.as_str()))
        {
            return Ok(true);
        }
        self.call("exists", self.inner.backend.exists(&key)).await
    }

    /// The value under `key`, or else the value of `loader`, stored for `ttl`
    /// (as in [`Cache::set`]). Concurrent misses on one key in this process
    /// run `loader` once; when the backend has a lock, processes sharing it
    /// run it once too. Backend trouble never reaches the caller: the
    /// loader's value is returned, uncached if need be.
    pub async fn get_or_insert_with<T, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> T
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let result: Result<T, Infallible> = self
            .try_get_or_insert_with(key, ttl, || async { Ok(loader().await) })
            .await;
        match result {
            Ok(value) => value,
        }
    }

    /// [`Cache::get_or_insert_with`] for a fallible loader: only `Ok` values
    /// are stored; an `Err` is returned to this caller, and callers waiting
    /// on the same key run the loader themselves.
    pub async fn try_get_or_insert_with<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = self.key(key);
        Ok(self.fetch(&key, ttl, loader).await?.value)
    }

    /// [`Cache::try_get_or_insert_with`] for a built backend key, telling
    /// also how big the entry is and when it expires, for a tier in front of
    /// this cache (cached functions keep decoded results in one).
    pub(crate) async fn fetch<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let ttl = match self.effective_ttl(ttl) {
            Ok(ttl) => ttl,
            Err(error) => {
                tracing::warn!(%key, %error, "running uncached");
                return Ok(Fetched::uncached(loader().await?));
            }
        };
        let mut backend_ok = true;
        match self.read_entry(key).await {
            Ok(Some((payload, expires_at))) => {
                if let Some(value) = self.decode(key, &payload) {
                    return Ok(Fetched {
                        value,
                        size: payload.len(),
                        expires_at,
                    });
                }
            }
            Ok(None) => {}
            Err(error) => {
                backend_ok = false;
                tracing::warn!(%key, %error, "backend read failed: running the loader uncached");
            }
        }
        // Boxed: loading makes a large future, which would otherwise make
        // the future of every call large, hits included (costlier to move).
        Box::pin(self.load_shared(key, ttl, backend_ok, loader)).await
    }

    /// Loads a miss for [`Cache::fetch`]: once per key in this process at a
    /// time (single-flight), a follower decoding the leader's payload.
    async fn load_shared<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        backend_ok: bool,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut loaded: Option<T> = None;
        let run = || async {
            let (value, payload) = self.load(key, ttl, backend_ok, loader).await?;
            loaded = Some(value);
            payload.ok_or(LoadError::Unshared)
        };
        // A loaded value is as fresh as this process made it; its size is 0
        // (not to be kept in front) when it could not be encoded.
        let fresh = |value: T, payload: Option<&Bytes>| Fetched {
            value,
            size: payload.map_or(0, Bytes::len),
            expires_at: expiry(ttl),
        };
        match self.inner.flights.join(key, run).await {
            Joined::Led(Err(LoadError::Loader(error))) => Err(error),
            Joined::Led(payload) => Ok(fresh(
                loaded.expect("a leader that did not fail loaded a value"),
                payload.as_ref().ok(),
            )),
            Joined::Followed(payload, run) => {
                if let Some(value) = self.decode(key, &payload) {
                    return Ok(fresh(value, Some(&payload)));
                }
                // Another caller in this process stored a different type under
                // this key: load for this caller's type.
                match run().await {
                    Err(LoadError::Loader(error)) => Err(error),
                    _ => Ok(fresh(
                        loaded.expect("a load that did not fail loaded a value"),
                        None,
                    )),
                }
            }
        }
    }

    /// Encodes `value` and stores it under the built `key` for `ttl` (as in
    /// [`Cache::set`]); returns the encoded size and the expiry. The value is
    /// encoded before the future is returned, so the future does not borrow
    /// it (and is `Send` whatever the value).
    pub(crate) fn store<'a, T: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        value: &T,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(usize, Option<SystemTime>)>> + use<'a, T> {
        let encoded = self.effective_ttl(ttl).and_then(|ttl| {
            let expires_at = expiry(ttl);
            Ok((codec::encode(value, expires_at)?, ttl, expires_at))
        });
        async move {
            let (bytes, ttl, expires_at) = encoded?;
            let size = bytes.len() - codec::HEADER_LEN;
            self.write(key, bytes, ttl).await?;
            Ok((size, expires_at))
        }
    }

    /// Removes the built `key` from L1 and the backend; `true` if the backend had it.
    pub(crate) async fn remove(&self, key: &str) -> Result<bool> {
        self.forget_l1(key);
        let result = self.call("delete", self.inner.backend.delete(key)).await;
        self.forget_l1(key);
        result
    }

    /// Takes the backend lock on `key` for `lease`.
    ///
    /// [`Error::Unsupported`] on a backend without locking (Memcached);
    /// [`Error::LockContended`] if another holder has it.
    pub async fn lock(&self, key: &str, lease: Duration) -> Result<LockGuard> {
        let lock = self
            .inner
            .backend
            .as_lock()
            .ok_or(self.unsupported(Capability::Lock))?;
        let key = key::lock_key(&self.key(key));
        match self.call("lock", lock.try_lock(&key, lease)).await? {
            Some(token) => Ok(LockGuard::new(Arc::clone(&self.inner.backend), key, token)),
            None => Err(Error::LockContended { key }),
        }
    }

    /// The remaining lifetime of `key`; [`Error::Unsupported`] on a backend
    /// without TTL inspection (Memcached).
    pub async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let inspect = self
            .inner
            .backend
            .as_ttl_inspect()
            .ok_or(self.unsupported(Capability::TtlInspect))?;
        let key = self.key(key);
        self.call("ttl", inspect.ttl(&key)).await
    }

    /// Sets the TTL of `key` without rewriting it (`None`: the default TTL,
    /// `Some(Duration::ZERO)`: no expiry); `false` if the key is not there.
    /// [`Error::Unsupported`] on a backend without touch.
    pub async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let touch = self
            .inner
            .backend
            .as_touch()
            .ok_or(self.unsupported(Capability::Touch))?;
        let key = self.key(key);
        let ttl = self.effective_ttl(ttl)?;
        // The L1 copy may be bound by the old, longer lifetime.
        self.forget_l1(&key);
        self.call("touch", touch.touch(&key, ttl)).await
    }

    /// Looks in L1, then the backend; returns the verified payload.
    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.read_entry(key).await?.map(|(payload, _)| payload))
    }

    /// [`Cache::read`], with the expiry recorded in the entry's envelope
    /// (`None` for no expiry, and for an L1 copy, which L1 bounds itself).
    async fn read_entry(&self, key: &str) -> Result<Option<(Bytes, Option<SystemTime>)>> {
        let counters = &self.inner.counters;
        if let Some(payload) = self.inner.l1.as_ref().and_then(|l1| l1.get(key)) {
            Counters::bump(&counters.l1_hits);
            return Ok(Some((payload, None)));
        }
        let Some(bytes) = self.call("get", self.inner.backend.get(key)).await? else {
            Counters::bump(&counters.misses);
            return Ok(None);
        };
        match codec::open(bytes) {
            Ok(opened) => {
                Counters::bump(&counters.l2_hits);
                if let Some(l1) = &self.inner.l1 {
                    l1.insert(key, opened.payload.clone(), opened.expires_at);
                }
                Ok(Some((opened.payload, opened.expires_at)))
            }
            Err(error) => {
                Counters::bump(&counters.misses);
                tracing::warn!(%key, %error, "unreadable cache entry treated as a miss");
                Ok(None)
            }
        }
    }

    /// Decodes a payload; a payload of another type is a miss and a warning.
    fn decode<T: DeserializeOwned>(&self, key: &str, payload: &[u8]) -> Option<T> {
        match codec::decode_payload(payload) {
            Ok(value) => Some(value),
            Err(error) => {
                self.forget_l1(key);
                tracing::warn!(%key, %error, "cache entry does not decode as the requested type: treated as a miss");
                None
            }
        }
    }

    /// Checks the size and writes an envelope to the backend and L1.
    async fn write(&self, key: &str, bytes: Bytes, ttl: Option<Duration>) -> Result<()> {
        if let Some(limit) = self.inner.capabilities.max_value_size {
            if bytes.len() > limit {
                return Err(Error::ValueTooLarge {
                    size: bytes.len(),
                    limit,
                });
            }
        }
        self.forget_l1(key);
        self.call("set", self.inner.backend.set(key, bytes.clone(), ttl))
            .await?;
        if let Some(l1) = &self.inner.l1 {
            l1.insert(key, bytes.slice(codec::HEADER_LEN..), expiry(ttl));
        }
        Ok(())
    }

    /// Runs the loader for a miss (under the backend lock when there is one)
    /// and stores its value. Returns the value and its payload, if it encodes.
    async fn load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        backend_ok: bool,
        loader: F,
    ) -> Result<(T, Option<Bytes>), LoadError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let lock = self.inner.backend.as_lock();
        if lock.is_none() && !self.inner.said_no_lock.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                backend = self.inner.backend.name(),
                "backend has no lock: misses are de-duplicated by in-process single-flight only"
            );
        }
        let mut held = None;
        if let (true, Some(lock)) = (backend_ok, lock) {
            match self.acquire_load_lock(lock, key).await {
                LoadLock::Held(lock) => held = Some(lock),
                LoadLock::FilledByOther(payload) => {
                    if let Some(value) = self.decode(key, &payload) {
                        return Ok((value, Some(payload)));
                    }
                }
                LoadLock::Unavailable => {}
            }
        }
        Counters::bump(&self.inner.counters.loads);
        let value = match loader().await {
            Ok(value) => value,
            Err(error) => {
                self.release_load_lock(held).await;
                return Err(LoadError::Loader(error));
            }
        };
        let payload = match codec::encode(&value, expiry(ttl)) {
            Ok(bytes) => {
                if backend_ok {
                    if let Err(error) = self.write(key, bytes.clone(), ttl).await {
                        tracing::warn!(%key, %error, "storing a loaded value failed: returned uncached");
                    }
                }
                Some(bytes.slice(codec::HEADER_LEN..))
            }
            Err(error) => {
                tracing::warn!(%key, %error, "loaded value cannot be encoded: returned uncached");
                None
            }
        };
        self.release_load_lock(held).await;
        Ok((value, payload))
    }

    /// Takes the backend lock for loading `key`, or waits for the process
    /// holding it to store the value, for at most the lock lease.
    async fn acquire_load_lock<'l>(&self, lock: &'l dyn Lock, key: &str) -> LoadLock<'l> {
        let lock_key = key::lock_key(key);
        let deadline = tokio::time::Instant::now() + self.inner.lock_lease;
        let mut pause = LOCK_POLL_START;
        loop {
            match self
                .call("lock", lock.try_lock(&lock_key, self.inner.lock_lease))
                .await
            {
                Ok(Some(token)) => {
                    // Another process may have stored the value between our miss and now.
                    return match self.read(key).await {
                        Ok(Some(payload)) => {
                            let _ = self.call("unlock", lock.unlock(&lock_key, &token)).await;
                            LoadLock::FilledByOther(payload)
                        }
                        _ => LoadLock::Held(HeldLock {
                            lock,
                            key: lock_key,
                            token,
                        }),
                    };
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%key, %error, "taking the load lock failed: loading without it");
                    return LoadLock::Unavailable;
                }
            }
            if tokio::time::Instant::now() + pause >= deadline {
                tracing::warn!(%key, "the load lock holder did not finish within its lease: loading anyway");
                return LoadLock::Unavailable;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
            if let Ok(Some(payload)) = self.read(key).await {
                return LoadLock::FilledByOther(payload);
            }
        }
    }

    async fn release_load_lock(&self, held: Option<HeldLock<'_>>) {
        let Some(HeldLock { lock, key, token }) = held else {
            return;
        };
        if let Err(error) = self.call("unlock", lock.unlock(&key, &token)).await {
            tracing::warn!(%key, %error, "releasing the load lock failed: it ends with its lease");
        }
    }

    /// Runs a backend operation under the timeout and breaker, counting failures.
    async fn call<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = self.inner.guard.call(operation, future).await;
        if result.is_err() {
            Counters::bump(&self.inner.counters.errors);
        }
        result
    }

    fn forget_l1(&self, key: &str) {
        if let Some(l1) = &self.inner.l1 {
            l1.remove(key);
        }
    }

    /// `ttl`, or the default, clamped to the backend's maximum; zero means none.
    fn effective_ttl(&self, ttl: Option<Duration>) -> Result<Option<Duration>> {
        let ttl = self
            .inner
            .capabilities
            .clamp_ttl(ttl.or(self.inner.default_ttl));
        if ttl.is_some() && !self.inner.capabilities.ttl {
            return Err(self.unsupported(Capability::Ttl));
        }
        Ok(ttl)
    }

    fn unsupported(&self, capability: Capability) -> Error {
        Error::Unsupported {
            backend: self.inner.backend.name(),
            capability,
        }
    }
}

/// A value read or loaded by [`Cache::fetch`], with what a tier in front of
/// the cache needs to keep a copy.
pub(crate) struct Fetched<T> {
    pub(crate) value: T,
    /// Bytes of the encoded payload; 0 when the value was not stored.
    pub(crate) size: usize,
    /// When the entry expires, as far as this process knows.
    pub(crate) expires_at: Option<SystemTime>,
}

impl<T> Fetched<T> {
    /// A value that was not stored: nothing to keep a copy of.
    fn uncached(value: T) -> Self {
        Fetched {
            value,
            size: 0,
            expires_at: None,
        }
    }
}

/// Why a single-flight load produced nothing to share.
enum LoadError<E> {
    /// The loader failed; its error.
    Loader(E),
    /// The value could not be encoded: the leader returns it, others load again.
    Unshared,
}

/// The outcome of asking for the backend's load lock.
enum LoadLock<'l> {
    /// This process loads, and releases the lock after.
    Held(HeldLock<'l>),
    /// Another process stored the value meanwhile.
    FilledByOther(Bytes),
    /// No lock to be had: load without one.
    Unavailable,
}

/// A load lock this process holds.
struct HeldLock<'l> {
    lock: &'l dyn Lock,
    key: String,
    token: LockToken,
}

fn expiry(ttl: Option<Duration>) -> Option<SystemTime> {
    ttl.map(|ttl| SystemTime::now() + ttl)
}

/// Builds a [`Cache`]. Unset options come from the configuration
/// ([`ConfigSource::from_process`]): `CACHEKIT_*` variables, `cachekit.toml`
/// and the defaults.
#[derive(Debug, Default)]
#[must_use]
pub struct CacheBuilder {
    backend: Option<Arc<dyn Backend>>,
    namespace: Option<String>,
    default_ttl: Option<Duration>,
    l1: Option<Option<L1Config>>,
    reliability: Option<ReliabilityConfig>,
    lock_lease: Option<Duration>,
    config: Option<ConfigSource>,
}

impl CacheBuilder {
    /// Stores entries in `backend`, ahead of the process default and the environment.
    pub fn backend(self, backend: impl Backend + 'static) -> Self {
        self.shared_backend(Arc::new(backend))
    }

    /// Like [`CacheBuilder::backend`], for a backend shared with other caches.
    pub fn shared_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The first part of every key (default: the `namespace` setting, `cachekit`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// TTL for entries stored without one; zero means no expiry.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Limits of the in-process L1 tier.
    pub fn l1(mut self, config: L1Config) -> Self {
        self.l1 = Some(Some(config));
        self
    }

    /// No L1 tier: every read goes to the backend.
    pub fn without_l1(mut self) -> Self {
        self.l1 = Some(None);
        self
    }

    /// Timeouts and circuit breaker.
    pub fn reliability(mut self, config: ReliabilityConfig) -> Self {
        self.reliability = Some(config);
        self
    }

    /// Lease of the backend lock taken while loading a miss (default 30 s):
    /// how long other processes wait for this one before loading themselves.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = Some(lease);
        self
    }

    /// Reads unset options from `config` instead of this process's environment and file.
    pub fn config(mut self, config: ConfigSource) -> Self {
        self.config = Some(config);
        self
    }

    /// Builds the cache, resolving the backend if none was given (see [`resolve`]).
    pub fn build(self) -> Result<Cache> {
        let config = match self.config {
            Some(config) => config,
            None => ConfigSource::from_process()?,
        };
        let settings: CoreSettings = config.extract(None, CORE_SETTINGS)?;
        let resolved = resolve::resolve(self.backend, &config)?;
        let in_process_only = resolved.from != ResolvedFrom::Explicit
            && resolved.backend.name() == MemoryBackend::NAME;
        let l1 = match self.l1 {
            Some(l1) => l1,
            // An L1 in front of in-process memory would only hold a second copy.
            None if in_process_only || settings.l1_max_entries == 0 => None,
            None => Some(L1Config {
                max_entries: settings.l1_max_entries,
                max_bytes: settings.l1_max_bytes,
                max_ttl: settings.l1_ttl,
            }),
        };
        let reliability = self.reliability.unwrap_or(ReliabilityConfig {
            operation_timeout: settings.operation_timeout,
            ..ReliabilityConfig::default()
        });
        let backend = resolved.backend;
        let capabilities = backend.capabilities();
        let backend_key_len = capabilities.max_key_len.min(key::MAX_KEY_LEN);
        if backend_key_len < key::MIN_BACKEND_KEY_LEN {
            return Err(Error::Config {
                setting: "max_key_len".into(),
                origin: crate::ConfigOrigin::Code,
                reason: format!(
                    "the {} backend allows keys of {backend_key_len} bytes; cachekit needs at least {} (shorten the key prefix)",
                    backend.name(),
                    key::MIN_BACKEND_KEY_LEN
                ),
            });
        }
        let default_ttl = self
            .default_ttl
            .or(Some(settings.default_ttl))
            .filter(|ttl| !ttl.is_zero());
        let namespace = self.namespace.unwrap_or(settings.namespace);
        Ok(Cache {
            inner: Arc::new(Inner {
                guard: Guard::new(backend.name(), reliability, backend.operation_timeout()),
                capabilities,
                prefix: key::Prefix::new(&namespace),
                namespace,
                max_key_len: backend_key_len - key::LOCK_MARK.len(),
                default_ttl,
                l1: l1.map(L1::new),
                flights: Flights::default(),
                lock_lease: self.lock_lease.unwrap_or(Duration::from_secs(30)),
                counters: Counters::default(),
                said_no_lock: AtomicBool::new(false),
                backend,
            }),
        })
    }
}
