//! Cached functions' L1 copies, kept coherent with a backend that sends
//! notices of changes made elsewhere (see
//! [`Backend::invalidations`](crate::Backend::invalidations)).
//!
//! A function's L1 keys results by arguments, and the notices name backend
//! keys, so a function over such a backend remembers which function and L1
//! key each backend key it filled belongs to (only then: the map costs
//! nothing to functions over other backends).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

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

/// The notices applied to cached functions' copies, which every function's
/// L1 shares (see [`L1::fill`](crate::l1::L1::fill)): a notice stops every
/// fill in flight, whichever function's, so one count for all of them
/// makes a notice one increment.
static NOTICES: LazyLock<Arc<AtomicU64>> = LazyLock::new(Arc::default);

/// The entries the L1s of functions over notifying backends may hold
/// together (see [`remember`]).
static CAPACITY: AtomicUsize = AtomicUsize::new(0);

/// The fewest entries [`FILLED`] may reach before it starts over.
const FILLED_MIN_BOUND: usize = 1_024;

/// The notice count the functions' L1s share.
pub(super) fn notices() -> Arc<AtomicU64> {
    Arc::clone(&NOTICES)
}

/// Applies `backend`'s notices to the functions' L1s, if it sends any.
pub(super) fn listen(backend: &dyn Backend) -> Coherence {
    coherence::listen(backend, |notice| {
        // Counted first: a fill from the changed key that is remembered
        // after the lookup below then sees the notice and is not kept.
        NOTICES.fetch_add(1, Ordering::SeqCst);
        match notice {
            Invalidation::Key(key) => {
                if let Some((_, (state, l1_key))) = FILLED.remove(&key) {
                    if let Some(Some(copies)) = state.copies() {
                        copies.remove(&l1_key);
                    }
                }
            }
            _ => {
                FILLED.clear();
                clear_all();
            }
        }
        true
    })
}

/// Remembers that `state`'s copy under `l1_key` comes from `backend_key`,
/// before the copy is kept. Copies evicted from L1 leave their entries
/// behind, so the map starts over, with every copy dropped, past twice the
/// entries the L1s of functions over notifying backends hold together.
pub(super) fn remember(backend_key: &str, state: &'static State, l1_key: &[u8]) {
    if let Some(entries) = state.first_remembered() {
        CAPACITY.fetch_add(entries, Ordering::Relaxed);
    }
    let bound = CAPACITY
        .load(Ordering::Relaxed)
        .saturating_mul(2)
        .max(FILLED_MIN_BOUND);
    if FILLED.len() >= bound {
        NOTICES.fetch_add(1, Ordering::SeqCst);
        FILLED.clear();
        clear_all();
    }
    FILLED.insert(
        backend_key.to_owned(),
        (state, SmallVec::from_slice(l1_key)),
    );
}

fn clear_all() {
    for (_, copies) in all_copies() {
        copies.clear();
    }
}
