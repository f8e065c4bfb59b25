//! Batch functions: `#[cache(batch)]` on an `async fn` that takes a `Vec`
//! of keys and returns a map of the keys it found to their values.
//!
//! Each key is an entry of its own, under the key a call of the function
//! with that key alone would have (`namespace:function:args` of the key):
//! a call reads all of them with one backend `get_many`, runs the body once
//! with the keys that missed, stores each value the body returned (a key
//! the body left out is not stored: absent, as in the body's own map), and
//! returns the map of every key found or loaded. Batch results are not kept
//! in L1.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CachedFn, Call, wire_key};
use crate::{Result, key, trace};

/// The map a batch function returns, looked up by key.
pub trait BatchMap<K, V>: FromIterator<(K, V)> {
    /// The value under `key`.
    fn value(&self, key: &K) -> Option<&V>;
}

impl<K: Eq + Hash, V> BatchMap<K, V> for HashMap<K, V> {
    fn value(&self, key: &K) -> Option<&V> {
        self.get(key)
    }
}

impl<K: Ord, V> BatchMap<K, V> for BTreeMap<K, V> {
    fn value(&self, key: &K) -> Option<&V> {
        self.get(key)
    }
}

impl CachedFn {
    /// A call of a batch function with `keys` (`base` holds the method's
    /// receiver, if it is part of the key): the stored value of each, and
    /// the rest from one call of `body` with the keys that missed.
    pub async fn get_or_insert_batch<K, V, Map, F, Fut>(
        &'static self,
        base: Call,
        keys: Vec<K>,
        body: F,
    ) -> Map
    where
        K: Serialize + Clone,
        V: Serialize + DeserializeOwned + Clone,
        Map: BatchMap<K, V>,
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Map>,
    {
        let state = base.state;
        let chosen = state.cache(self);
        let Some(wires) = wire_keys(&chosen, &base, &keys) else {
            return body(keys).await;
        };
        let all = &keys;
        let load = move |missing: Vec<usize>| async move {
            let asked = missing.iter().map(|at| all[*at].clone()).collect();
            let found = body(asked).await;
            missing
                .iter()
                .map(|at| found.value(&all[*at]).cloned())
                .collect()
        };
        let span = state_span(state, chosen.cache(), &wires);
        let values =
            trace::traced(span, chosen.cache().fetch_many(&wires, self.spec.ttl, load)).await;
        keys.iter()
            .zip(values)
            .filter_map(|(key, value)| Some((key.clone(), value?)))
            .collect()
    }

    /// Removes the stored values of `keys` of a batch function (`base` as
    /// in [`CachedFn::get_or_insert_batch`]).
    /// The error if the function's cache cannot be built (tried now), or
    /// the first removal that failed.
    pub async fn invalidate_batch<K: Serialize>(
        &'static self,
        base: Call,
        keys: Vec<K>,
    ) -> Result<()> {
        let chosen = base.state.built_now(self)?;
        for wire in wire_keys(&chosen, &base, &keys).unwrap_or_default() {
            chosen.cache().remove(&wire).await?;
        }
        Ok(())
    }
}

/// The backend key of each of `keys`: that of a call with `base`'s keys
/// (a receiver) and the key alone; `None` if one cannot be serialized (the
/// call runs uncached).
fn wire_keys<K: Serialize>(
    chosen: &super::Chosen<'_>,
    base: &Call,
    keys: &[K],
) -> Option<Vec<key::Built>> {
    keys.iter()
        .map(|key| {
            let mut call = base.duplicate();
            call.arg(key);
            wire_key(chosen.cache(), chosen.function(), &call)
        })
        .collect()
}

/// The span of a batch call: the function's, with the first key.
fn state_span(state: &super::State, cache: &crate::Cache, wires: &[key::Built]) -> tracing::Span {
    let first = wires.first().map_or("", |wire| wire.as_str());
    crate::trace::operation(&state.name, cache.backend().name(), "batch", Some(first))
}
