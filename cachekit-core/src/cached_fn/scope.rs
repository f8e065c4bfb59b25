//! Re-pointing every cached function at one backend, for a test.
//!
//! A cached function picks its backend once, at its first call; a test
//! binary that wants to run the same functions against the in-memory
//! backend, then a real memcached, then a failing one, would otherwise need
//! a binary per backend. [`scoped_backend`] re-points them all while its
//! guard lives.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::state::{all_copies, forget_scoped};
use crate::Backend;

/// The generation of the scope in force; 0: none.
static ACTIVE: AtomicU64 = AtomicU64::new(0);
/// The backend of the scope in force, with its generation.
static BACKEND: RwLock<Option<(u64, Arc<dyn Backend>)>> = RwLock::new(None);
/// Held by the scope in force: one at a time, across the threads of a
/// test binary.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread holds a scope: a second one would wait for it
    /// forever.
    static HOLDS: Cell<bool> = const { Cell::new(false) };
}

/// While this guard lives, every cached function of the process (those
/// naming a `backend = ...` too) stores and reads its results in the
/// backend given to [`scoped_backend`], through caches of their own (fresh
/// counters: `name_stats()` counts the scope's calls). Results kept in the
/// in-process L1 tier are kept per scope, so no result crosses from one
/// backend to another, not even one of a call running as the scope starts
/// or ends.
#[derive(Debug)]
#[must_use = "the cached functions use the backend only while the guard lives"]
pub struct ScopedBackend {
    _serial: MutexGuard<'static, ()>,
}

/// Re-points every cached function at `backend` until the returned guard
/// is dropped. For tests: scopes are process-wide, so a second one waits
/// for the first to end (tests in one binary that use them run one after
/// another), and cached functions that other tests of the binary call
/// meanwhile use `backend` too.
///
/// # Panics
///
/// If this thread holds a scope already: it would wait for itself.
///
/// ```
/// use std::sync::Arc;
/// use cachekit_core::MemoryBackend;
/// use cachekit_core::testing::scoped_backend;
///
/// let backend = Arc::new(MemoryBackend::new());
/// let scope = scoped_backend(backend.clone());
/// // ... call cached functions: their entries are in `backend` ...
/// drop(scope);
/// ```
pub fn scoped_backend(backend: Arc<dyn Backend>) -> ScopedBackend {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    assert!(
        !HOLDS.replace(true),
        "scoped_backend: this thread holds a scope already; drop it before starting another"
    );
    let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
    *BACKEND.write().unwrap_or_else(PoisonError::into_inner) = Some((generation, backend));
    forget_l1();
    ACTIVE.store(generation, Ordering::Release);
    ScopedBackend { _serial: serial }
}

impl Drop for ScopedBackend {
    fn drop(&mut self) {
        ACTIVE.store(0, Ordering::Release);
        *BACKEND.write().unwrap_or_else(PoisonError::into_inner) = None;
        forget_scoped();
        forget_l1();
        HOLDS.set(false);
    }
}

/// The generation of the scope in force; 0: none. One atomic load.
#[inline]
pub(super) fn generation() -> u64 {
    ACTIVE.load(Ordering::Acquire)
}

/// The scope in force, if any: its generation and backend. One atomic
/// load when there is none.
pub(super) fn active() -> Option<(u64, Arc<dyn Backend>)> {
    if ACTIVE.load(Ordering::Acquire) == 0 {
        return None;
    }
    BACKEND
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Drops every function's L1 copies: they need not wait out their
/// generation's end to leave (a copy of another generation is never served).
fn forget_l1() {
    for (_, copies) in all_copies() {
        copies.clear();
    }
}
