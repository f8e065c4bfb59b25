//! Stale-while-revalidate and early refresh: an entry past its fresh time
//! (or, with early refresh, close to it) is served as it is while one
//! refresh runs in the background.
//!
//! One refresh per key at a time: in this process by [`Refreshing`], across
//! processes by the backend's lock where it has one (the refresh is skipped
//! when another holder has it). Without a lock (memcached, the file
//! backend), each process refreshes a stale key once.
//!
//! A refresh never writes over a newer value:
//! - before loading and before writing, it reads the entry again, and goes
//!   no further if it is no longer the one found stale (another process
//!   refreshed it, a `set` replaced it, an invalidation removed it);
//! - in this process, a `set` or an invalidation of the key that starts
//!   while the refresh runs marks it superseded, and one in flight when it
//!   would write holds it back ([`Refreshing::write_starts`]): it then does
//!   not write, and if the mark comes while it writes, it removes the entry
//!   after, so that the key ends with the newer value or with none.
//!   Across processes, the window between the last read and the write
//!   remains (no backend here compares and sets).
//!
//! A refresh that fails (the loader's error, a cached function's `Err`
//! stored under `err_ttl`, a backend error, a loader still running after
//! ten lock leases) keeps the stale value, counts a load error and writes a
//! warning; the next stale read tries again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use serde::Serialize;

use super::Cache;
use super::load::{LOAD_WAIT_LEASES, Ttls};
use crate::{codec, key};

/// How a cache-aside load keeps its entry fresh without making callers wait
/// (see [`Cache::get_or_revalidate`]).
///
/// - **Stale-while-revalidate**: for `stale` after its TTL, an entry is
///   still served while one background refresh replaces it. The backend
///   keeps it for the TTL plus `stale` (clamped to the backend's longest
///   TTL, which shortens the fresh part first).
/// - **Early refresh** (XFetch, Vattani et al., VLDB 2015): a read of a
///   fresh entry starts the refresh early, with a probability that rises as
///   the fresh time nears, scaled by how long the value took to load (kept
///   in the entry) and by `beta` (1.0 in the paper; more refreshes earlier).
///
/// An L1 copy lives until the entry's fresh time at most (under early
/// refresh, until an early draw), so the checks run on backend reads only;
/// an L1 hit costs what it did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Revalidate {
    pub(super) stale: Duration,
    pub(super) beta: f64,
}

impl Revalidate {
    /// Serves entries for `stale` past their TTL while refreshing them (at
    /// most 49.7 days, `u32::MAX` milliseconds: a longer window is shortened).
    pub fn stale(stale: Duration) -> Self {
        Revalidate {
            stale: stale.min(codec::MAX_STALE),
            beta: 0.0,
        }
    }

    /// Also refreshes early, with XFetch's `beta` (1.0 is the paper's; a
    /// negative or non-finite `beta` turns early refresh off).
    pub fn early_refresh(self, beta: f64) -> Self {
        let beta = if beta.is_finite() { beta.max(0.0) } else { 0.0 };
        Revalidate { beta, ..self }
    }

    /// The stale window.
    pub fn stale_window(&self) -> Duration {
        self.stale
    }

    /// XFetch's `beta`; 0 when early refresh is off.
    pub fn beta(&self) -> f64 {
        self.beta
    }
}

/// Whether XFetch refreshes an entry read at `now` that is fresh until
/// `fresh_until` and took `load_time` to load: when
/// `now - load_time * beta * ln(u) >= fresh_until`, `u` uniform in (0, 1].
pub(super) fn due_early(
    now: SystemTime,
    fresh_until: SystemTime,
    load_time: Duration,
    beta: f64,
    u: f64,
) -> bool {
    if beta <= 0.0 || load_time.is_zero() {
        return false;
    }
    let Ok(left) = fresh_until.duration_since(now) else {
        return true;
    };
    let ahead = load_time.as_secs_f64() * beta * -u.max(f64::MIN_POSITIVE).ln();
    ahead >= left.as_secs_f64()
}

/// How many slots count the writes in flight (see [`Refreshing::writes`]).
const WRITE_SLOTS: usize = 32;

/// Until when a copy in front of the backend may serve an entry stamped
/// `stamp` under early refresh with `beta`: its fresh time less an XFetch
/// draw (`load_time * beta * -ln u`), so that copies end before it, at
/// the time XFetch would refresh, and the reads after them check again.
pub(super) fn copy_until(stamp: &codec::Stamp, beta: f64) -> Option<SystemTime> {
    let fresh_until = stamp.fresh_until()?;
    if beta <= 0.0 || stamp.load_time.is_zero() {
        return Some(fresh_until);
    }
    let u: f64 = rand::random();
    let ahead = stamp.load_time.as_secs_f64() * beta * -u.max(f64::MIN_POSITIVE).ln();
    let ahead = Duration::try_from_secs_f64(ahead).unwrap_or(Duration::MAX);
    Some(
        fresh_until
            .checked_sub(ahead)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// The keys this cache is refreshing, each with its superseded mark, and
/// the writes in flight.
#[derive(Debug, Default)]
pub(super) struct Refreshing {
    keys: DashMap<String, Arc<AtomicBool>>,
    /// How many keys: writes look at the map only when some refresh runs.
    running: AtomicUsize,
    /// Writes and removals in flight, counted in a slot by their key's hash:
    /// a refresh does not write while one of its key's slot runs (one that
    /// began before the refresh, which its mark cannot catch). Keys sharing
    /// a slot only make a refresh skip a write, never make it wrong.
    writes: [AtomicUsize; WRITE_SLOTS],
}

/// A write or removal in flight (see [`Refreshing::writes`]): counted
/// until dropped.
pub(super) struct Writing<'a> {
    slot: &'a AtomicUsize,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.slot.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A refresh's claim on its key: released when dropped (the task ends,
/// fails, or is dropped with its runtime).
pub(super) struct Claim {
    cache: Cache,
    key: String,
    superseded: Arc<AtomicBool>,
}

impl Claim {
    fn superseded(&self) -> bool {
        self.superseded.load(Ordering::SeqCst)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let refreshing = &self.cache.inner.refreshing;
        if refreshing.keys.remove(&self.key).is_some() {
            refreshing.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Refreshing {
    /// A write or removal of `key` that starts now: counted while it runs,
    /// and it supersedes the refresh of `key`, if one runs.
    pub(super) fn write_starts(&self, key: &str) -> Writing<'_> {
        let slot = self.slot(key);
        slot.fetch_add(1, Ordering::SeqCst);
        if self.running.load(Ordering::SeqCst) > 0 {
            if let Some(mark) = self.keys.get(key) {
                mark.store(true, Ordering::SeqCst);
            }
        }
        Writing { slot }
    }

    /// Whether a write or removal of `key` (or of a key in its slot) runs.
    fn writing(&self, key: &str) -> bool {
        self.slot(key).load(Ordering::SeqCst) > 0
    }

    fn slot(&self, key: &str) -> &AtomicUsize {
        &self.writes[crc32c::crc32c(key.as_bytes()) as usize % WRITE_SLOTS]
    }
}

impl Cache {
    /// Starts a background refresh of `key`, found stale (or due early) as
    /// `seen`, unless one runs already in this process. Without a tokio
    /// runtime to run it on, the stale value is served until it expires.
    pub(super) fn revalidate<T, E, F, Fut>(
        &self,
        key: &str,
        seen: codec::Opened,
        ttls: Ttls<T>,
        loader: F,
    ) where
        T: Serialize + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.warn(|suppressed| {
                tracing::warn!(%key, suppressed, "no tokio runtime to refresh a stale entry on: it is served until it expires");
            });
            return;
        };
        let Some(claim) = self.claim_refresh(key) else {
            return;
        };
        runtime.spawn(async move { claim.cache.refresh_stale(&claim, seen, ttls, loader).await });
    }

    /// The claim on refreshing `key` in this process; `None` if taken.
    fn claim_refresh(&self, key: &str) -> Option<Claim> {
        let refreshing = &self.inner.refreshing;
        let superseded = Arc::new(AtomicBool::new(false));
        match refreshing.keys.entry(key.to_owned()) {
            dashmap::Entry::Occupied(_) => return None,
            dashmap::Entry::Vacant(vacant) => {
                refreshing.running.fetch_add(1, Ordering::SeqCst);
                vacant.insert(Arc::clone(&superseded));
            }
        }
        Some(Claim {
            cache: self.clone(),
            key: key.to_owned(),
            superseded,
        })
    }

    /// The refresh [`Cache::revalidate`] starts.
    async fn refresh_stale<T, E, F, Fut>(
        &self,
        claim: &Claim,
        seen: codec::Opened,
        ttls: Ttls<T>,
        loader: F,
    ) where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = claim.key.as_str();
        let counters = &self.inner.counters;
        let mut held = None;
        if self.raw().as_lock().is_some() {
            match self
                .try_lock(&key::lock_key(key), self.inner.lock_lease)
                .await
            {
                Ok(Some(guard)) => held = Some(guard),
                // Another process loads or refreshes this key.
                Ok(None) => return,
                Err(error) => self.warn(|suppressed| {
                    tracing::warn!(%key, %error, suppressed, "taking the lock to refresh failed: refreshing without it");
                }),
            }
        }
        // Another process, or an earlier refresh of this one, may have
        // replaced it since it was read.
        if claim.superseded() || !self.still_holds(key, &seen).await {
            return;
        }
        counters.refreshes.bump();
        counters.loads.bump();
        let started = Instant::now();
        let loading = async {
            match &held {
                Some(guard) => self.extending(guard, key, loader()).await,
                None => loader().await,
            }
        };
        // Bounded as a wait for another's load is: a loader that never
        // returns does not hold the key (and its lock) for good.
        let longest = self.inner.lock_lease.saturating_mul(LOAD_WAIT_LEASES);
        let loaded = tokio::time::timeout(longest, loading).await;
        let Some(value) = loaded
            .ok()
            .and_then(Result::ok)
            .filter(|value| !ttls.failed(value))
        else {
            counters.load_errors.bump();
            self.warn(|suppressed| {
                tracing::warn!(%key, suppressed, "refreshing a stale entry failed: the stale value is served until it expires");
            });
            return;
        };
        let (ttl, stamp) = ttls.stamp(self, &value, started.elapsed());
        let bytes = match self.inner.wire.encode(&value, stamp, &seen.tags) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.warn(|suppressed| {
                    tracing::warn!(%key, %error, suppressed, "a refreshed value cannot be encoded: the stale value is kept");
                });
                return;
            }
        };
        if claim.superseded()
            || self.inner.refreshing.writing(key)
            || !self.still_holds(key, &seen).await
        {
            return;
        }
        let l1_until =
            super::tags::copy_deadline(!seen.tags.is_empty(), copy_until(&stamp, ttls.beta));
        if let Err(error) = self.store_bytes(key, bytes, ttl, l1_until).await {
            self.warn(|suppressed| {
                tracing::warn!(%key, %error, suppressed, "storing a refreshed value failed: the stale value is kept");
            });
        }
        // A set or an invalidation raced the write: the newer value, or none.
        if claim.superseded() {
            let _ = self.remove(key).await;
        }
        if let Some(guard) = held {
            let _ = guard.release().await;
        }
    }

    /// Whether the backend still holds the entry `seen` (read again now).
    async fn still_holds(&self, key: &str, seen: &codec::Opened) -> bool {
        match self.read_any(key).await {
            Ok(Some(now)) => {
                now.stamp == seen.stamp && now.payload == seen.payload && now.tags == seen.tags
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn early_refresh_is_rare_far_from_the_fresh_time_and_common_near_it() {
        // XFetch over simulated reads: loads take 1 s, beta 1.
        let fresh_until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let load_time = Duration::from_secs(1);
        let mut rng = StdRng::seed_from_u64(17);
        let mut share_due = |left: Duration| {
            let now = fresh_until - left;
            let due = (0..10_000)
                .filter(|_| due_early(now, fresh_until, load_time, 1.0, rng.random()))
                .count();
            due as f64 / 10_000.0
        };
        // P(due) = exp(-left / (load_time * beta)).
        for (left, expected) in [(10, 4.5e-5), (3, 0.0498), (1, 0.368), (0, 1.0)] {
            let share = share_due(Duration::from_secs(left));
            assert!(
                (share - expected).abs() <= 0.02 + expected * 0.1,
                "{left} s before: {share} refreshed, expected {expected}"
            );
        }
        assert_eq!(share_due(Duration::from_secs(60)), 0.0, "a minute before");
    }

    #[test]
    fn early_refresh_needs_a_load_time_and_a_beta() {
        let fresh_until = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let now = fresh_until - Duration::from_millis(1);
        assert!(!due_early(now, fresh_until, Duration::ZERO, 1.0, 0.01));
        assert!(!due_early(
            now,
            fresh_until,
            Duration::from_secs(1),
            0.0,
            0.01
        ));
        assert!(due_early(
            now,
            fresh_until,
            Duration::from_secs(1),
            1.0,
            0.01
        ));
        assert!(due_early(
            fresh_until,
            fresh_until,
            Duration::from_secs(1),
            1.0,
            1.0
        ));
    }

    #[test]
    fn beta_is_kept_finite_and_not_negative() {
        let stale = Revalidate::stale(Duration::from_secs(60));
        assert_eq!(stale.early_refresh(-1.0).beta(), 0.0);
        assert_eq!(stale.early_refresh(f64::NAN).beta(), 0.0);
        assert_eq!(stale.early_refresh(2.0).beta(), 2.0);
        assert_eq!(stale.stale_window(), Duration::from_secs(60));
    }
}
