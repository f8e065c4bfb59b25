//! The runtime behind `#[cache]`: one [`CachedFn`] per cached function.
//!
//! The attribute turns a function into a call of
//! [`CachedFn::get_or_insert`] (or [`CachedFn::get_or_insert_blocking`] for
//! a plain `fn`), which goes through [`Cache::try_get_or_insert_with`]'s own
//! code: the same single-flight, backend lock and degradation. What it adds:
//!
//! - **A key per call**: the function's namespace and name, and its
//!   arguments: the hex of their [key encoding](crate::key::args) when
//!   short, else of its BLAKE3 hash (see [`key`](crate::key)), or a `key = ...` given in the
//!   attribute in place of the arguments. A function that names no
//!   namespace has the `namespace` setting (default `cachekit`) and its
//!   module path: `cachekit:my_crate.users:profile:2a` for `profile(42_u64)`.
//! - **An L1 hit that neither hashes a backend key nor decodes**: every
//!   cached function has an L1 of its own, typed by its result and keyed by
//!   its serialized arguments, so a hit costs one serialization, one map read
//!   and a clone. The backend key and its hash are built only on an L1 miss.
//! - **One backend per process** for functions that name none: the process
//!   default ([`set_default_backend`](crate::set_default_backend)) when set at
//!   the first call, else the backend configured by the environment, built
//!   once and shared, so all functions share its connections.
//!
//! A cache that cannot be built (a configuration error) is logged at ERROR
//! and tried again after a back-off; the function runs uncached meanwhile
//! (see `state`). [`init`] finds such errors at startup instead.

mod batch;
mod call;
mod clock;
mod coherent;
mod into_backend;
mod kept;
mod policy;
mod process;
mod scope;
mod spec;
mod state;

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use batch::BatchMap;
pub(crate) use call::Call;
pub use into_backend::IntoBackend;
pub(crate) use kept::L1Mode;
pub use kept::{WithL1, WithoutL1, check_l1_value};
pub(crate) use policy::ReturnPolicy;
pub use policy::{CacheAll, CacheOk, CacheOption, CacheResult, CacheSome};
pub use process::init;
pub(crate) use process::process;
pub use scope::{ScopedBackend, scoped_backend};
pub use spec::FnSpec;

use crate::Revalidate;
use crate::cache::{Fetched, IsNegative, Lifetime, RunsIn};
use crate::l1::Ticket;
use crate::stats::L1Stats;
use crate::throttle::Throttle;
use crate::{Backend, Cache, CacheStats, Error, Result, blocking, key, trace};
use call::KeyPart;
use kept::{forget_in_l1, keep_in_l1};

/// The size of every cached function's L1, named by the function's path.
pub(crate) fn l1_stats() -> Vec<L1Stats> {
    state::all_copies()
        .into_iter()
        .map(|(name, copies)| copies.stats(name))
        .collect()
}
pub(crate) use state::all_stats;
use state::{Chosen, State};

/// Warnings about cached functions' calls that are not a backend's (an
/// argument that does not serialize, a refresh that could not be stored):
/// at most one per interval, as a backend's.
static WARNINGS: Throttle = Throttle::new();

/// Builds the backend named in the attribute (`backend = ...`).
pub(crate) type BackendFn = fn() -> Result<Arc<dyn Backend>>;

/// The state of one cached function: a `static` the attribute declares.
///
/// A `static` in a method of a generic `impl` is shared by every
/// instantiation, so methods pass the name of their `Self` type (`""` for
/// functions without `self`), and each type gets its own state.
#[derive(Debug)]
pub struct CachedFn {
    spec: FnSpec,
    backend: Option<BackendFn>,
    /// The state of the first `Self` type seen: the common, and fast, case.
    first: OnceLock<(&'static str, &'static State)>,
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
            first: OnceLock::new(),
        }
    }

    /// Starts the keys of a call of the function for `self_type` (see
    /// [`CachedFn`]); add each argument that is part of the key with
    /// [`Call::arg`], in order.
    #[inline]
    pub fn call(&'static self, self_type: &'static str) -> Call {
        let mut call = Call::new(self.state(self_type));
        if self.spec.interop.is_some() {
            call.part = Some(KeyPart::Interop);
        }
        call
    }

    /// The keys of a call whose key is given in the attribute (`key = ...`).
    pub fn call_with_key(&'static self, self_type: &'static str, key: impl Display) -> Call {
        let mut call = Call::new(self.state(self_type));
        call.l1.extend_from_slice(key.to_string().as_bytes());
        call.part = Some(KeyPart::Custom);
        call
    }

    /// The result of `call` kept in L1 (by mode `M`), if any: the whole
    /// of a hit, checked before the call's future (or body) is even made.
    /// `get_or_insert` and `get_or_insert_blocking` go on from its miss.
    #[inline]
    pub fn hit<P, M, R>(&'static self, call: &Call) -> Option<R>
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
    {
        l1_hit::<P::Stored, M>(call).map(P::result)
    }

    /// After [`CachedFn::hit`] missed: the backend's result of `call`, or
    /// else `body`'s, stored by policy `P` and kept in process by mode `M`.
    pub async fn get_or_insert<P, M, R>(
        &'static self,
        call: Call,
        body: impl Future<Output = R>,
    ) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
    {
        let span = call.span();
        let Some((chosen, wire)) = self.prepare(&call) else {
            span.record("outcome", "uncached");
            return body.await;
        };
        let ticket = M::ticket(&call);
        let fetch = chosen
            .cache()
            .fetch(&wire, self.lifetime::<P, R>(&call, &chosen), || async {
                P::stored(body.await).map_err(NotStored::Returned)
            });
        let fetched = trace::traced(chosen.traced(span, &wire), fetch).await;
        let kept = keep_fetched::<_, M, _>(&call, &chosen, &wire, ticket, fetched);
        returned::<P, R>(kept)
    }

    /// [`CachedFn::get_or_insert`] for a function with `stale` or
    /// `early_refresh`: a stale result (or one due early) is returned at
    /// once while `body` refreshes it in the background, so `body` owns
    /// what it uses (the attribute refuses borrowed arguments).
    pub async fn get_or_insert_revalidating<P, M, R>(
        &'static self,
        call: Call,
        body: impl Future<Output = R> + Send + 'static,
    ) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
        R: Send + 'static,
        P::Stored: Send + 'static,
    {
        let span = call.span();
        let Some((chosen, wire)) = self.prepare(&call) else {
            span.record("outcome", "uncached");
            return body.await;
        };
        let ticket = M::ticket(&call);
        let revalidate = self.revalidate();
        let fetch = chosen.cache().fetch_revalidating(
            &wire,
            self.lifetime::<P, R>(&call, &chosen),
            revalidate,
            move |_| async move { P::stored(body.await).map_err(NotStored::Returned) },
        );
        let fetched = trace::traced(chosen.traced(span, &wire), fetch).await;
        let kept = keep_fetched::<_, M, _>(&call, &chosen, &wire, ticket, fetched);
        returned::<P, R>(kept)
    }

    /// [`CachedFn::get_or_insert`] for a plain `fn` (after
    /// [`CachedFn::hit`] missed): `body` runs on this
    /// thread; the cache's own work runs on a small runtime shared by all
    /// plain cached functions (thread `cachekit-blocking`), which this thread
    /// waits for: blocking outside a runtime, in `block_in_place` on a
    /// multi-thread runtime, and blocking a current-thread runtime for the
    /// round trip. Only the stored part of the result crosses threads, so
    /// only it must be `Send` (an error type need not be).
    pub fn get_or_insert_blocking<P, M, R>(&'static self, call: Call, body: impl FnOnce() -> R) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
        P::Stored: Send + 'static,
    {
        let span = call.span();
        let Some((chosen, wire)) = self.prepare(&call) else {
            span.record("outcome", "uncached");
            return body();
        };
        let span = chosen.traced(span, &wire);
        let lifetime = self.lifetime::<P, R>(&call, &chosen);
        let ticket = M::ticket(&call);
        let mut returned = None;
        let split = || match P::stored(body()) {
            Ok(stored) => Some(stored),
            Err(result) => {
                returned = Some(result);
                None
            }
        };
        let stored = blocking::run_with_body(split, move |run_body| async move {
            let fetch = chosen
                .cache()
                .fetch(&wire, lifetime, || from_caller(run_body));
            let fetched = trace::traced(span, fetch).await;
            handed_back(keep_fetched::<_, M, _>(
                &call, &chosen, &wire, ticket, fetched,
            ))
        });
        match stored {
            Some(stored) => P::result(stored),
            None => returned.expect("a result the policy does not store stays on this thread"),
        }
    }

    /// [`CachedFn::get_or_insert_revalidating`] for a plain `fn`: on a miss
    /// `body` runs on this thread, as in
    /// [`CachedFn::get_or_insert_blocking`]; a background refresh runs it
    /// on a thread of the blocking pool of the cache's runtime (this thread
    /// has its answer by then), so `body` owns what it uses.
    pub fn get_or_insert_revalidating_blocking<P, M, R>(
        &'static self,
        call: Call,
        body: impl FnOnce() -> R + Send + 'static,
    ) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
        R: Send + 'static,
        P::Stored: Send + 'static,
    {
        let span = call.span();
        let Some((chosen, wire)) = self.prepare(&call) else {
            span.record("outcome", "uncached");
            return body();
        };
        let span = chosen.traced(span, &wire);
        let lifetime = self.lifetime::<P, R>(&call, &chosen);
        let ticket = M::ticket(&call);
        let revalidate = self.revalidate();
        // Taken by whichever runs it: this thread on a miss, or a refresh.
        let slot = Arc::new(Mutex::new(Some(body)));
        let mine = Arc::clone(&slot);
        let mut returned = None;
        let split = || {
            let body = mine.lock().unwrap_or_else(PoisonError::into_inner).take();
            match P::stored(body.expect("a call's body runs once")()) {
                Ok(stored) => Some(stored),
                Err(result) => {
                    returned = Some(result);
                    None
                }
            }
        };
        let stored = blocking::run_with_body(split, move |run_body| async move {
            let loader = move |runs_in: RunsIn| async move {
                match runs_in {
                    RunsIn::Caller => from_caller(run_body).await,
                    RunsIn::Background => {
                        let body = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                        let run = move || body.map(|body| P::stored(body()).ok());
                        match tokio::task::spawn_blocking(run).await {
                            Ok(Some(Some(stored))) => Ok(stored),
                            _ => Err(NotStored::Returned(())),
                        }
                    }
                }
            };
            let fetch = chosen
                .cache()
                .fetch_revalidating(&wire, lifetime, revalidate, loader);
            let fetched = trace::traced(span, fetch).await;
            handed_back(keep_fetched::<_, M, _>(
                &call, &chosen, &wire, ticket, fetched,
            ))
        });
        match stored {
            Some(stored) => P::result(stored),
            None => returned.expect("a result the policy does not store stays on this thread"),
        }
    }

    /// Runs `body` whatever is cached and stores its result (by policy `P`)
    /// for the next calls: the bypass for a caller that needs a fresh value.
    pub async fn refresh<P, M, R>(&'static self, call: Call, body: impl Future<Output = R>) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
    {
        let generations = self.generations_before(call.duplicate()).await;
        let started = Instant::now();
        let result = body.await;
        let lifetime = self.untagged_lifetime::<P, R>();
        match P::stored(result) {
            Ok(stored) => {
                let load_time = started.elapsed();
                let replaced =
                    self.replace::<_, M>(&call, stored, lifetime, load_time, generations);
                P::result(replaced.await)
            }
            Err(result) => {
                self.drop_stale(call).await;
                result
            }
        }
    }

    /// [`CachedFn::refresh`] for a plain `fn`.
    pub fn refresh_blocking<P, M, R>(&'static self, call: Call, body: impl FnOnce() -> R) -> R
    where
        P: ReturnPolicy<R>,
        M: L1Mode<P::Stored>,
        P::Stored: Send + 'static,
    {
        let generations = match self.is_tagged(&call) {
            false => Ok(Vec::new()),
            true => blocking::run(self.generations_before(call.duplicate())).unwrap_or_else(|| {
                Err(Error::unavailable(
                    "cachekit-blocking",
                    "the runtime of plain cached functions could not start",
                ))
            }),
        };
        let started = Instant::now();
        let result = body();
        let (lifetime, load_time) = (self.untagged_lifetime::<P, R>(), started.elapsed());
        match P::stored(result) {
            Ok(stored) => {
                let stored = blocking::run_with_body(
                    move || stored,
                    move |stored| async move {
                        let stored = stored.await?;
                        let replaced =
                            self.replace::<_, M>(&call, stored, lifetime, load_time, generations);
                        Some(replaced.await)
                    },
                );
                P::result(stored)
            }
            Err(result) => {
                blocking::run(self.drop_stale(call));
                result
            }
        }
    }

    /// Removes the stored result of `call` from L1 and the backend; `true`
    /// if the backend had one.
    /// The error if the function's cache cannot be built (tried now).
    pub async fn invalidate(&'static self, call: Call) -> Result<bool> {
        forget_in_l1(&call);
        let chosen = call.state.built_now(self)?;
        let removed = match wire_key(chosen.cache(), chosen.function(), &call) {
            Some(wire) => chosen.cache().remove(&wire).await,
            None => Ok(false),
        };
        // Again: a read in flight may have kept the old value meanwhile.
        forget_in_l1(&call);
        removed
    }

    /// [`CachedFn::invalidate`] for a plain `fn`.
    pub fn invalidate_blocking(&'static self, call: Call) -> Result<bool> {
        blocking::run(self.invalidate(call)).unwrap_or_else(|| {
            Err(Error::unavailable(
                "cachekit-blocking",
                "the runtime of plain cached functions could not start",
            ))
        })
    }

    /// Drops every stored result of the function (with `invalidate_all`),
    /// in every process sharing its backend: the next call of each is a
    /// miss. One write (see [`Cache::invalidate_tag`]).
    /// The error if the function's cache cannot be built (tried now).
    pub async fn invalidate_all(&'static self, self_type: &'static str) -> Result<()> {
        let state = self.state(self_type);
        let chosen = state.built_now(self)?;
        let result = chosen
            .cache()
            .invalidate_tag(&function_tag(chosen.function()))
            .await;
        // Tagged results are never kept in L1; older copies may be.
        if let Some(Some(copies)) = state.copies() {
            copies.clear();
        }
        result
    }

    /// [`CachedFn::invalidate_all`] for a plain `fn`.
    pub fn invalidate_all_blocking(&'static self, self_type: &'static str) -> Result<()> {
        blocking::run(self.invalidate_all(self_type)).unwrap_or_else(|| {
            Err(Error::unavailable(
                "cachekit-blocking",
                "the runtime of plain cached functions could not start",
            ))
        })
    }

    /// This function's counters since its first call. A call that ran
    /// uncached because the cache could not be built counts an error.
    pub fn stats(&'static self, self_type: &'static str) -> CacheStats {
        self.state(self_type).counters()
    }

    /// How the function's results are kept fresh (`stale`, `early_refresh`).
    fn revalidate(&self) -> Revalidate {
        Revalidate::stale(self.spec.stale).early_refresh(self.spec.early_refresh)
    }

    /// Whether the results of `call` carry tags.
    fn is_tagged(&self, call: &Call) -> bool {
        self.spec.invalidate_all || !call.tags.is_empty()
    }

    /// The current generations of the tags of `call` (none for an
    /// untagged call), read before its body runs: an invalidation while it
    /// runs then leaves its result a miss.
    async fn generations_before(&'static self, call: Call) -> Result<Vec<u64>> {
        if !self.is_tagged(&call) {
            return Ok(Vec::new());
        }
        let Some((chosen, wire)) = self.prepare(&call) else {
            return Ok(Vec::new());
        };
        let tags = self.tags(&call, &chosen);
        chosen.cache().current_generations(&wire, &tags).await
    }

    /// Stores `stored` (loaded in `load_time`, under the tags'
    /// `generations`) for `call` in the backend and L1 for `lifetime` and
    /// the function's stale window, in place of what was there; returns it.
    async fn replace<T, M>(
        &'static self,
        call: &Call,
        stored: T,
        lifetime: Lifetime<T>,
        load_time: Duration,
        generations: Result<Vec<u64>>,
    ) -> T
    where
        T: Serialize,
        M: L1Mode<T>,
    {
        forget_in_l1(call);
        let Some((chosen, wire)) = self.prepare(call) else {
            return stored;
        };
        let ticket = M::ticket(call);
        let lifetime = Lifetime {
            tags: self.tags(call, &chosen),
            ..lifetime
        };
        let stale = self.spec.stale;
        let storing = chosen
            .cache()
            .store(&wire, &stored, lifetime, stale, load_time, generations);
        match storing.await {
            Ok((size, expires_at)) => {
                keep_in_l1::<_, M>(call, &chosen, &wire, ticket, &stored, size, expires_at)
            }
            Err(error) => WARNINGS.warn(|suppressed| {
                tracing::warn!(key = %wire, %error, suppressed, "storing a refreshed value failed");
            }),
        }
        stored
    }

    /// Removes the entry a result the policy does not store would have replaced.
    async fn drop_stale(&'static self, call: Call) {
        if let Err(error) = self.invalidate(call).await {
            WARNINGS.warn(|suppressed| {
                tracing::warn!(%error, suppressed, "removing a stale entry failed");
            });
        }
    }

    /// The cache and backend key of a call, or `None` to run it uncached
    /// (its arguments could not be serialized).
    fn prepare(&'static self, call: &Call) -> Option<(Chosen<'static>, key::Built)> {
        let chosen = call.state.cache(self);
        let wire = wire_key(chosen.cache(), chosen.function(), call)?;
        Some((chosen, wire))
    }

    /// The state for `self_type`, made on first use.
    #[inline]
    /// How long the result of `call` in `chosen` is stored, and its tags
    /// (see [`CachedFn::untagged_lifetime`] and [`CachedFn::tags`]).
    fn lifetime<P: ReturnPolicy<R>, R>(
        &self,
        call: &Call,
        chosen: &Chosen<'_>,
    ) -> Lifetime<P::Stored> {
        Lifetime {
            tags: self.tags(call, chosen),
            ..self.untagged_lifetime::<P, R>()
        }
    }

    /// The tags of `call` in `chosen`: those of the attribute's `tags`,
    /// and the function's own with `invalidate_all` (see [`function_tag`]).
    fn tags(&self, call: &Call, chosen: &Chosen<'_>) -> Vec<String> {
        let mut tags = call.tags.clone();
        if self.spec.invalidate_all {
            tags.push(function_tag(chosen.function()));
        }
        tags
    }

    /// How long this function's results are stored: its TTL, and its
    /// `none_ttl` or `err_ttl` for the results policy `P` calls negative.
    fn untagged_lifetime<P: ReturnPolicy<R>, R>(&self) -> Lifetime<P::Stored> {
        Lifetime {
            ttl: self.spec.ttl,
            negative: self
                .spec
                .none_ttl
                .or(self.spec.err_ttl)
                .map(|ttl| (ttl, P::negative as IsNegative<_>)),
            negative_fails: self.spec.err_ttl.is_some(),
            tags: Vec::new(),
        }
    }

    fn state(&'static self, self_type: &'static str) -> &'static State {
        let &(first_type, first) = self
            .first
            .get_or_init(|| (self_type, self.registered(self_type)));
        // By address first: the same type's name is one `&'static str`, and
        // comparing the empty name's bytes costs far more than the hit
        // around it (docs/benchmarks.md, "Moved from code comments").
        if std::ptr::eq(first_type, self_type) || first_type == self_type {
            first
        } else {
            self.registered(self_type)
        }
    }
}

/// The result kept in L1 for `call`, if any: no backend key, no decoding.
/// Exported (its L1 counted it), and traced (an `l1_hit` span) when a subscriber takes DEBUG
/// spans: the check is one load, where making a disabled span costs a
/// tenth of the hit.
#[inline]
fn l1_hit<T, M: L1Mode<T>>(call: &Call) -> Option<T> {
    let value = M::hit(call)?;
    call.state.export_l1_hit();
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        call.span().record("outcome", "l1_hit");
    }
    Some(value)
}

/// A fetched value, kept in L1 for `call` (by mode `M`, see [`keep_in_l1`]) and handed on.
fn keep_fetched<T, M: L1Mode<T>, X>(
    call: &Call,
    chosen: &Chosen<'_>,
    backend_key: &str,
    ticket: Option<Ticket>,
    fetched: std::result::Result<Fetched<T>, NotStored<X>>,
) -> std::result::Result<T, NotStored<X>> {
    fetched.map(|fetched| {
        keep_in_l1::<_, M>(
            call,
            chosen,
            backend_key,
            ticket,
            &fetched.value,
            fetched.size,
            fetched.fresh_until,
        );
        fetched.value
    })
}

/// The result of an async load, kept or not: the stored part as the result,
/// or the result the policy does not store.
fn returned<P: ReturnPolicy<R>, R>(kept: std::result::Result<P::Stored, NotStored<R>>) -> R {
    match kept {
        Ok(stored) => P::result(stored),
        Err(NotStored::Returned(result)) => result,
        Err(NotStored::Abandoned) => unreachable!("an async load is never abandoned"),
    }
}

/// What a plain function's load hands back to its thread: the stored part,
/// none when its result stays on that thread (not stored), or nothing when
/// the thread stopped waiting.
fn handed_back<T>(kept: std::result::Result<T, NotStored<()>>) -> Option<Option<T>> {
    match kept {
        Ok(stored) => Some(Some(stored)),
        Err(NotStored::Returned(())) => Some(None),
        Err(NotStored::Abandoned) => None,
    }
}

/// A plain function's body, run on its caller's thread (see
/// [`blocking::run_with_body`]), as a loader's result.
async fn from_caller<T>(
    run_body: blocking::BoxedBody<Option<T>>,
) -> std::result::Result<T, NotStored<()>> {
    match run_body.await {
        Some(Some(stored)) => Ok(stored),
        Some(None) => Err(NotStored::Returned(())),
        None => Err(NotStored::Abandoned),
    }
}

/// The tag every result of the function whose key part is `function`
/// carries under `invalidate_all`.
fn function_tag(function: &str) -> String {
    format!("cachekit.fn:{function}")
}

/// The backend key of `call` in `cache`, for the function's key part
/// `function`; `None` when its arguments could not be serialized.
fn wire_key(cache: &Cache, function: &str, call: &Call) -> Option<key::Built> {
    Some(match call.part.as_ref()? {
        KeyPart::Args => cache.call_key(function, &key::encoded_args_part(call.args())),
        KeyPart::Custom => {
            let custom = String::from_utf8_lossy(call.args());
            cache.key(&format!("{function}:{custom}"))
        }
        KeyPart::Interop => cache.call_key(function, &call.interop_hash()),
    })
}
