//! Cache-aside: a lookup, and on a miss one load per key in this process
//! (single-flight) and, on a backend with a lock, one across the processes
//! sharing it.
//!
//! Everything a load holds is let go when its future is dropped (a caller's
//! timeout, `select!`) or its loader panics: the flight's lead passes to a
//! waiter ([`Flights`](crate::flight::Flights)), and the backend lock is
//! released in the background ([`LockGuard`]), so nobody waits out a lease
//! for a caller that is gone.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::lock::{LOCK_POLL_MAX, LOCK_POLL_START};
use super::revalidate::{Revalidate, copy_until, due_early};
use super::{Cache, Found, expiry, tags};
use crate::codec::Stamp;
use crate::flight::Joined;
use crate::{LockGuard, codec, key, trace};

/// How many lock leases a load waits at most for another process's load of
/// the same key before loading itself.
pub(super) const LOAD_WAIT_LEASES: u32 = 10;

/// A value read or loaded by [`Cache::fetch`], with what a tier in front of
/// the cache needs to keep a copy.
pub(crate) struct Fetched<T> {
    pub(crate) value: T,
    /// Bytes of the encoded payload; 0 when this call did not read or store
    /// it (it is then not to be kept in front).
    pub(crate) size: usize,
    /// When the entry stops being fresh (its expiry, less a stale window),
    /// as far as this process knows: a copy in front lives until then at most.
    pub(crate) fresh_until: Option<SystemTime>,
}

impl<T> Fetched<T> {
    /// What was found, its copy in front kept until the entry's fresh time,
    /// or earlier under early refresh with `beta` (see [`copy_until`]).
    fn found(found: Found<T>, beta: f64) -> Self {
        Fetched {
            value: found.value,
            size: found.size,
            fresh_until: found.seen.and_then(|seen| copy_until(&seen.stamp, beta)),
        }
    }
}

/// Where a revalidating load's loader runs (see
/// [`Cache::fetch_revalidating`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunsIn {
    /// For the caller, who waits for it (a miss).
    Caller,
    /// In a background refresh, after the caller has its answer.
    Background,
}

/// A loader's error, from a single-flight load.
struct LoaderError<E>(E);

/// Which loaded values are negative results (a cached function's `None`
/// or `Err`).
pub(crate) type IsNegative<T> = fn(&T) -> bool;

/// How long a loaded value is stored: `ttl` (`None`: the cache's default),
/// or a shorter TTL for the values `negative` picks (a cached function's
/// `None` results under `none_ttl`, its `Err` results under `err_ttl`).
#[derive(Debug)]
pub(crate) struct Lifetime<T> {
    pub(crate) ttl: Option<Duration>,
    pub(crate) negative: Option<(Duration, IsNegative<T>)>,
    /// Whether negative values are failures (`Err`s): a background refresh
    /// that loads one keeps the stale value rather than store it.
    pub(crate) negative_fails: bool,
    /// The entry's tags (see [`Cache::invalidate_tag`]); empty for none.
    pub(crate) tags: Vec<String>,
}

impl<T> Lifetime<T> {
    /// Every value for `ttl`.
    pub(crate) fn of(ttl: Option<Duration>) -> Self {
        Lifetime {
            ttl,
            negative: None,
            negative_fails: false,
            tags: Vec::new(),
        }
    }
}

/// A [`Lifetime`] made effective by the cache (its default, jitter and
/// clamp), with the stale window of a revalidating load.
pub(super) struct Ttls<T> {
    ttl: Option<Duration>,
    negative: Option<(Option<Duration>, IsNegative<T>)>,
    negative_fails: bool,
    stale: Duration,
    tags: Vec<String>,
    /// The generations of `tags` the lookup found (`None`: none yet).
    known: Vec<Option<u64>>,
    /// Early refresh's beta (0: none), which ends copies in front early.
    pub(super) beta: f64,
}

impl<T> Ttls<T> {
    /// The tags, for a write that reads their generations itself.
    pub(super) fn into_tags(self) -> Vec<String> {
        self.tags
    }

    /// Whether `value` is a failure (see [`Lifetime::negative_fails`]).
    pub(super) fn failed(&self, value: &T) -> bool {
        self.negative_fails && self.negative.is_some_and(|(_, negative)| negative(value))
    }

    /// How long `value` is fresh.
    fn of(&self, value: &T) -> Option<Duration> {
        match self.negative {
            Some((ttl, negative)) if negative(value) => ttl,
            _ => self.ttl,
        }
    }

    /// The backend TTL of `value`, loaded in `load_time`, and the stamp of
    /// its envelope: fresh for its TTL, then stale for the stale window
    /// (both within the backend's longest TTL, the stale window first).
    pub(super) fn stamp(
        &self,
        cache: &Cache,
        value: &T,
        load_time: Duration,
    ) -> (Option<Duration>, Stamp) {
        let Some(fresh) = self.of(value) else {
            return (
                None,
                Stamp {
                    load_time,
                    ..Stamp::default()
                },
            );
        };
        // A failure is not served stale: `err_ttl` alone bounds it.
        let stale = match self.failed(value) {
            true => Duration::ZERO,
            false => self.stale.min(codec::MAX_STALE),
        };
        let stored = cache
            .inner
            .capabilities
            .clamp_ttl(Some(fresh.saturating_add(stale)))
            .unwrap_or(fresh);
        // The backend's longest TTL shortens the stale window first.
        let stamp = Stamp {
            expires_at: expiry(Some(stored)),
            stale_for: stored.saturating_sub(fresh).min(stale),
            load_time,
        };
        (Some(stored), stamp)
    }
}

/// The outcome of asking for the backend's load lock.
enum LoadLock {
    /// This process loads; the guard releases the lock when dropped.
    Held(LockGuard),
    /// Another process stored the value meanwhile: its entry.
    FilledByOther(codec::Opened),
    /// No lock to be had: load without one.
    Unavailable,
}

impl Cache {
    /// [`Cache::try_get_or_insert_with`] for a built backend key, telling
    /// also how big the entry is and when it expires, for a tier in front of
    /// this cache (cached functions keep decoded results in one).
    pub(crate) async fn fetch<T, E, F, Fut>(
        &self,
        key: &str,
        lifetime: Lifetime<T>,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Some(mut ttls) = self.ttls(key, lifetime, Duration::ZERO) else {
            return self.uncached(loader).await;
        };
        let backend_ok = match self.lookup_for(key, &mut ttls).await {
            Ok(Some(found)) => return Ok(Fetched::found(found, 0.0)),
            Ok(None) => true,
            Err(error) => self.read_failed(key, &error),
        };
        // Boxed: loading makes a large future, which would otherwise make
        // the future of every call large, hits included (costlier to move).
        Box::pin(self.load_shared(key, &ttls, backend_ok, loader)).await
    }

    /// [`Cache::fetch`] with `revalidate`: an entry found stale, or due
    /// for an early refresh, is returned as it is while `loader` refreshes
    /// it in the background (see [`Cache::revalidate`]). The loader is told
    /// where it runs: for the caller, or in the background.
    pub(crate) async fn fetch_revalidating<T, E, F, Fut>(
        &self,
        key: &str,
        lifetime: Lifetime<T>,
        revalidate: Revalidate,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce(RunsIn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let Some(mut ttls) = self.ttls(key, lifetime, revalidate.stale) else {
            return self.uncached(move || loader(RunsIn::Caller)).await;
        };
        ttls.beta = revalidate.beta;
        let backend_ok = match self.lookup_for(key, &mut ttls).await {
            Ok(Some(found)) => {
                if let Some(seen) = found
                    .seen
                    .as_ref()
                    .filter(|seen| self.due(&seen.stamp, revalidate))
                {
                    let refresh = move || loader(RunsIn::Background);
                    self.revalidate(key, seen.clone(), ttls, refresh);
                }
                return Ok(Fetched::found(found, revalidate.beta));
            }
            Ok(None) => true,
            Err(error) => self.read_failed(key, &error),
        };
        let load = move || loader(RunsIn::Caller);
        Box::pin(self.load_shared(key, &ttls, backend_ok, load)).await
    }

    /// [`Cache::lookup`] for a load with `ttls`: of a tagged entry, in the
    /// backend only and with its tags' generations (kept in `ttls` for the
    /// write that may follow).
    async fn lookup_for<T: DeserializeOwned>(
        &self,
        key: &str,
        ttls: &mut Ttls<T>,
    ) -> crate::Result<Option<Found<T>>> {
        if ttls.tags.is_empty() {
            return self.lookup(key, ttls.beta).await;
        }
        let (opened, known) = self.read_tagged(key, &ttls.tags).await?;
        ttls.known = known;
        let Some(opened) = opened else {
            return Ok(None);
        };
        let Some(value) = self.decode(key, &opened.payload) else {
            return Ok(None);
        };
        self.inner.counters.l2_hits.bump();
        trace::outcome("hit");
        // Size 0: no copy in front (see `tags`).
        Ok(Some(Found {
            value,
            size: 0,
            seen: Some(opened),
        }))
    }

    /// Whether an entry stamped `stamp` is to be refreshed now: it is
    /// stale (counted), or early refresh picks it.
    fn due(&self, stamp: &Stamp, revalidate: Revalidate) -> bool {
        let Some(fresh_until) = stamp.fresh_until() else {
            return false;
        };
        let now = SystemTime::now();
        if now >= fresh_until {
            // Without a stale window the entry is expired, not stale: the
            // backend's clock kept it a moment longer (memcached counts
            // whole seconds). It is read as it always was, and not refreshed.
            if stamp.stale_for.is_zero() {
                return false;
            }
            self.inner.counters.stale_hits.bump();
            trace::outcome("stale");
            return true;
        }
        revalidate.beta > 0.0
            && due_early(
                now,
                fresh_until,
                stamp.load_time,
                revalidate.beta,
                rand::random(),
            )
    }

    /// The TTLs of `lifetime` in this cache, with a stale window of
    /// `stale`; `None` if they cannot be had (a TTL on a backend without
    /// expiry), which is a warning.
    fn ttls<T>(&self, key: &str, lifetime: Lifetime<T>, stale: Duration) -> Option<Ttls<T>> {
        match self.effective_ttls(lifetime, stale) {
            Ok(ttls) => Some(ttls),
            Err(error) => {
                self.warn(|suppressed| {
                    tracing::warn!(%key, %error, suppressed, "running uncached");
                });
                None
            }
        }
    }

    /// The TTLs of `lifetime` in this cache (its default, jitter and
    /// clamp), with a stale window of `stale`.
    pub(super) fn effective_ttls<T>(
        &self,
        lifetime: Lifetime<T>,
        stale: Duration,
    ) -> crate::Result<Ttls<T>> {
        let ttl = self.effective_ttl(lifetime.ttl)?;
        let negative = match lifetime.negative {
            Some((short, negative)) => Some((self.effective_ttl(Some(short))?, negative)),
            None => None,
        };
        Cache::check_tags(&lifetime.tags)?;
        Ok(Ttls {
            ttl,
            negative,
            negative_fails: lifetime.negative_fails,
            stale,
            tags: lifetime.tags,
            known: Vec::new(),
            beta: 0.0,
        })
    }

    /// Runs `loader` for a call that cannot use the cache, counted as a miss.
    async fn uncached<T, E, F, Fut>(&self, loader: F) -> Result<Fetched<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = &self.inner.counters;
        counters.misses.bump();
        counters.loads.bump();
        trace::outcome("miss");
        Ok(Fetched {
            value: loader().await?,
            size: 0,
            fresh_until: None,
        })
    }

    /// Warns of a failed backend read; `false`: the load that follows
    /// goes without the backend.
    fn read_failed(&self, key: &str, error: &crate::Error) -> bool {
        self.warn(|suppressed| {
            tracing::warn!(%key, %error, suppressed, "backend read failed: running the loader uncached");
        });
        false
    }

    /// Loads a miss for [`Cache::fetch`]: once per key in this process at a
    /// time (single-flight), a follower decoding the leader's payload.
    async fn load_shared<T, E, F, Fut>(
        &self,
        key: &str,
        ttls: &Ttls<T>,
        backend_ok: bool,
        loader: F,
    ) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut loaded: Option<Fetched<T>> = None;
        // Whether this caller's load goes through the backend (its lock and
        // its store); read when the load runs.
        let through_backend = AtomicBool::new(backend_ok);
        // A value that cannot be encoded is shared as an empty payload (no
        // payload is empty: it has a shape): the followers then run their
        // loaders at once, together and without the backend, rather than
        // lead (and take the backend lock) one after another.
        let run = || async {
            let (fetched, payload) = self
                .load(key, ttls, through_backend.load(Ordering::Relaxed), loader)
                .await?;
            loaded = Some(fetched);
            Ok(payload.unwrap_or_default())
        };
        let ran = match self.inner.flights.join(key, run).await {
            Joined::Led(ran) => ran,
            Joined::Followed(payload, run) => {
                if payload.is_empty() {
                    through_backend.store(false, Ordering::Relaxed);
                    run().await
                } else if let Some(value) = self.decode(key, &payload) {
                    self.inner.counters.coalesced.bump();
                    trace::outcome("coalesced");
                    // Size 0: the leader keeps the copy in front, if it stored one.
                    return Ok(Fetched {
                        value,
                        size: 0,
                        fresh_until: None,
                    });
                } else {
                    // Another caller in this process stored a different type
                    // under this key: load for this caller's type.
                    run().await
                }
            }
        };
        match ran {
            Err(LoaderError(error)) => Err(error),
            Ok(_) => Ok(loaded.expect("a load that did not fail loaded a value")),
        }
    }

    /// Runs the loader for a miss (under the backend lock when there is one)
    /// and stores its value. Returns the value and its payload, if it
    /// encodes (to share with followers).
    async fn load<T, E, F, Fut>(
        &self,
        key: &str,
        ttls: &Ttls<T>,
        backend_ok: bool,
        loader: F,
    ) -> Result<(Fetched<T>, Option<Bytes>), LoaderError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = &self.inner.counters;
        let lock = self.raw().as_lock();
        if lock.is_none() && !self.inner.said_no_lock.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                backend = self.inner.backend.name(),
                "backend has no lock: misses are de-duplicated by in-process single-flight only"
            );
        }
        let mut held = None;
        let tagged = !ttls.tags.is_empty();
        if backend_ok && lock.is_some() {
            match self.acquire_load_lock(key, &ttls.tags).await {
                LoadLock::Held(guard) => held = Some(guard),
                LoadLock::FilledByOther(opened) => {
                    if let Some(value) = self.decode(key, &opened.payload) {
                        counters.l2_hits.bump();
                        trace::outcome("hit");
                        // No copy in front of a tagged entry (see `tags`).
                        let fetched = Fetched {
                            fresh_until: opened.stamp.fresh_until(),
                            value,
                            size: if tagged { 0 } else { opened.payload.len() },
                        };
                        return Ok((fetched, Some(opened.payload)));
                    }
                }
                LoadLock::Unavailable => {}
            }
        }
        counters.misses.bump();
        counters.loads.bump();
        trace::outcome("miss");
        // The tags' generations before the loader runs: an invalidation
        // while it runs then leaves the value it loads a miss.
        let generations = match (tagged, backend_ok) {
            (false, _) => Ok(Vec::new()),
            (true, true) => self.generations(&ttls.tags, &ttls.known).await,
            (true, false) => Err(crate::Error::unavailable(
                self.inner.backend.name(),
                "the read failed",
            )),
        };
        // On an error the guard is dropped, which releases the lock.
        let started = Instant::now();
        let value = match &held {
            Some(guard) => self.extending(guard, key, loader()).await,
            None => loader().await,
        }
        .map_err(|error| {
            counters.load_errors.bump();
            trace::outcome("load_error");
            LoaderError(error)
        })?;
        let mut stored = false;
        let (ttl, stamp) = ttls.stamp(self, &value, started.elapsed());
        let l1_until = tags::copy_deadline(tagged, copy_until(&stamp, ttls.beta));
        let payload = match self.inner.wire.encode(
            &value,
            stamp,
            generations.as_deref().unwrap_or_default(),
        ) {
            Ok(bytes) => {
                if let Err(error) = &generations {
                    self.warn(|suppressed| {
                        tracing::warn!(%key, %error, suppressed, "reading the generations of its tags failed: returned uncached");
                    });
                } else if backend_ok {
                    match self.write(key, bytes.clone(), ttl, l1_until).await {
                        Ok(()) => stored = true,
                        Err(error) => self.warn(|suppressed| {
                            tracing::warn!(%key, %error, suppressed, "storing a loaded value failed: returned uncached");
                        }),
                    }
                }
                Some(self.inner.wire.payload_of(&bytes))
            }
            Err(error) => {
                self.warn(|suppressed| {
                    tracing::warn!(%key, %error, suppressed, "loaded value cannot be encoded: returned uncached");
                });
                None
            }
        };
        if let Some(guard) = held {
            if let Err(error) = guard.release().await {
                self.warn(|suppressed| {
                    tracing::warn!(%key, %error, suppressed, "releasing the load lock failed: it ends with its lease");
                });
            }
        }
        // A copy in front of the cache only of what the backend holds, untagged.
        let size = payload
            .as_ref()
            .filter(|_| stored && !tagged)
            .map_or(0, Bytes::len);
        let fetched = Fetched {
            value,
            size,
            fresh_until: l1_until,
        };
        Ok((fetched, payload))
    }

    /// Runs `loading` (the loader of `key`) while keeping the load lock
    /// `guard` held: its lease restarts every third of a lease, so that a
    /// loader slower than the lease never lets another process load too.
    /// If the lock is lost all the same (the backend lost it, or an
    /// extension failed for a whole lease), the loader goes on without it.
    pub(super) async fn extending<F: Future>(
        &self,
        guard: &LockGuard,
        key: &str,
        loading: F,
    ) -> F::Output {
        let lease = self.inner.lock_lease;
        let mut loading = std::pin::pin!(loading);
        let extender = async {
            loop {
                tokio::time::sleep(lease / 3).await;
                match guard.extend(lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        self.warn(|suppressed| {
                            tracing::warn!(%key, suppressed, "the load lock was lost while the loader ran: another process may load too");
                        });
                        return;
                    }
                    Err(error) => self.warn(|suppressed| {
                        tracing::warn!(%key, %error, suppressed, "extending the load lock failed: trying again");
                    }),
                }
            }
        };
        tokio::select! {
            biased;
            value = &mut loading => value,
            () = extender => loading.await,
        }
    }

    /// Takes the backend lock for loading `key`, or waits for the process
    /// holding it to store the value. The holder extends its lease while it
    /// loads, and a holder that dies frees the lock when its lease ends, so
    /// the wait ends either way; it is bounded all the same, at
    /// [`LOAD_WAIT_LEASES`] leases, for a loader that never returns. An
    /// entry with `tags` is read with them (valid only under their current
    /// generations).
    async fn acquire_load_lock(&self, key: &str, tags: &[String]) -> LoadLock {
        let lock_key = key::lock_key(key);
        let lease = self.inner.lock_lease;
        let longest = lease.saturating_mul(LOAD_WAIT_LEASES);
        let started = tokio::time::Instant::now();
        let mut pause = LOCK_POLL_START;
        loop {
            match self.try_lock(&lock_key, lease).await {
                Ok(Some(guard)) => {
                    // Another process may have stored the value between our miss and now.
                    return match self.read_with(key, tags).await {
                        Ok(Some(opened)) => LoadLock::FilledByOther(opened),
                        _ => LoadLock::Held(guard),
                    };
                }
                Ok(None) => {}
                Err(error) => {
                    self.warn(|suppressed| {
                        tracing::warn!(%key, %error, suppressed, "taking the load lock failed: loading without it");
                    });
                    return LoadLock::Unavailable;
                }
            }
            if started.elapsed() + pause >= longest {
                self.warn(|suppressed| {
                    tracing::warn!(%key, suppressed, ?longest, "the load lock holder did not finish in time: loading anyway");
                });
                return LoadLock::Unavailable;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
            if let Ok(Some(opened)) = self.read_with(key, tags).await {
                return LoadLock::FilledByOther(opened);
            }
        }
    }
}
