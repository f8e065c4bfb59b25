//! Cached functions' results kept decoded in process: the L1 tier they
//! share, and whether a function uses it.

use std::any::Any;
use std::sync::Arc;
use std::time::SystemTime;

use super::call::Call;
use super::coherent;
use super::policy::ReturnPolicy;
use super::process::shared_l1;
use super::state::Chosen;
use crate::coherence::Coherence;
use crate::l1::{L1, Ticket};
use crate::store::StoreValue;

/// Where a cached function keeps results in process: the attribute picks
/// [`WithL1`] (the default) or [`WithoutL1`] (`l1 = false`).
pub trait L1Mode<T>: 'static {
    /// Whether results are kept at all.
    const KEEPS: bool;
    /// The result in what L1 kept.
    fn unpack(kept: &Kept) -> Option<T>;
    /// What L1 keeps of `value`, `size` bytes encoded.
    fn pack(value: &T, size: usize) -> Option<Kept>;
}

/// Results are kept decoded in the shared L1 tier, and a hit returns a clone.
#[derive(Debug)]
pub enum WithL1 {}

/// Results are not kept in process: every call reads the backend.
#[derive(Debug)]
pub enum WithoutL1 {}

/// A result that the L1 tier can hand out: it is cloned for every hit.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is returned from the in-process L1 tier by cloning, so it must be `Clone + Send + Sync + 'static`",
    label = "the results of this function are kept in L1",
    note = "derive `Clone` for it, or keep this function's results out of L1 with `#[cache(l1 = false)]`"
)]
pub trait L1Value: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> L1Value for T {}

/// Fails to compile, with `L1Value`'s explanation, when policy `P`
/// stores a result that L1 cannot hold; `#[cache]` calls it first so that
/// this is the first error a user sees.
pub fn check_l1_value<P: ReturnPolicy<R>, R>()
where
    P::Stored: L1Value,
{
}

/// A cached function's result as the L1 tier holds it.
#[derive(Clone)]
pub struct Kept {
    value: Arc<dyn Any + Send + Sync>,
    /// The encoded size, charged against L1's byte bound.
    size: usize,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("size", &self.size).finish()
    }
}

impl StoreValue for Kept {
    fn size(&self) -> usize {
        self.size
    }
}

impl<T: L1Value> L1Mode<T> for WithL1 {
    const KEEPS: bool = true;

    fn unpack(kept: &Kept) -> Option<T> {
        // Keys start with the function's identity, and one function stores
        // one type, so the downcast fails only across a bug.
        kept.value.downcast_ref::<T>().cloned()
    }

    fn pack(value: &T, size: usize) -> Option<Kept> {
        // Size 0: the value could not be encoded, so it is not in the backend either.
        (size > 0).then(|| Kept {
            value: Arc::new(value.clone()),
            size,
        })
    }
}

impl<T> L1Mode<T> for WithoutL1 {
    const KEEPS: bool = false;

    fn unpack(_: &Kept) -> Option<T> {
        None
    }

    fn pack(_: &T, _: usize) -> Option<Kept> {
        None
    }
}

/// Drops the L1 copy of `call`'s result, if any.
pub(super) fn forget_in_l1(call: &Call) {
    if let Some(l1) = shared_l1() {
        l1.remove(&call.l1);
    }
}

/// What a call takes before its backend call, to keep a copy of the result
/// after it (see [`L1::fill`](crate::l1::L1::fill)); `None` without an L1 tier.
pub(super) fn ticket() -> Option<Ticket> {
    shared_l1().map(L1::ticket)
}

/// Keeps a copy of `value` in L1 for `call`, read or written under
/// `backend_key` since `ticket`, if mode `M` keeps results and the cache
/// that gave it was chosen in the scope `call` began in (a result from
/// another scope's backend stays out of this one's L1 keys), and can be
/// kept coherent with its backend.
pub(super) fn keep_in_l1<T, M: L1Mode<T>>(
    call: &Call,
    chosen: &Chosen<'_>,
    backend_key: &str,
    ticket: Option<Ticket>,
    value: &T,
    size: usize,
    expires_at: Option<SystemTime>,
) {
    if !M::KEEPS || chosen.generation() != call.generation {
        return;
    }
    let (Some(l1), Some(ticket)) = (shared_l1(), ticket) else {
        return;
    };
    match chosen.coherence() {
        Coherence::Unneeded => {}
        Coherence::Listening => coherent::remember(backend_key, &call.l1),
        Coherence::Impossible => return,
    }
    if let Some(kept) = M::pack(value, size) {
        l1.fill(ticket, &call.l1, kept, expires_at);
    }
}
