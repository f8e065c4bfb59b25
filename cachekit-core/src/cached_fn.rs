//! The runtime behind `#[cache]`: one [`CachedFn`] per cached function.
//!
//! The attribute turns a function into a call of
//! [`CachedFn::get_or_insert`] (or [`CachedFn::get_or_insert_blocking`] for
//! a plain `fn`), which goes through [`Cache::try_get_or_insert_with`]'s own
//! code: the same single-flight, backend lock and degradation. What it adds:
//!
//! - **A key per call**: the function's namespace (default: its module path,
//!   `my_crate.users`), its name, and the BLAKE3 hash of its serialized
//!   arguments (`my_crate.users:profile:3f2a...`), or a `key = ...` given in
//!   the attribute in place of the arguments.
//! - **An L1 hit that hashes nothing**: every cached function shares one L1
//!   tier, keyed by the function's identity and its serialized arguments, so
//!   a hit costs one serialization and one map read. The backend key and its
//!   hash are built only on an L1 miss.
//! - **One backend per process** for functions that name none: the process
//!   default ([`set_default_backend`](crate::set_default_backend)) when set at
//!   the first call, else the backend configured by the environment, built
//!   once and shared, so all functions share its connections.
//!
//! A backend that fails to build (a configuration error) is logged once; the
//! function then runs uncached and counts an error per call.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use smallvec::SmallVec;

use crate::cache::Fetched;
use crate::config::{CORE_SETTINGS, ConfigSource, CoreSettings};
use crate::l1::L1;
use crate::store::StoreValue;
use crate::{Backend, Cache, CacheStats, Error, L1Config, Result, blocking, key, resolve};

/// What `#[cache]` records about a function at compile time.
#[derive(Debug, Clone, Copy)]
pub struct FnSpec {
    /// `module_path!()` where the function is defined.
    pub module: &'static str,
    /// The function's name, the second part of its keys.
    pub name: &'static str,
    /// The namespace given in the attribute; `None` for the module path.
    pub namespace: Option<&'static str>,
    /// The TTL given in the attribute; `None` for the configured default.
    pub ttl: Option<Duration>,
    /// Where the attribute is (`file:line:column`). The function and its
    /// companions (`_invalidate`, `_refresh`, `_stats`) each declare a
    /// [`CachedFn`]; the ones from one attribute share their state.
    pub site: &'static str,
}

/// Builds the backend named in the attribute (`backend = ...`).
pub type BackendFn = fn() -> Result<Arc<dyn Backend>>;

/// The state of one cached function: a `static` the attribute declares.
#[derive(Debug)]
pub struct CachedFn {
    spec: FnSpec,
    backend: Option<BackendFn>,
    state: OnceLock<Arc<State>>,
}

#[derive(Debug)]
struct State {
    /// `None` when the backend or cache failed to build: calls run uncached.
    cache: Option<Cache>,
    /// Distinguishes this function's entries in the shared L1 tier.
    id: [u8; 8],
    /// Calls answered by the L1 tier.
    l1_hits: AtomicU64,
    /// Calls that ran uncached because `cache` is `None`.
    uncached: AtomicU64,
}

/// What the backend named in the attribute may be: a backend, an `Arc` of
/// one, or a `Result` of either (an `Err` makes the function run uncached,
/// logged).
pub trait IntoBackend {
    /// The backend, shared.
    fn into_backend(self) -> Result<Arc<dyn Backend>>;
}

impl<B: Backend + 'static> IntoBackend for B {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(self))
    }
}

impl<B: Backend + 'static> IntoBackend for Arc<B> {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        Ok(self)
    }
}

impl IntoBackend for Arc<dyn Backend> {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        Ok(self)
    }
}

impl<B: IntoBackend, E: Into<Error>> IntoBackend for std::result::Result<B, E> {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        self.map_err(Into::into)?.into_backend()
    }
}

/// One call's keys: the L1 key (the function's identity and the serialized
/// arguments or custom key) and what the backend key is built from.
#[derive(Debug)]
pub struct Call {
    l1: SmallVec<[u8; 64]>,
    /// The key given to the cache (`name:hash` or `name:custom`), built on an L1 miss;
    /// `None` when the arguments could not be serialized: the call runs uncached.
    part: Option<KeyPart>,
}

impl Call {
    /// Adds an argument to the key. Arguments are serialized with bincode in
    /// order, which gives the bytes of the tuple of all of them.
    pub fn arg<T: KeyArg + ?Sized>(&mut self, value: &T) {
        if self.part.is_none() {
            return;
        }
        let encoded =
            bincode::serde::encode_into_std_write(value, &mut self.l1, bincode::config::standard());
        if let Err(error) = encoded {
            tracing::warn!(%error, "an argument cannot be serialized: the call runs uncached");
            self.part = None;
        }
    }
}

/// An argument that can be part of a cache key: any `serde::Serialize` type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
    label = "this argument is hashed into the key",
    note = "leave the argument out of the key with `#[cache(skip(name))]`, or give the key with `#[cache(key = ...)]`"
)]
pub trait KeyArg: Serialize {}

impl<T: Serialize + ?Sized> KeyArg for T {}

#[derive(Debug)]
enum KeyPart {
    /// The bincode bytes of the arguments follow the identity in the L1 key.
    Args,
    /// A key given in the attribute.
    Custom,
}

/// Which results of a function are stored: the attribute picks one from the
/// return type.
pub trait ReturnPolicy<R> {
    /// The part of the result that is stored.
    type Stored: Serialize + DeserializeOwned;
    /// The part to store, or the result itself when it is not stored.
    fn stored(result: R) -> std::result::Result<Self::Stored, R>;
    /// The result rebuilt from a stored part.
    fn result(stored: Self::Stored) -> R;
}

/// Every result is stored (`T`, and `Option<T>` with `None` cached).
#[derive(Debug)]
pub enum CacheAll {}

/// Only `Ok` values are stored; errors reach this caller only.
#[derive(Debug)]
pub enum CacheOk {}

/// Only `Some` values are stored (`cache_none = false`).
#[derive(Debug)]
pub enum CacheSome {}

impl<T: Serialize + DeserializeOwned> ReturnPolicy<T> for CacheAll {
    type Stored = T;
    fn stored(result: T) -> std::result::Result<T, T> {
        Ok(result)
    }
    fn result(stored: T) -> T {
        stored
    }
}

impl<T: Serialize + DeserializeOwned, E> ReturnPolicy<std::result::Result<T, E>> for CacheOk {
    type Stored = T;
    fn stored(
        result: std::result::Result<T, E>,
    ) -> std::result::Result<T, std::result::Result<T, E>> {
        result.map_err(Err)
    }
    fn result(stored: T) -> std::result::Result<T, E> {
        Ok(stored)
    }
}

impl<T: Serialize + DeserializeOwned> ReturnPolicy<Option<T>> for CacheSome {
    type Stored = T;
    fn stored(result: Option<T>) -> std::result::Result<T, Option<T>> {
        result.ok_or(None)
    }
    fn result(stored: T) -> Option<T> {
        Some(stored)
    }
}

/// Where a cached function keeps results in process: the attribute picks
/// [`WithL1`] (the default) or [`WithoutL1`] (`l1 = false`).
pub trait L1Mode<T>: 'static {
    /// Whether results are kept at all.
    const KEEPS: bool;
    /// The result in what L1 kept.
    fn unpack(kept: &Kept) -> Option<T>;
    /// What L1 keeps of `value`, `size` bytes encoded.
    fn pack(value: &T, size: usize) -> Option<Kept>;
}

/// Results are kept decoded in the shared L1 tier, and a hit returns a clone.
#[derive(Debug)]
pub enum WithL1 {}

/// Results are not kept in process: every call reads the backend.
#[derive(Debug)]
pub enum WithoutL1 {}

/// A result that the L1 tier can hand out: it is cloned for every hit.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is returned from the in-process L1 tier by cloning, so it must be `Clone + Send + Sync + 'static`",
    label = "the results of this function are kept in L1",
    note = "derive `Clone` for it, or keep this function's results out of L1 with `#[cache(l1 = false)]`"
)]
pub trait L1Value: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> L1Value for T {}

/// Fails to compile, with [`L1Value`]'s explanation, when policy `P`
/// stores a result that L1 cannot hold; `#[cache]` calls it first so that
/// this is the first error a user sees.
pub fn check_l1_value<P: ReturnPolicy<R>, R>()
where
    P::Stored: L1Value,
{
}

/// A cached function's result as the L1 tier holds it.
#[derive(Clone)]
pub struct Kept {
    value: Arc<dyn Any + Send + Sync>,
    /// The encoded size, charged against L1's byte bound.
    size: usize,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("size", &self.size).finish()
    }
}

impl StoreValue for Kept {
    fn size(&self) -> usize {
        self.size
    }
}

impl<T: L1Value> L1Mode<T> for WithL1 {
    const KEEPS: bool = true;

    fn unpack(kept: &Kept) -> Option<T> {
        // Keys start with the function's identity, and one function stores
        // one type, so the downcast fails only across a bug.
        kept.value.downcast_ref::<T>().cloned()
    }

    fn pack(value: &T, size: usize) -> Option<Kept> {
        // Size 0: the value could not be encoded, so it is not in the backend either.
        (size > 0).then(|| Kept {
            value: Arc::new(value.clone()),
            size,
        })
    }
}

impl<T> L1Mode<T> for WithoutL1 {
    const KEEPS: bool = false;

    fn unpack(_: &Kept) -> Option<T> {
        None
    }

    fn pack(_: &T, _: usize) -> Option<Kept> {
        None
    }
}

/// Why a load stored nothing.
enum NotStored<R> {
    /// The function's result is not one the policy stores; return it.
    Returned(R),
    /// The caller's thread stopped waiting (its function panicked).
    Abandoned,
}

impl CachedFn {
    /// The state of a function; `backend` builds the backend named in the attribute.
    pub const fn new(spec: FnSpec, backend: Option<BackendFn>) -> Self {
        CachedFn {
            spec,
            backend,
            state: OnceLock::new(),
        }
    }

    /// Starts the keys of a call; add each argument that is part of the key
    /// with [`Call::arg`], in order.
    pub fn call(&'static self) -> Call {
        Call {
            l1: SmallVec::from_slice(&self.state().id),
            part: Some(KeyPart::Args),
        }
    }

    /// The keys of a call whose key is given in the attribute (`key = ...`).
    pub fn call_with_key(&'static self, key: impl Display) -> Call {
        let mut l1 = SmallVec::from_slice(&self.state().id);
        l1.extend_from_slice(key.to_string().as_bytes());
        Call {
            l1,
            part: Some(KeyPart::Custom),
        }
    }

    /// The cached result of `call`, or else `body`'s, stored by policy `P`
    /// and kept in process by mode `M`.
    pub async fn get_or_insert<P, M, R>(
        &'static self,
        call: Call,
        body: impl Future<Output = R>,
    ) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
    {
        if let Some(stored) = self.l1_hit::<P::Stored, M>(&call) {
            return P::result(stored);
        }
        let Some((cache, wire)) = self.prepare(&call) else {
            return body.await;
        };
        let fetched = cache
            .fetch(&wire, self.spec.ttl, || async {
                P::stored(body.await).map_err(NotStored::Returned)
            })
            .await;
        self.finish::<P, M, R>(&call, fetched)
            .expect("an async load is never abandoned")
    }

    /// [`CachedFn::get_or_insert`] for a plain `fn`: `body` runs on this
    /// thread; the cache's own work runs on a small runtime shared by all
    /// plain cached functions, which this thread waits for (see
    /// [`blocking`](crate::blocking) for what that means inside a runtime).
    pub fn get_or_insert_blocking<P, M, R>(&'static self, call: Call, body: impl FnOnce() -> R) -> R
    where
        P: ReturnPolicy<R> + 'static,
        M: L1Mode<P::Stored>,
        P::Stored: Send,
        R: Send + 'static,
    {
        if let Some(stored) = self.l1_hit::<P::Stored, M>(&call) {
            return P::result(stored);
        }
        let Some((cache, wire)) = self.prepare(&call) else {
            return body();
        };
        let ttl = self.spec.ttl;
        blocking::run_with_body(body, move |run_body| async move {
            let fetched = cache
                .fetch(&wire, ttl, || async {
                    match run_body.await {
                        Some(result) => P::stored(result).map_err(NotStored::Returned),
                        None => Err(NotStored::Abandoned),
                    }
                })
                .await;
            self.finish::<P, M, R>(&call, fetched)
        })
    }

    /// Runs `body` whatever is cached and stores its result (by policy `P`)
    /// for the next calls: the bypass for a caller that needs a fresh value.
    pub async fn refresh<P, M, R>(&'static self, call: Call, body: impl Future<Output = R>) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
    {
        let result = body.await;
        self.keep::<P, M, R>(call, result).await
    }

    /// [`CachedFn::refresh`] for a plain `fn`.
    pub fn refresh_blocking<P, M, R>(&'static self, call: Call, body: impl FnOnce() -> R) -> R
    where
        P: ReturnPolicy<R> + 'static,
        M: L1Mode<P::Stored>,
        P::Stored: Send,
        R: Send + 'static,
    {
        blocking::run_with_body(body, move |run_body| async move {
            let result = run_body.await?;
            Some(self.keep::<P, M, R>(call, result).await)
        })
    }

    /// Removes the stored result of `call` from L1 and the backend; `true`
    /// if the backend had one.
    pub async fn invalidate(&'static self, call: Call) -> Result<bool> {
        if let Some(l1) = shared_l1() {
            l1.remove(&call.l1);
        }
        match self.prepare(&call) {
            Some((cache, wire)) => cache.remove(&wire).await,
            None => Ok(false),
        }
    }

    /// [`CachedFn::invalidate`] for a plain `fn`.
    pub fn invalidate_blocking(&'static self, call: Call) -> Result<bool> {
        blocking::run(self.invalidate(call)).unwrap_or_else(|| {
            Err(Error::Unavailable {
                backend: "cachekit-blocking",
                reason: "the runtime of plain cached functions could not start".into(),
            })
        })
    }

    /// This function's counters since its first call. A call that ran
    /// uncached because the backend could not be built counts as an error.
    pub fn stats(&'static self) -> CacheStats {
        let state = self.state();
        let mut stats = state.cache.as_ref().map(Cache::stats).unwrap_or_default();
        stats.l1_hits += state.l1_hits.load(Ordering::Relaxed);
        stats.errors += state.uncached.load(Ordering::Relaxed);
        stats
    }

    /// The result kept in L1 for `call`, if any: no backend key, no hashing,
    /// no decoding.
    fn l1_hit<T, M: L1Mode<T>>(&'static self, call: &Call) -> Option<T> {
        if !M::KEEPS {
            return None;
        }
        call.part.as_ref()?;
        let value = M::unpack(&shared_l1()?.get(&call.l1)?)?;
        self.state().l1_hits.fetch_add(1, Ordering::Relaxed);
        Some(value)
    }

    /// A load's outcome as the function's result, kept in L1 when stored;
    /// `None` if the caller abandoned it.
    fn finish<P: ReturnPolicy<R>, M: L1Mode<P::Stored>, R>(
        &self,
        call: &Call,
        fetched: std::result::Result<Fetched<P::Stored>, NotStored<R>>,
    ) -> Option<R> {
        match fetched {
            Ok(fetched) => {
                keep_in_l1::<_, M>(call, &fetched.value, fetched.size, fetched.expires_at);
                Some(P::result(fetched.value))
            }
            Err(NotStored::Returned(result)) => Some(result),
            Err(NotStored::Abandoned) => None,
        }
    }

    /// Stores `result` for `call` if policy `P` keeps it, else drops the
    /// entry it would have replaced; returns `result`.
    async fn keep<P: ReturnPolicy<R>, M: L1Mode<P::Stored>, R>(
        &'static self,
        call: Call,
        result: R,
    ) -> R {
        if let Some(l1) = shared_l1() {
            l1.remove(&call.l1);
        }
        let Some((cache, wire)) = self.prepare(&call) else {
            return result;
        };
        match P::stored(result) {
            Ok(stored) => {
                let storing = cache.store(&wire, &stored, self.spec.ttl);
                match storing.await {
                    Ok((size, expires_at)) => {
                        keep_in_l1::<_, M>(&call, &stored, size, expires_at);
                    }
                    Err(error) => {
                        tracing::warn!(key = %wire, %error, "storing a refreshed value failed")
                    }
                }
                P::result(stored)
            }
            Err(result) => {
                if let Err(error) = cache.remove(&wire).await {
                    tracing::warn!(key = %wire, %error, "removing a stale entry failed");
                }
                result
            }
        }
    }

    /// The cache and backend key of a call, or `None` to run it uncached.
    fn prepare(&'static self, call: &Call) -> Option<(&'static Cache, String)> {
        let state = self.state();
        let Some(cache) = &state.cache else {
            state.uncached.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let id_len = state.id.len();
        let part = match call.part.as_ref()? {
            KeyPart::Args => key::for_encoded_call(self.spec.name, &call.l1[id_len..]),
            KeyPart::Custom => {
                let custom = String::from_utf8_lossy(&call.l1[id_len..]);
                format!("{}:{custom}", self.spec.name)
            }
        };
        Some((cache, cache.backend_key(&part)))
    }

    fn state(&'static self) -> &'static State {
        self.state.get_or_init(|| {
            let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(state) = registry.states.get(self.spec.site) {
                return Arc::clone(state);
            }
            let cache = self.build(&mut registry).inspect_err(|error| {
                tracing::error!(
                    function = self.spec.name,
                    module = self.spec.module,
                    %error,
                    "#[cache]: the cache cannot be built; the function runs uncached"
                );
            });
            let state = Arc::new(State {
                cache: cache.ok(),
                id: (registry.states.len() as u64 + 1).to_le_bytes(),
                l1_hits: AtomicU64::new(0),
                uncached: AtomicU64::new(0),
            });
            registry.states.insert(self.spec.site, Arc::clone(&state));
            state
        })
    }

    fn build(&self, registry: &mut Registry) -> Result<Cache> {
        let namespace = match self.spec.namespace {
            Some(namespace) => namespace.to_owned(),
            None => self.spec.module.replace("::", "."),
        };
        // Two functions with one namespace and name would share keys and
        // could serve each other's values: the second one runs uncached.
        let owner = registry
            .owners
            .entry((namespace.clone(), self.spec.name))
            .or_insert(self.spec.site);
        if *owner != self.spec.site {
            return Err(Error::Config {
                setting: "namespace".into(),
                origin: crate::ConfigOrigin::Code,
                reason: format!(
                    "the cached functions at {} and {} are both `{}` in namespace `{namespace}`, so their keys would clash; give one a `#[cache(namespace = \"...\")]`",
                    owner, self.spec.site, self.spec.name
                ),
            });
        }
        let backend = match self.backend {
            Some(build) => build()?,
            None => match resolve::default_backend() {
                Some(backend) => backend,
                None => configured_backend()?,
            },
        };
        // Results are kept decoded in the shared L1 tier, in front of the cache.
        Cache::builder()
            .shared_backend(backend)
            .namespace(namespace)
            .without_l1()
            .build()
    }
}

/// The state of every cached function, by attribute site, and which site
/// owns each namespace and name.
#[derive(Default)]
struct Registry {
    states: HashMap<&'static str, Arc<State>>,
    owners: HashMap<(String, &'static str), &'static str>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// Keeps a copy of `value` in L1 for `call`, if mode `M` keeps results.
fn keep_in_l1<T, M: L1Mode<T>>(
    call: &Call,
    value: &T,
    size: usize,
    expires_at: Option<SystemTime>,
) {
    if let (Some(l1), Some(kept)) = (shared_l1(), M::pack(value, size)) {
        l1.insert(&call.l1, kept, expires_at);
    }
}

/// The backend the configuration selects, built once for every cached
/// function that names none (so they share its connections).
fn configured_backend() -> Result<Arc<dyn Backend>> {
    static CONFIGURED: OnceLock<std::result::Result<Arc<dyn Backend>, String>> = OnceLock::new();
    CONFIGURED
        .get_or_init(|| {
            let config = ConfigSource::from_process().map_err(|e| e.to_string())?;
            resolve::resolve(None, &config)
                .map(|resolved| resolved.backend)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|reason| Error::Unavailable {
            backend: "configured",
            reason,
        })
}

/// The L1 tier every cached function shares, sized by the `l1_*` settings;
/// `None` when `l1_max_entries` is 0 or the settings do not parse (logged:
/// the functions then read the backend every time).
fn shared_l1() -> Option<&'static L1<Kept>> {
    static SHARED: OnceLock<Option<L1<Kept>>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let settings = ConfigSource::from_process()
                .and_then(|config| config.extract::<CoreSettings>(None, CORE_SETTINGS))
                .inspect_err(|error| {
                    tracing::error!(%error, "#[cache]: the L1 settings do not parse; cached functions run without L1");
                })
                .ok()?;
            (settings.l1_max_entries > 0).then(|| {
                L1::new(L1Config {
                    max_entries: settings.l1_max_entries,
                    max_bytes: settings.l1_max_bytes,
                    max_ttl: settings.l1_ttl,
                })
            })
        })
        .as_ref()
}
