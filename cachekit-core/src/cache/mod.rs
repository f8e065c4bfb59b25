//! The `Cache` handle: typed reads and writes, cache-aside with single-flight
//! and the backend lock (`load`), capability-checked lock/ttl/touch, and
//! graceful degradation when the backend fails.

mod batch;
mod builder;
mod encrypting;
mod jitter;
mod load;
mod lock;
mod revalidate;
mod tags;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::flight::Flights;
use crate::l1::L1;
use crate::layer::Reliable;
use crate::stats::Counters;
use crate::{
    Backend, CacheStats, Capabilities, Capability, Error, KeyTtl, Result, codec, key, trace,
};
pub use builder::CacheBuilder;
pub use encrypting::{ENCRYPTION_SETTINGS, EncryptionSettings};
pub(crate) use jitter::MAX_TTL_JITTER;
pub(crate) use load::{Fetched, IsNegative, Lifetime, RunsIn};
use revalidate::Refreshing;
pub use revalidate::Revalidate;
pub(crate) use wire::{Format, Seal, Wire};

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
    /// The backend behind its reliability layer, shared with every cache
    /// over the same backend (one breaker, one deadline, one throttle of
    /// warnings).
    layer: Arc<Reliable>,
    /// The same, as users see it.
    backend: Arc<dyn Backend>,
    capabilities: Capabilities,
    namespace: String,
    /// The namespace part of every key, and the longest key.
    prefix: key::Prefix,
    /// The same without the version: the namespace part of tags' keys.
    tag_prefix: key::Prefix,
    default_ttl: Option<Duration>,
    /// The spread of every TTL written, in percent (see [`jitter`]).
    ttl_jitter: u32,
    /// In an `Arc` for the task that applies the backend's notices to it
    /// (see [`Backend::invalidations`]).
    l1: Option<Arc<L1>>,
    flights: Flights,
    lock_lease: Duration,
    counters: Arc<Counters>,
    /// Whether the backend's lack of a lock was logged.
    said_no_lock: AtomicBool,
    /// The keys being refreshed in the background (see [`Revalidate`]).
    refreshing: Refreshing,
    /// The format of entries, and their encryption.
    wire: Wire,
}

/// A value found in L1 or the backend, decoded.
struct Found<T> {
    value: T,
    /// Bytes of its payload.
    size: usize,
    /// The backend's entry it was read from; `None` for an L1 copy (fresh:
    /// L1 keeps copies until their fresh time at most).
    seen: Option<codec::Opened>,
}

impl Cache {
    /// Starts building a cache.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The backend under this cache, behind its reliability layer (see
    /// [`ReliabilityLayer`](crate::ReliabilityLayer)).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The backend itself, under the layer: operations on it go through
    /// [`Cache::call`].
    fn raw(&self) -> &dyn Backend {
        &**self.inner.layer.inner()
    }

    /// What the backend can do.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    /// The namespace, the first part of every key.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Counters since the cache was built (see [`CacheStats`] for what each counts).
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// The backend key for `key` in this cache's namespace.
    pub fn backend_key(&self, key: &str) -> String {
        self.key(key).to_string()
    }

    /// [`Cache::backend_key`], held inline.
    pub(crate) fn key(&self, key: &str) -> key::Built {
        let built = self.inner.prefix.build(key);
        if self.inner.wire.format == Format::Interop
            && built.len() != self.inner.namespace.len() + 1 + key.len()
        {
            self.warn(|suppressed| {
                tracing::warn!(%key, suppressed, "an interop key that cannot be sent as it is (too long, or not printable ASCII without spaces) is hashed: other languages will not find its entry");
            });
        }
        built
    }

    /// The backend key for the call of cached function `function` whose
    /// arguments part is `args` (the key of [`key::for_call`] in this cache).
    pub(crate) fn call_key(&self, function: &str, args: &str) -> key::Built {
        self.inner.prefix.build_call(function, args)
    }

    /// The value under `key`, or `None` on a miss. Unreadable bytes (corrupt,
    /// another type, an older format) are a miss and a warning.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let key = self.key(key);
        let span = self.span("get", &key);
        // L1 first, outside any future: a hit builds and moves no wrapper.
        let l1 = || self.lookup_l1(&key).map(|found| self.counted(found));
        if let Some(found) = trace::first_step(&span, l1) {
            return Ok(found);
        }
        trace::traced(span, async {
            Ok(self.counted(self.lookup_backend(&key, 0.0).await?))
        })
        .await
    }

    /// What `get` returns of `found`, counted as a miss if none.
    fn counted<T>(&self, found: Option<Found<T>>) -> Option<T> {
        if found.is_none() {
            self.inner.counters.misses.bump();
            trace::outcome("miss");
        }
        found.map(|found| found.value)
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
        let bytes = self.encode(value, expiry(ttl))?;
        let write = self.write(&key, bytes, ttl, expiry(ttl));
        trace::traced_result(self.span("set", &key), write).await
    }

    /// Removes `key`; `true` if the backend had it.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let key = self.key(key);
        trace::traced_result(self.span("delete", &key), self.remove(&key)).await
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
        let exists = self.call("exists", &key, true, || self.raw().exists(&key));
        trace::traced_result(self.span("exists", &key), exists).await
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
        never_fails(
            self.try_get_or_insert_with(key, ttl, || async { Ok(loader().await) })
                .await,
        )
    }

    /// [`Cache::get_or_insert_with`] for an entry with `tags` (at most
    /// 32): [`Cache::invalidate_tag`] of any of them, from any process,
    /// makes it a miss. The entry is read with its tags' generations in one
    /// `get_many` and never kept in L1 (see `invalidate_tag`).
    pub async fn get_or_insert_tagged<T, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        tags: &[&str],
        loader: F,
    ) -> T
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        never_fails(
            self.try_get_or_insert_tagged(key, ttl, tags, || async { Ok(loader().await) })
                .await,
        )
    }

    /// [`Cache::get_or_insert_tagged`] for a fallible loader: only `Ok`
    /// values are stored.
    pub async fn try_get_or_insert_tagged<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        tags: &[&str],
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = self.key(key);
        let lifetime = Lifetime {
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            ..Lifetime::of(ttl)
        };
        let fetch = self.fetch(&key, lifetime, loader);
        Ok(trace::traced(self.span("get_or_insert", &key), fetch)
            .await?
            .value)
    }

    /// [`Cache::get_or_insert_with`], keeping the entry fresh as
    /// `revalidate` says: an entry past its TTL (within the stale window),
    /// or picked for early refresh, is returned at once while `loader`
    /// refreshes it in the background, once per key (see [`Revalidate`]).
    /// Callers wait for `loader` only when no entry is there at all. The
    /// background refresh is spawned on the current tokio runtime, so the
    /// loader and its future are `Send + 'static`.
    pub async fn get_or_revalidate<T, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        revalidate: Revalidate,
        loader: F,
    ) -> T
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        never_fails(
            self.try_get_or_revalidate(key, ttl, revalidate, || async { Ok(loader().await) })
                .await,
        )
    }

    /// [`Cache::get_or_revalidate`] for a fallible loader: only `Ok` values
    /// are stored. A background refresh that fails keeps the stale value,
    /// counts a load error and writes a warning.
    pub async fn try_get_or_revalidate<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        revalidate: Revalidate,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let key = self.key(key);
        let loader = move |_| loader();
        let fetch = self.fetch_revalidating(&key, Lifetime::of(ttl), revalidate, loader);
        Ok(trace::traced(self.span("get_or_revalidate", &key), fetch)
            .await?
            .value)
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
        let fetch = self.fetch(&key, Lifetime::of(ttl), loader);
        Ok(trace::traced(self.span("get_or_insert", &key), fetch)
            .await?
            .value)
    }

    /// Encodes `value` and stores it under the built `key` for `lifetime`,
    /// then for the `stale` window (as a load does), recording `load_time`
    /// and, for a tagged entry, the `generations` of its tags read before
    /// it was loaded (an error: nothing is stored);
    /// returns the encoded size and when it stops being fresh. The value is
    /// encoded before the future is returned, so the future does not borrow
    /// it (and is `Send` whatever the value).
    pub(crate) fn store<'a, T: Serialize>(
        &'a self,
        key: &'a str,
        value: &T,
        lifetime: Lifetime<T>,
        stale: Duration,
        load_time: Duration,
        generations: Result<Vec<u64>>,
    ) -> impl Future<Output = Result<(usize, Option<SystemTime>)>> + use<'a, T> {
        let encoded = self.effective_ttls(lifetime, stale).and_then(|ttls| {
            let (ttl, stamp) = ttls.stamp(self, value, load_time);
            let tagged = !ttls.into_tags().is_empty();
            let generations = if tagged { generations? } else { Vec::new() };
            let bytes = self.inner.wire.encode(value, stamp, &generations)?;
            let fresh_until = tags::copy_deadline(tagged, stamp.fresh_until());
            Ok((bytes, ttl, fresh_until))
        });
        async move {
            let (bytes, ttl, fresh_until) = encoded?;
            let size = self.inner.wire.payload_of(&bytes).len();
            self.write(key, bytes, ttl, fresh_until).await?;
            Ok((size, fresh_until))
        }
    }

    /// Removes the built `key` from L1 and the backend; `true` if the backend had it.
    pub(crate) async fn remove(&self, key: &str) -> Result<bool> {
        let _writing = self.inner.refreshing.write_starts(key);
        self.forget_l1(key);
        let result = self
            .call("delete", key, true, || self.raw().delete(key))
            .await;
        self.forget_l1(key);
        result
    }

    /// The remaining lifetime of `key`; [`Error::Unsupported`] on a backend
    /// without TTL inspection (Memcached).
    pub async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let inspect = self
            .raw()
            .as_ttl_inspect()
            .ok_or(self.unsupported(Capability::TtlInspect))?;
        let key = self.key(key);
        let ttl = self.call("ttl", &key, true, || inspect.ttl(&key));
        trace::traced_result(self.span("ttl", &key), ttl).await
    }

    /// Sets the TTL of `key` without rewriting it (`None`: the default TTL,
    /// `Some(Duration::ZERO)`: no expiry); `false` if the key is not there.
    /// [`Error::Unsupported`] on a backend without touch.
    pub async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let touch = self
            .raw()
            .as_touch()
            .ok_or(self.unsupported(Capability::Touch))?;
        let key = self.key(key);
        let ttl = self.effective_ttl(ttl)?;
        // The L1 copy may be bound by the old, longer lifetime.
        self.forget_l1(&key);
        let touched = self.call("touch", &key, true, || touch.touch(&key, ttl));
        trace::traced_result(self.span("touch", &key), touched).await
    }

    /// Looks in L1, then the backend, and decodes: counts an L1 or a backend
    /// hit, and leaves a miss for the caller to count (a caller that then
    /// shares another caller's load does not miss). Unreadable bytes are
    /// no value, and a warning.
    /// `beta`: early refresh's, which ends the copy kept in L1 early.
    async fn lookup<T: DeserializeOwned>(&self, key: &str, beta: f64) -> Result<Option<Found<T>>> {
        match self.lookup_l1(key) {
            Some(found) => Ok(found),
            None => self.lookup_backend(key, beta).await,
        }
    }

    /// [`Cache::lookup`] in L1: `None` if L1 holds no copy, else the
    /// copy's value (none if it does not decode), counted as an L1 hit.
    fn lookup_l1<T: DeserializeOwned>(&self, key: &str) -> Option<Option<Found<T>>> {
        let payload = self.inner.l1.as_ref()?.get(key)?;
        let Some(value) = self.decode(key, &payload) else {
            return Some(None);
        };
        self.inner.counters.l1_hits.bump();
        trace::outcome("l1_hit");
        Some(Some(Found {
            value,
            size: payload.len(),
            seen: None,
        }))
    }

    /// [`Cache::lookup`] in the backend, keeping what it finds in L1.
    async fn lookup_backend<T: DeserializeOwned>(
        &self,
        key: &str,
        beta: f64,
    ) -> Result<Option<Found<T>>> {
        let ticket = self.inner.l1.as_ref().map(|l1| l1.ticket());
        let Some(opened) = self.read(key).await? else {
            return Ok(None);
        };
        let Some(value) = self.decode(key, &opened.payload) else {
            return Ok(None);
        };
        self.inner.counters.l2_hits.bump();
        trace::outcome("hit");
        if let (Some(l1), Some(ticket)) = (&self.inner.l1, ticket) {
            l1.fill(
                ticket,
                key,
                opened.payload.clone(),
                revalidate::copy_until(&opened.stamp, beta),
            );
        }
        Ok(Some(Found {
            value,
            size: opened.payload.len(),
            seen: Some(opened),
        }))
    }

    /// The backend's entry under `key`, its envelope verified; an entry
    /// that is not a valid envelope is none, and a warning, and so is a
    /// tagged one (its reader does not know its tags to check them). Counts
    /// nothing but backend errors.
    async fn read(&self, key: &str) -> Result<Option<codec::Opened>> {
        Ok(self
            .read_any(key)
            .await?
            .filter(|opened| opened.tags.is_empty()))
    }

    /// [`Cache::read`], tagged entries included.
    async fn read_any(&self, key: &str) -> Result<Option<codec::Opened>> {
        let Some(bytes) = self.call("get", key, true, || self.raw().get(key)).await? else {
            return Ok(None);
        };
        self.inner.counters.bytes_read.add(bytes.len() as u64);
        self.opened(key, bytes)
    }

    /// The entry `bytes` under `key`, decrypted and its envelope verified;
    /// none, and a warning, if it is not a valid one. One that does not
    /// decrypt is none too, counted, or with `fail_closed` an
    /// [`Error::Undecryptable`].
    fn opened(&self, key: &str, bytes: Bytes) -> Result<Option<codec::Opened>> {
        match self.inner.wire.open(key, bytes) {
            Ok(Ok(opened)) => Ok(Some(opened)),
            Ok(Err(error)) => {
                self.warn(|suppressed| {
                    tracing::warn!(%key, %error, suppressed, "unreadable cache entry treated as a miss");
                });
                Ok(None)
            }
            Err(undecryptable) => {
                self.inner.counters.undecryptable.bump();
                self.warn(|suppressed| {
                    tracing::warn!(%key, suppressed, fail_closed = undecryptable.fail_closed, "cache entry does not decrypt (tampered, written unencrypted, or under a master key not configured)");
                });
                match undecryptable.fail_closed {
                    true => Err(Error::Undecryptable {
                        key: key.to_owned(),
                    }),
                    false => Ok(None),
                }
            }
        }
    }

    /// Decodes a payload; a payload of another type is no value, and a warning.
    fn decode<T: DeserializeOwned>(&self, key: &str, payload: &[u8]) -> Option<T> {
        match self.inner.wire.decode(payload) {
            Ok(value) => Some(value),
            Err(error) => {
                self.forget_l1(key);
                if error.is_python_frame() {
                    self.warn(|suppressed| {
                        tracing::warn!(%key, suppressed, "cache entry is a cachekit-py auto-mode (CK) frame, not an interop entry: treated as a miss and overwritten; the Python decorator needs `interop=`");
                    });
                } else {
                    self.warn(|suppressed| {
                        tracing::warn!(%key, %error, suppressed, "cache entry does not decode as the requested type: treated as a miss");
                    });
                }
                None
            }
        }
    }

    /// The bytes of `value` in this cache's format, to expire at `expires_at`.
    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        expires_at: Option<SystemTime>,
    ) -> Result<Bytes> {
        self.inner
            .wire
            .encode(value, codec::Stamp::expiring(expires_at), &[])
    }

    /// Checks the size and writes an envelope to the backend for `ttl`, and
    /// to L1 until `fresh_until`; a background refresh of the key is then
    /// superseded (see [`Revalidate`]).
    async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        ttl: Option<Duration>,
        fresh_until: Option<SystemTime>,
    ) -> Result<()> {
        let _writing = self.inner.refreshing.write_starts(key);
        self.store_bytes(key, bytes, ttl, fresh_until).await
    }

    /// [`Cache::write`], superseding nothing: a refresh's own write.
    async fn store_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        ttl: Option<Duration>,
        fresh_until: Option<SystemTime>,
    ) -> Result<()> {
        let stored = self.inner.wire.seal(key, bytes.clone());
        self.check_size(stored.len())?;
        self.forget_l1(key);
        let ticket = self.inner.l1.as_ref().map(|l1| l1.ticket());
        self.call("set", key, true, || {
            self.raw().set(key, stored.clone(), ttl)
        })
        .await?;
        self.inner.counters.bytes_written.add(stored.len() as u64);
        if let (Some(l1), Some(ticket)) = (&self.inner.l1, ticket) {
            l1.fill(ticket, key, self.inner.wire.payload_of(&bytes), fresh_until);
        }
        Ok(())
    }

    /// Refuses an envelope over the backend's size limit.
    fn check_size(&self, size: usize) -> Result<()> {
        match self.inner.capabilities.max_value_size {
            Some(limit) if size > limit => Err(Error::ValueTooLarge { size, limit }),
            _ => Ok(()),
        }
    }

    /// Runs a backend operation on `key` (`attempt`, tried again if
    /// `idempotent`) through the reliability layer, counting failures.
    async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        idempotent: bool,
        attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let layer = &self.inner.layer;
        let result = layer.call(operation, Some(key), idempotent, attempt).await;
        if result.is_err() {
            self.inner.counters.errors.bump();
            trace::outcome("error");
        }
        result
    }

    /// The span of this cache's operation `operation` on the built `key`.
    pub(crate) fn span(&self, operation: &'static str, key: &str) -> tracing::Span {
        trace::operation(
            &self.inner.counters.name,
            self.inner.backend.name(),
            operation,
            Some(key),
        )
    }

    /// Writes a warning about the backend, unless one was written for it
    /// within the interval (see [`crate::throttle`]); shared with every
    /// cache over the backend.
    fn warn(&self, warn: impl FnOnce(u64)) {
        self.inner.layer.throttle.warn(warn);
    }

    fn forget_l1(&self, key: &str) {
        if let Some(l1) = &self.inner.l1 {
            l1.remove(key);
        }
    }

    /// `ttl`, or the default, with the cache's jitter, clamped to the
    /// backend's maximum; zero means none.
    fn effective_ttl(&self, ttl: Option<Duration>) -> Result<Option<Duration>> {
        let ttl = ttl
            .or(self.inner.default_ttl)
            .map(|ttl| jitter::jitter(ttl, self.inner.ttl_jitter));
        let ttl = self.inner.capabilities.clamp_ttl(ttl);
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

/// The value of a load that cannot fail (a loader without errors, run
/// through the fallible form).
fn never_fails<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
    }
}

/// When an entry stored now for `ttl` expires; `None` for no expiry, and for
/// a TTL beyond what the clock can count.
fn expiry(ttl: Option<Duration>) -> Option<SystemTime> {
    ttl.and_then(|ttl| SystemTime::now().checked_add(ttl))
}
