//! Cached functions' L1 copies, kept coherent with a backend that sends
//! notices of changes made elsewhere (see
//! [`Backend::invalidations`](crate::Backend::invalidations)).
//!
//! A function's L1 keys results by arguments, and the notices name backend
//! keys, so a function over such a backend remembers which function and L1
//! key each backend key it filled belongs to (only then: the map costs
//! nothing to functions over other backends).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use smallvec::SmallVec;

use super::state::{State, all_copies};
use crate::Backend;
use crate::backend::Invalidation;
use crate::coherence::{self, Coherence};

/// A copy: the function that keeps it, and its key in that function's L1.
type Filled = (&'static State, SmallVec<[u8; 64]>);

/// Backend key to the copy filled from it.
static FILLED: LazyLock<DashMap<String, Filled>> = LazyLock::new(DashMap::new);

/// The entries the functions' L1s may hold together (see [`capacity_added`]).
static CAPACITY: AtomicUsize = AtomicUsize::new(0);

/// The fewest entries [`FILLED`] may reach before it starts over.
const FILLED_MIN_BOUND: usize = 1_024;

/// Counts a function's L1 of `entries` into the bound of [`FILLED`].
pub(super) fn capacity_added(entries: usize) {
    CAPACITY.fetch_add(entries, Ordering::Relaxed);
}

/// Applies `backend`'s notices to the functions' L1s, if it sends any.
pub(super) fn listen(backend: &dyn Backend) -> Coherence {
    coherence::listen(backend, |notice| {
        match notice {
            Invalidation::Key(key) => match FILLED.remove(&key) {
                Some((_, (state, l1_key))) => {
                    if let Some(Some(copies)) = state.copies() {
                        copies.invalidate(&l1_key);
                    }
                }
                // A key with no copy still counts as a notice: a fill from
                // it, by any function, may be in flight (the empty key
                // holds nothing).
                None => all_copies()
                    .into_iter()
                    .for_each(|(_, copies)| copies.invalidate(&[])),
            },
            _ => {
                FILLED.clear();
                invalidate_all();
            }
        }
        true
    })
}

/// Remembers that `state`'s copy under `l1_key` comes from `backend_key`,
/// before the copy is kept. Copies evicted from L1 leave their entries
/// behind, so the map starts over, with every copy dropped, past twice the
/// entries the L1s hold together.
pub(super) fn remember(backend_key: &str, state: &'static State, l1_key: &[u8]) {
    let bound = CAPACITY
        .load(Ordering::Relaxed)
        .saturating_mul(2)
        .max(FILLED_MIN_BOUND);
    if FILLED.len() >= bound {
        FILLED.clear();
        invalidate_all();
    }
    FILLED.insert(
        backend_key.to_owned(),
        (state, SmallVec::from_slice(l1_key)),
    );
}

fn invalidate_all() {
    for (_, copies) in all_copies() {
        copies.invalidate_all();
    }
}
