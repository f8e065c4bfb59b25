//! Batches: `get_many` reads many keys with one backend `get_many` (one
//! round trip per server on memcached and Redis), and `get_or_insert_many`
//! calls its loader once with every miss, then stores the loaded values in
//! one `set_many` (or, with TTL jitter, in concurrent sets, each with its
//! own TTL).
//!
//! Each key counts as one lookup (an L1 hit, a backend hit or a miss), as in
//! [`Cache::get`]. Concurrent batches are not single-flighted against each
//! other: a key missing from two batches at once is loaded by both.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Cache, expiry};
use crate::{Result, key, trace};

impl Cache {
    /// The values under `keys`, in order: `None` for a miss (or unreadable
    /// bytes, as in [`Cache::get`]). L1 first, then one backend `get_many`
    /// for the rest.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let built: Vec<key::Built> = keys.iter().map(|key| self.key(key)).collect();
        let first = built.first().map_or("", |key| key.as_str());
        let span = self.span("get_many", first);
        let (values, in_l1, read) = trace::traced(span, self.lookup_many(&built)).await;
        // A failed read answers nothing: its L1 hits are not counted either.
        read?;
        let missed = values.iter().filter(|value| value.is_none()).count();
        let counters = &self.inner.counters;
        (0..in_l1).for_each(|_| counters.l1_hits.bump());
        counters.misses.add(missed as u64);
        Ok(values)
    }

    /// The values under `keys`, in order; the missing ones from one call of
    /// `loader` with their keys (in the order given), stored for `ttl` (as
    /// in [`Cache::set`]). Backend trouble never reaches the caller: the
    /// loader then gets every key, and its values are returned uncached.
    ///
    /// # Panics
    ///
    /// If `loader` returns another number of values than it was given keys.
    pub async fn get_or_insert_many<T, F, Fut>(
        &self,
        keys: &[&str],
        ttl: Option<Duration>,
        loader: F,
    ) -> Vec<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Vec<T>>,
    {
        let built: Vec<key::Built> = keys.iter().map(|key| self.key(key)).collect();
        let first = built.first().map_or("", |key| key.as_str());
        let span = self.span("get_or_insert_many", first);
        let load = |missing: Vec<usize>| async move {
            let asked: Vec<String> = missing.iter().map(|at| keys[*at].to_owned()).collect();
            let loaded = loader(asked).await;
            assert_eq!(
                loaded.len(),
                missing.len(),
                "the loader of `get_or_insert_many` returned {} values for {} keys",
                loaded.len(),
                missing.len()
            );
            loaded.into_iter().map(Some).collect()
        };
        let values = trace::traced(span, self.fetch_many(&built, ttl, load)).await;
        values
            .into_iter()
            .map(|value| value.expect("every key found or loaded"))
            .collect()
    }

    /// The values under the built `keys`, in order; the missing ones from
    /// one call of `load` with their indexes, which gives a value (stored
    /// for `ttl`) or none (not stored) for each. Backend trouble never
    /// reaches the caller: `load` then gets every index, uncached.
    pub(crate) async fn fetch_many<T, F, Fut>(
        &self,
        keys: &[key::Built],
        ttl: Option<Duration>,
        load: F,
    ) -> Vec<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Vec<Option<T>>>,
    {
        let counters = &self.inner.counters;
        let (mut values, in_l1, read) = self.lookup_many::<T>(keys).await;
        (0..in_l1).for_each(|_| counters.l1_hits.bump());
        let backend_ok = match read {
            Ok(()) => true,
            Err(error) => {
                self.warn(|suppressed| {
                    tracing::warn!(%error, suppressed, keys = keys.len(), "backend read of a batch failed: running the loader uncached for the keys L1 did not have");
                });
                false
            }
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|at| values[*at].is_none()).collect();
        if missing.is_empty() {
            return values;
        }
        counters.misses.add(missing.len() as u64);
        counters.loads.bump();
        trace::outcome("miss");
        let loaded = load(missing.clone()).await;
        if backend_ok {
            let entries: Vec<(&str, &T)> = missing
                .iter()
                .zip(&loaded)
                .filter_map(|(at, value)| Some((keys[*at].as_str(), value.as_ref()?)))
                .collect();
            if let Err(error) = self.store_many(&entries, ttl).await {
                self.warn(|suppressed| {
                    tracing::warn!(%error, suppressed, keys = entries.len(), "storing a loaded batch failed: returned uncached");
                });
            }
        }
        for (at, value) in missing.into_iter().zip(loaded) {
            values[at] = value;
        }
        values
    }

    /// The values under the built `keys`: L1 first, then one `get_many`
    /// for the rest. Counts backend hits; returns how many L1 had (for the
    /// caller to count) and the backend read's outcome (on an error, the
    /// keys L1 did not have are none).
    async fn lookup_many<T: DeserializeOwned>(
        &self,
        keys: &[key::Built],
    ) -> (Vec<Option<T>>, usize, Result<()>) {
        let mut values: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut remote = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            let copy = self.inner.l1.as_ref().and_then(|l1| l1.get(key.as_str()));
            match copy.and_then(|payload| self.decode(key, &payload)) {
                Some(value) => values.push(Some(value)),
                None => {
                    values.push(None);
                    remote.push(at);
                }
            }
        }
        let in_l1 = keys.len() - remote.len();
        if remote.is_empty() {
            return (values, in_l1, Ok(()));
        }
        let ticket = self.inner.l1.as_ref().map(|l1| l1.ticket());
        let wire: Vec<&str> = remote.iter().map(|at| keys[*at].as_str()).collect();
        let found = match self
            .call("get_many", wire[0], true, || self.raw().get_many(&wire))
            .await
        {
            Ok(found) => found,
            Err(error) => return (values, in_l1, Err(error)),
        };
        for (at, bytes) in remote.into_iter().zip(found) {
            let key = keys[at].as_str();
            let Some(bytes) = bytes else { continue };
            self.inner.counters.bytes_read.add(bytes.len() as u64);
            // A tagged entry's tags are not known here: a miss, as in `get`.
            let opened = match self.opened(key, bytes) {
                Ok(Some(opened)) if opened.tags.is_empty() => opened,
                Ok(_) => continue,
                Err(error) => return (values, in_l1, Err(error)),
            };
            let Some(value) = self.decode(key, &opened.payload) else {
                continue;
            };
            self.inner.counters.l2_hits.bump();
            if let (Some(l1), Some(ticket)) = (&self.inner.l1, ticket) {
                l1.fill(
                    ticket,
                    key,
                    opened.payload.clone(),
                    opened.stamp.fresh_until(),
                );
            }
            values[at] = Some(value);
        }
        (values, in_l1, Ok(()))
    }

    /// Stores `entries` (built keys and values) for `ttl`: one `set_many`,
    /// or, with TTL jitter, one set each (concurrent), each with its own
    /// TTL. A value over the backend's size limit fails the whole batch
    /// before anything is written.
    async fn store_many<T: Serialize>(
        &self,
        entries: &[(&str, &T)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let mut encoded: Vec<(&str, Bytes, Option<Duration>)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let ttl = self.effective_ttl(ttl)?;
            let bytes = self.encode(*value, expiry(ttl))?;
            self.check_size(self.inner.wire.stored_len(bytes.len()))?;
            encoded.push((key, bytes, ttl));
        }
        if self.inner.ttl_jitter == 0 {
            let pairs: Vec<(&str, Bytes)> = encoded
                .iter()
                .map(|(key, bytes, _)| (*key, self.inner.wire.seal(key, bytes.clone())))
                .collect();
            let _writing: Vec<_> = pairs
                .iter()
                .map(|(key, _)| self.inner.refreshing.write_starts(key))
                .collect();
            pairs.iter().for_each(|(key, _)| self.forget_l1(key));
            let ticket = self.inner.l1.as_ref().map(|l1| l1.ticket());
            let ttl = encoded.first().and_then(|(_, _, ttl)| *ttl);
            let first = pairs.first().map_or("", |(key, _)| *key);
            self.call("set_many", first, true, || self.raw().set_many(&pairs, ttl))
                .await?;
            for ((key, bytes, ttl), (_, stored)) in encoded.iter().zip(&pairs) {
                self.inner.counters.bytes_written.add(stored.len() as u64);
                if let (Some(l1), Some(ticket)) = (&self.inner.l1, ticket) {
                    l1.fill(ticket, key, self.inner.wire.payload_of(bytes), expiry(*ttl));
                }
            }
            return Ok(());
        }
        let writes = encoded
            .into_iter()
            .map(|(key, bytes, ttl)| self.write(key, bytes, ttl, expiry(ttl)));
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }
}
