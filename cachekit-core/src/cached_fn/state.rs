//! The state of one cached function (for one `Self` type): its L1, and
//! its cache, built at the first call.
//!
//! A cache that cannot be built (a broken configuration, two functions
//! claiming one namespace and name, a `backend = ...` that fails) is not
//! given up on, nor left silent:
//!
//! - the error is logged at ERROR at once, then at most once a minute, with
//!   the number of calls that ran uncached since;
//! - the build is tried again after a back-off (1 s, doubling up to a
//!   minute), so a configuration fixed later, or a process default set
//!   after the first call, is picked up;
//! - meanwhile calls run uncached, but still once per key at a time: they
//!   go through a stand-in cache over [`Unbuilt`], a backend that answers
//!   every operation with an error, so single-flight, counting (as errors)
//!   and degradation stay those of every cache.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::kept::Copies;
use super::process::{process, process_if_read};
use super::{CachedFn, scope};
use crate::coherence::Coherence;
use crate::config::ConfigSource;
use crate::{Backend, Cache, Capabilities, ConfigOrigin, Error, L1Config, Result};

/// First wait before a failed build is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two attempts to build.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Shortest time between two ERROR lines about one function's build.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct State {
    /// The name of the function's `Self` type (`""` for none).
    self_type: &'static str,
    /// The function's path (`my_crate::users::profile`, with the `Self`
    /// type for a method): the name its counters carry.
    pub(super) name: String,
    /// The exported twin of its L1's count of hits (the count itself is
    /// the L1's: it counts under the lock a hit takes anyway).
    #[cfg(feature = "metrics")]
    l1_hits_exported: metrics::Counter,
    /// The most entries its L1 holds, given in the attribute
    /// (`l1_capacity`); `None`: the `l1_max_entries` setting.
    l1_capacity: Option<usize>,
    /// Its L1, once made: `None` inside when L1 is off.
    l1: OnceLock<Option<Made>>,
    /// Whether a copy was remembered for coherence (see `coherent`).
    remembered: AtomicBool,
    /// The cache, once built.
    built: OnceLock<Built>,
    /// Attempts to build, while it fails.
    failing: Mutex<Failing>,
    /// The stand-in cache used while the build fails.
    stand_in: OnceLock<Cache>,
    /// The cache over the backend of the [scope](super::scope) in force.
    scoped: Mutex<Option<Scoped>>,
    /// The counters of the caches of scopes that ended (locked after
    /// `scoped`), which the process's counters keep.
    ended: Mutex<crate::CacheStats>,
}

/// A function's L1, made once and kept for the process, seen two ways.
#[derive(Debug)]
pub(super) struct Made {
    /// Without its result type: for notices, scopes and stats.
    pub(super) copies: &'static dyn Copies,
    /// As itself, for a hit to find by one downcast.
    pub(super) typed: &'static (dyn Any + Send + Sync),
}

/// A cache over a scope's backend.
#[derive(Debug)]
struct Scoped {
    /// The scope's generation.
    generation: u64,
    built: Arc<Built>,
    /// `l1_hits` when the scope's cache was made.
    l1_hits_before: u64,
}

/// The cache chosen for a call, with the function's part of its keys.
#[derive(Debug)]
pub(super) enum Chosen<'a> {
    /// The function's own cache.
    Own(&'a Built),
    /// The cache over a scope's backend, with the scope's generation.
    Scoped(u64, Arc<Built>),
    /// The stand-in, while the function's cache cannot be built, with the
    /// generation of the scope in force (0: none).
    StandIn(&'a Cache, &'static str, u64),
}

impl Chosen<'_> {
    pub(super) fn cache(&self) -> &Cache {
        match self {
            Chosen::Own(built) => &built.cache,
            Chosen::Scoped(_, built) => &built.cache,
            Chosen::StandIn(cache, _, _) => cache,
        }
    }

    pub(super) fn function(&self) -> &str {
        match self {
            Chosen::Own(built) => &built.function,
            Chosen::Scoped(_, built) => &built.function,
            Chosen::StandIn(_, name, _) => name,
        }
    }

    /// Whether copies of results from this cache are kept coherent with its
    /// backend, need not be, or cannot be.
    pub(super) fn coherence(&self) -> Coherence {
        match self {
            Chosen::Own(built) => built.coherence,
            Chosen::Scoped(_, built) => built.coherence,
            Chosen::StandIn(..) => Coherence::Unneeded,
        }
    }

    /// `span`, a call's, with the chosen cache's backend and the backend key `wire`.
    pub(super) fn traced(&self, span: tracing::Span, wire: &str) -> tracing::Span {
        if !span.is_disabled() {
            span.record("backend", self.cache().backend().name());
            span.record("key", crate::trace::key_hash(wire));
        }
        span
    }

    /// The generation of the scope the cache was chosen in (0: none).
    pub(super) fn generation(&self) -> u64 {
        match self {
            Chosen::Own(_) => 0,
            Chosen::Scoped(generation, _) | Chosen::StandIn(_, _, generation) => *generation,
        }
    }
}

/// A built cache, and the function's part of its keys.
#[derive(Debug)]
pub(super) struct Built {
    pub(super) cache: Cache,
    /// `module.path:name` when the function names no namespace (its keys
    /// then start with the `namespace` setting), else `name`.
    pub(super) function: String,
    /// Whether the function's L1 hears of changes made elsewhere in the
    /// cache's backend.
    pub(super) coherence: Coherence,
}

/// The record of failed attempts to build a cache.
#[derive(Debug, Default)]
struct Failing {
    /// When to try again; `None` before the first attempt.
    retry_at: Option<Instant>,
    /// The wait before the next attempt after this one fails.
    backoff: Duration,
    /// When an ERROR was last written.
    logged_at: Option<Instant>,
    /// Calls that ran on the stand-in since the last ERROR.
    uncached: u64,
}

impl State {
    /// The cache for a call: the scope's (see [`super::scope`]), else the
    /// built cache, else the stand-in (trying to build first, when the
    /// back-off allows).
    pub(super) fn cache<'a>(&'a self, function: &'a CachedFn) -> Chosen<'a> {
        if let Some(scope) = scope::active() {
            let generation = scope.0;
            return match self.scoped(function, scope) {
                Ok(built) => Chosen::Scoped(generation, built),
                Err(error) => {
                    super::WARNINGS.warn(|suppressed| {
                        tracing::error!(
                            function = function.spec.name,
                            %error,
                            suppressed,
                            "#[cache]: no cache over the scoped backend: the function runs uncached"
                        );
                    });
                    Chosen::StandIn(self.stand_in(), function.spec.name, generation)
                }
            };
        }
        let built = match self.built.get() {
            Some(built) => Some(built),
            None => self.retry(function, false).ok(),
        };
        match built {
            Some(built) => Chosen::Own(built),
            None => Chosen::StandIn(self.stand_in(), function.spec.name, 0),
        }
    }

    /// The cache for a call, building it now if need be, back-off or not;
    /// the error if it cannot be built.
    pub(super) fn built_now<'a>(&'a self, function: &'a CachedFn) -> Result<Chosen<'a>> {
        if let Some(scope) = scope::active() {
            let generation = scope.0;
            return self
                .scoped(function, scope)
                .map(|built| Chosen::Scoped(generation, built));
        }
        match self.built.get() {
            Some(built) => Ok(Chosen::Own(built)),
            None => self.retry(function, true).map(Chosen::Own),
        }
    }

    /// The cache over the scope's backend, made at its first call in the scope.
    fn scoped(
        &self,
        function: &CachedFn,
        (generation, backend): (u64, Arc<dyn Backend>),
    ) -> Result<Arc<Built>> {
        let mut scoped = self.scoped.lock().unwrap_or_else(PoisonError::into_inner);
        match &*scoped {
            Some(current) if current.generation == generation => Ok(Arc::clone(&current.built)),
            _ => {
                let built = Arc::new(function.build(self.self_type, Some(backend))?);
                // Kept only while its scope is in force: a scope that ended
                // meanwhile has dropped its caches (under this lock), and
                // this one must not keep its backend alive.
                if scope::generation() == generation {
                    *scoped = Some(Scoped {
                        generation,
                        built: Arc::clone(&built),
                        l1_hits_before: self.l1_hits(),
                    });
                }
                Ok(built)
            }
        }
    }

    /// Counters of the built cache and the stand-in; in a scope, of the
    /// scope's cache and the scope's L1 hits.
    pub(super) fn counters(&self) -> crate::CacheStats {
        if let Some((generation, _)) = scope::active() {
            let scoped = self.scoped.lock().unwrap_or_else(PoisonError::into_inner);
            // None yet in this scope: nothing counted.
            let Some(scoped) = scoped.as_ref().filter(|s| s.generation == generation) else {
                return crate::CacheStats::default();
            };
            let mut stats = scoped.built.cache.stats();
            stats.l1_hits += self.l1_hits() - scoped.l1_hits_before;
            return stats;
        }
        self.process_counters()
    }

    /// Counters of every call since the process began, whatever the scope:
    /// of the built cache, the stand-in and the scopes' caches (as the
    /// exported metrics count them, under the same name), L1 hits included.
    pub(super) fn process_counters(&self) -> crate::CacheStats {
        let mut stats = self
            .built
            .get()
            .map(|built| built.cache.stats())
            .unwrap_or_default();
        if let Some(stand_in) = self.stand_in.get() {
            stats += stand_in.stats();
        }
        {
            let scoped = self.scoped.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(scoped) = scoped.as_ref() {
                stats += scoped.built.cache.stats();
            }
            stats += *self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        }
        stats.l1_hits += self.l1_hits();
        stats
    }

    /// Builds the cache if the back-off allows (or `now`); on failure,
    /// counts and logs it, and returns the error (or one saying to wait).
    /// Only this function's own attempt lock is held while it builds (and
    /// runs a `backend = ...` expression): callers of this function wait
    /// for the build; no other function does, and the registry of all
    /// functions is locked only to claim a name.
    fn retry(&self, function: &CachedFn, now: bool) -> Result<&Built> {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(built) = self.built.get() {
            return Ok(built);
        }
        let at = Instant::now();
        if !now && failing.retry_at.is_some_and(|retry_at| at < retry_at) {
            failing.uncached += 1;
            return Err(Error::unavailable(
                Unbuilt::NAME,
                "the cache could not be built; trying again later",
            ));
        }
        match function.build(self.self_type, None) {
            Ok(built) => {
                if failing.retry_at.is_some() {
                    tracing::info!(
                        function = function.spec.name,
                        module = function.spec.module,
                        "#[cache]: the cache is built: the function is cached again"
                    );
                }
                Ok(self.built.get_or_init(|| built))
            }
            Err(error) => {
                failing.backoff = (failing.backoff * 2).clamp(RETRY_FIRST, RETRY_MAX);
                failing.retry_at = Some(at + failing.backoff);
                failing.uncached += u64::from(!now);
                if failing
                    .logged_at
                    .is_none_or(|logged| at >= logged + LOG_EVERY)
                {
                    tracing::error!(
                        function = function.spec.name,
                        module = function.spec.module,
                        self_type = self.self_type,
                        %error,
                        uncached_calls = failing.uncached,
                        retry_in = ?failing.backoff,
                        "#[cache]: the cache cannot be built; the function runs uncached until it can (call cachekit::init() at startup to fail there instead)"
                    );
                    failing.logged_at = Some(at);
                    failing.uncached = 0;
                }
                Err(error)
            }
        }
    }

    /// Calls answered by its L1 so far.
    fn l1_hits(&self) -> u64 {
        self.copies().flatten().map_or(0, |copies| copies.hits())
    }

    /// Exports an L1 hit, with the `metrics` feature (its L1 has counted it).
    #[inline]
    pub(super) fn export_l1_hit(&self) {
        #[cfg(feature = "metrics")]
        self.l1_hits_exported.increment(1);
    }

    /// This function's L1: `None` before it is made, `Some(None)` when off.
    #[inline]
    pub(super) fn made(&self) -> Option<Option<&Made>> {
        self.l1.get().map(Option::as_ref)
    }

    /// [`State::made`], seen without its result type.
    pub(super) fn copies(&self) -> Option<Option<&'static dyn Copies>> {
        self.made().map(|made| made.map(|made| made.copies))
    }

    /// Makes this function's L1 with `make`, sized by the attribute and the
    /// `l1_*` settings (`l1_max_entries = 0` turns every function's off);
    /// `None` when off, or until the configuration has been read (by the
    /// cache's build, with its back-off: never here).
    pub(super) fn make_copies(&self, make: impl FnOnce(L1Config) -> Made) -> Option<&Made> {
        let settings = &process_if_read()?.settings;
        self.l1
            .get_or_init(|| {
                let max_entries = self.l1_max_entries(settings)?;
                let made = make(L1Config {
                    max_entries,
                    max_bytes: settings.l1_max_bytes,
                    max_ttl: settings.l1_ttl,
                });
                made.copies.export_as(&self.name);
                Some(made)
            })
            .as_ref()
    }

    /// The most entries this function's L1 holds; `None` when L1 is off.
    fn l1_max_entries(&self, settings: &crate::config::CoreSettings) -> Option<usize> {
        (settings.l1_max_entries > 0).then(|| self.l1_capacity.unwrap_or(settings.l1_max_entries))
    }

    /// This function's L1 size the first time one of its copies is
    /// remembered for coherence; `None` after.
    pub(super) fn first_remembered(&self) -> Option<usize> {
        if self.remembered.swap(true, Ordering::Relaxed) {
            return None;
        }
        self.l1_max_entries(&process_if_read()?.settings)
    }

    fn stand_in(&self) -> &Cache {
        self.stand_in.get_or_init(|| {
            Cache::builder()
                .for_function(self.name.clone())
                .shared_backend(Unbuilt::shared())
                .without_l1()
                .config(ConfigSource::defaults_only())
                .build()
                .expect("a cache over the stand-in backend builds")
        })
    }
}

impl CachedFn {
    /// The state of this expansion for `self_type`, made if missing. States
    /// live as long as the process: one per function and `Self` type.
    pub(super) fn registered(&'static self, self_type: &'static str) -> &'static State {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = registry.states.get(&(self.spec.site, self_type)) {
            return state;
        }
        let name = self.path(self_type);
        let state: &'static State = Box::leak(Box::new(State {
            self_type,
            #[cfg(feature = "metrics")]
            l1_hits_exported: metrics::counter!(
                "cachekit_l1_hits_total",
                crate::stats::export::labels(&[("cache", &name)])
            ),
            l1_capacity: self.spec.l1_capacity,
            l1: OnceLock::new(),
            remembered: AtomicBool::new(false),
            name,
            built: OnceLock::new(),
            failing: Mutex::default(),
            stand_in: OnceLock::new(),
            scoped: Mutex::new(None),
            ended: Mutex::default(),
        }));
        registry.states.insert((self.spec.site, self_type), state);
        state
    }

    /// The function's path for `self_type`: the name its counters carry.
    fn path(&self, self_type: &'static str) -> String {
        match self_type {
            "" => format!("{}::{}", self.spec.module, self.spec.name),
            self_type => format!("{self_type}::{}", self.spec.name),
        }
    }

    /// Builds the cache of this function for `self_type`, over `over` if
    /// given (a scope's backend), else its own backend.
    fn build(&self, self_type: &'static str, over: Option<Arc<dyn Backend>>) -> Result<Built> {
        let process = process()?;
        // A function that names no namespace: the `namespace` setting, then
        // its module path, which keeps functions of other modules apart.
        let (namespace, function) = match (self.spec.namespace, self.spec.interop) {
            // The operation in place of the name, as Python keys have it.
            (Some(namespace), Some(operation)) => (namespace.to_owned(), operation.to_owned()),
            (Some(namespace), None) => (namespace.to_owned(), self.spec.name.to_owned()),
            (None, _) => (
                process.settings.namespace.clone(),
                format!("{}:{}", self.spec.module.replace("::", "."), self.spec.name),
            ),
        };
        self.claim(&namespace, &function, self_type)?;
        let backend = match (over, self.backend) {
            (Some(backend), _) => backend,
            (None, Some(build)) => build()?,
            (None, None) => process.backend()?,
        };
        // Results are kept decoded in the function's L1, in front of the cache.
        let mut builder = Cache::builder()
            .for_function(self.path(self_type))
            .shared_backend(backend)
            .namespace(namespace)
            .version(self.spec.version)
            .without_l1()
            .config(process.config.clone());
        if let Some(percent) = self.spec.ttl_jitter {
            builder = builder.ttl_jitter(percent);
        }
        if self.spec.interop.is_some() {
            builder = builder.interop();
        }
        if self.spec.encrypt {
            builder = builder.encrypt(true);
        }
        let cache = builder.build()?;
        // No copies, no notices to hear.
        let coherence = match process.settings.l1_max_entries {
            0 => Coherence::Unneeded,
            _ => super::coherent::listen(&**cache.backend()),
        };
        Ok(Built {
            cache,
            function,
            coherence,
        })
    }

    /// Claims `function` in `namespace` for this function: two functions
    /// with one namespace and name (same-named methods of two types, or of
    /// two instantiations of a generic type) would share keys and could
    /// serve each other's values.
    fn claim(&self, namespace: &str, function: &str, self_type: &'static str) -> Result<()> {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let me = (self.spec.site, self_type);
        let owner = *registry
            .owners
            .entry((namespace.to_owned(), function.to_owned()))
            .or_insert(me);
        if owner == me {
            return Ok(());
        }
        Err(Error::Config {
            setting: "namespace".into(),
            origin: ConfigOrigin::Code,
            reason: format!(
                "the cached functions at {} ({}) and {} ({}) are both `{function}` in namespace `{namespace}`, so their keys would clash; give one a `#[cache(namespace = \"...\")]`, or a `key = ...` that tells them apart",
                owner.0,
                display_type(owner.1),
                me.0,
                display_type(me.1),
            ),
        })
    }
}

/// A function's identity: its expansion's site and its `Self` type.
type Identity = (&'static str, &'static str);

/// The state of every cached function, and which function owns each
/// namespace and function part of keys.
#[derive(Default)]
struct Registry {
    states: HashMap<Identity, &'static State>,
    owners: HashMap<(String, String), Identity>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// Every function's state, listed with the registry's lock released: a
/// state's own locks are taken while the registry is locked (to claim a
/// name), never the other way round.
fn registered() -> Vec<&'static State> {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .states
        .values()
        .copied()
        .collect()
}

/// The counters of every cached function called so far, by its path.
pub(crate) fn all_stats() -> Vec<(String, crate::CacheStats)> {
    registered()
        .into_iter()
        .map(|state| (state.name.clone(), state.process_counters()))
        .collect()
}

/// The L1 of every function that has one, with the function's path.
pub(super) fn all_copies() -> Vec<(&'static str, &'static dyn Copies)> {
    registered()
        .into_iter()
        .filter_map(|state| Some((state.name.as_str(), state.copies()??)))
        .collect()
}

/// Drops every function's cache over a scope's backend (at the scope's
/// end), so that the backend is not kept alive by them.
pub(super) fn forget_scoped() {
    for state in registered() {
        let mut scoped = state.scoped.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ended) = scoped.take() {
            // Kept in the process's counters (its L1 hits are already).
            *state.ended.lock().unwrap_or_else(PoisonError::into_inner) +=
                ended.built.cache.stats();
        }
    }
}

fn display_type(self_type: &str) -> &str {
    if self_type.is_empty() {
        "no self"
    } else {
        self_type
    }
}

/// The backend of the stand-in caches: every operation fails, so that a
/// call runs its function uncached, through the cache's own degradation.
#[derive(Debug)]
pub(super) struct Unbuilt;

impl Unbuilt {
    const NAME: &'static str = "unbuilt";

    /// The one instance, shared by every stand-in cache (so that they share
    /// its warnings, at most one per interval for all of them).
    fn shared() -> Arc<dyn Backend> {
        static SHARED: LazyLock<Arc<dyn Backend>> = LazyLock::new(|| Arc::new(Unbuilt));
        Arc::clone(&SHARED)
    }

    fn unavailable<T>() -> Result<T> {
        Err(Error::unavailable(
            Self::NAME,
            "the cache of a cached function could not be built (see its ERROR): it runs uncached",
        ))
    }
}

#[async_trait]
impl Backend for Unbuilt {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        // TTLs are accepted, so that a call goes on to the (failing) read.
        Capabilities {
            ttl: true,
            ..Capabilities::NONE
        }
    }

    async fn get(&self, _: &str) -> Result<Option<Bytes>> {
        Self::unavailable()
    }

    async fn set(&self, _: &str, _: Bytes, _: Option<Duration>) -> Result<()> {
        Self::unavailable()
    }

    async fn delete(&self, _: &str) -> Result<bool> {
        Self::unavailable()
    }

    async fn exists(&self, _: &str) -> Result<bool> {
        Self::unavailable()
    }

    async fn health(&self) -> Result<crate::Health> {
        Self::unavailable()
    }

    /// Never waits: no timer.
    fn operation_timeout(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }

    /// Fails the same every time: nothing to retry.
    fn retries_itself(&self) -> bool {
        true
    }
}
