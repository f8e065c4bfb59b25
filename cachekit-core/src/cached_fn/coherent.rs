//! Cached functions' L1 copies, kept coherent with a backend that sends
//! notices of changes made elsewhere (see
//! [`Backend::invalidations`](crate::Backend::invalidations)).
//!
//! The shared L1 tier keys results by function and arguments, and the
//! notices name backend keys, so a function over such a backend remembers
//! which L1 key each backend key it filled belongs to (only then: the map
//! costs nothing to functions over other backends).

use std::sync::LazyLock;

use dashmap::DashMap;
use smallvec::SmallVec;

use super::process::{process, shared_l1};
use crate::Backend;
use crate::backend::Invalidation;
use crate::coherence::{self, Coherence};

/// Backend key to the L1 key of the copy filled from it.
static FILLED: LazyLock<DashMap<String, SmallVec<[u8; 64]>>> = LazyLock::new(DashMap::new);

/// The fewest entries [`FILLED`] may reach before it starts over.
const FILLED_MIN_BOUND: usize = 1_024;

/// Applies `backend`'s notices to the shared L1 tier, if it sends any.
pub(super) fn listen(backend: &dyn Backend) -> Coherence {
    coherence::listen(backend, |notice| {
        let Some(l1) = shared_l1() else {
            return false;
        };
        match notice {
            Invalidation::Key(key) => {
                // A key with no copy still counts as a notice: a fill from
                // it may be in flight (the empty key holds nothing).
                let copy = FILLED.remove(&key).map(|(_, l1_key)| l1_key);
                l1.invalidate(copy.unwrap_or_default());
            }
            _ => {
                FILLED.clear();
                l1.invalidate_all();
            }
        }
        true
    })
}

/// Remembers that the copy under `l1_key` comes from `backend_key`, before
/// the copy is kept. Copies evicted from L1 leave their entries behind, so
/// the map starts over, with every copy dropped, past twice L1's bound.
pub(super) fn remember(backend_key: &str, l1_key: &[u8]) {
    let bound = process()
        .map_or(0, |process| process.settings.l1_max_entries)
        .saturating_mul(2)
        .max(FILLED_MIN_BOUND);
    if FILLED.len() >= bound {
        FILLED.clear();
        if let Some(l1) = shared_l1() {
            l1.invalidate_all();
        }
    }
    FILLED.insert(backend_key.to_owned(), SmallVec::from_slice(l1_key));
}
