//! Cached functions' results kept decoded in process: whether a function
//! keeps them, and the L1 copies it keeps.
//!
//! Each function (for each `Self` type) has an L1 of its own, typed by its
//! result: a hit clones the result out of the store, with no shared,
//! type-erased value to downcast and no reference count to touch (the
//! store itself is found by one downcast per call). Its keys are the call's
//! serialized arguments alone (the function is the store), and a copy
//! records the [scope](super::scope) generation it was made in, so no
//! result crosses from one scope's backend to another's.

use std::time::{Duration, SystemTime};

use super::call::Call;
use super::clock::{self, Tick};
use super::coherent;
use super::policy::ReturnPolicy;
use super::state::{Chosen, Made, State};
use crate::coherence::Coherence;
use crate::l1::{L1, Ticket};
use crate::stats::L1Stats;
use crate::store::{Check, Expiry, StoreValue};

/// Where a cached function keeps results in process: the attribute picks
/// [`WithL1`] (the default) or [`WithoutL1`] (`l1 = false`).
pub trait L1Mode<T>: 'static {
    /// The result kept for `call`, if any.
    fn hit(call: &Call) -> Option<T>;
    /// What a call takes before its backend call, to keep a copy of the
    /// result after it (see [`L1::fill`]); `None` when nothing is kept.
    fn ticket(call: &Call) -> Option<Ticket>;
    /// Keeps a copy of `value`, `size` bytes encoded, for `call`, until
    /// `expires_at` at the latest.
    fn keep(call: &Call, ticket: Ticket, value: &T, size: usize, expires_at: Option<SystemTime>);
}

/// Results are kept decoded in the function's L1, and a hit returns a clone.
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

/// A cached function's result as its L1 holds it.
#[derive(Clone)]
pub(super) struct Kept<T> {
    value: T,
    /// The encoded size, charged against L1's byte bound.
    size: usize,
    /// The generation of the scope the copy was made in (0: none).
    generation: u64,
    /// When it was made, then (once kept) when it stops being served, on
    /// the [coarse clock](clock).
    deadline: Tick,
}

impl<T> std::fmt::Debug for Kept<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync> StoreValue for Kept<T> {
    fn size(&self) -> usize {
        self.size
    }

    /// Checked at every hit, on the coarse clock, [`clock::SLACK`] early.
    /// Counted from when the copy was made, before its TTL was worked out,
    /// so a thread paused in between only brings the deadline closer.
    fn expiry(&mut self, ttl: Duration) -> Expiry {
        match ttl.checked_sub(clock::SLACK) {
            Some(left) if !left.is_zero() => {
                self.deadline = self.deadline.plus(left);
                Expiry::Itself
            }
            _ => Expiry::Over,
        }
    }
}

/// One function's L1, seen without its result type: what notices, scopes
/// and stats need.
pub(super) trait Copies: std::fmt::Debug + Send + Sync {
    /// Drops the copy under `key`.
    fn remove(&self, key: &[u8]);
    /// Drops every copy.
    fn clear(&self);
    fn stats(&self, name: &str) -> L1Stats;
    /// Hits so far: copies taken.
    fn hits(&self) -> u64;
    /// Exports the L1's size under the function's `name` (with the `metrics` feature).
    fn export_as(&self, name: &str);
}

impl<T: L1Value> Copies for L1<Kept<T>> {
    fn remove(&self, key: &[u8]) {
        L1::remove(self, key);
    }

    fn clear(&self) {
        L1::clear(self);
    }

    fn stats(&self, name: &str) -> L1Stats {
        L1::stats(self, name)
    }

    fn hits(&self) -> u64 {
        L1::hits(self)
    }

    fn export_as(&self, name: &str) {
        L1::export_as(self, name);
    }
}

/// The L1 of `state` for results of type `T`, made at first use; `None`
/// when L1 is off, or the configuration cannot be read yet, or the state
/// keeps another type (an associated function of a generic `impl` that
/// never names `Self` has one state for every instantiation: the first
/// type seen keeps copies, the others read the backend).
#[inline]
fn copies<T: L1Value>(state: &'static State) -> Option<&'static L1<Kept<T>>> {
    let made = match state.made() {
        Some(made) => made?,
        None => state.make_copies(|config| {
            // Made once per function, for the process (as its state is).
            let l1: &'static L1<Kept<T>> = Box::leak(Box::new(
                L1::sharing_notices(config, coherent::notices()).counting_hits(),
            ));
            Made {
                copies: l1,
                typed: l1,
            }
        })?,
    };
    made.typed.downcast_ref()
}

impl<T: L1Value> L1Mode<T> for WithL1 {
    #[inline]
    fn hit(call: &Call) -> Option<T> {
        call.part.as_ref()?;
        let now = clock::now();
        let copy = copies::<T>(call.state)?.get_if(&call.l1, |copy| {
            if now >= copy.deadline {
                // This call's fill replaces it, unless the result is not
                // one to keep: then it must not take room until pushed out.
                Check::Remove
            } else if copy.generation != call.generation {
                Check::Leave
            } else {
                Check::Take
            }
        })?;
        Some(copy.value)
    }

    fn ticket(call: &Call) -> Option<Ticket> {
        Some(copies::<T>(call.state)?.ticket())
    }

    fn keep(call: &Call, ticket: Ticket, value: &T, size: usize, expires_at: Option<SystemTime>) {
        // Size 0: the value could not be encoded, so it is not in the backend either.
        if size == 0 {
            return;
        }
        if let Some(l1) = copies::<T>(call.state) {
            let copy = Kept {
                value: value.clone(),
                size,
                generation: call.generation,
                deadline: clock::now(),
            };
            l1.fill(ticket, &call.l1, copy, expires_at);
        }
    }
}

impl<T> L1Mode<T> for WithoutL1 {
    fn hit(_: &Call) -> Option<T> {
        None
    }

    fn ticket(_: &Call) -> Option<Ticket> {
        None
    }

    fn keep(_: &Call, _: Ticket, _: &T, _: usize, _: Option<SystemTime>) {}
}

/// Drops the L1 copy of `call`'s result, if any.
pub(super) fn forget_in_l1(call: &Call) {
    if let Some(Some(copies)) = call.state.copies() {
        copies.remove(&call.l1);
    }
}

/// Keeps a copy of `value` in L1 for `call`, read or written under
/// `backend_key` since `ticket`, if mode `M` keeps results and the cache
/// that gave it was chosen in the scope `call` began in (a result from
/// another scope's backend stays out of this one's copies), and can be
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
    let Some(ticket) = ticket else {
        return;
    };
    if chosen.generation() != call.generation {
        return;
    }
    match chosen.coherence() {
        Coherence::Unneeded => {}
        Coherence::Listening => coherent::remember(backend_key, call.state, &call.l1),
        Coherence::Impossible => return,
    }
    M::keep(call, ticket, value, size, expires_at);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{Kept, clock};
    use crate::L1Config;
    use crate::l1::L1;

    fn copy() -> Kept<u64> {
        Kept {
            value: 7,
            size: 8,
            generation: 0,
            deadline: clock::now(),
        }
    }

    #[test]
    fn a_copy_stops_before_its_entry_and_one_within_the_slack_is_not_kept() {
        let l1 = L1::<Kept<u64>>::new(L1Config::default());
        let soon = SystemTime::now() + Duration::from_millis(10);
        l1.fill(l1.ticket(), b"soon", copy(), Some(soon));
        assert!(!l1.contains(b"soon"), "10 ms left is within the slack");

        let later = SystemTime::now() + Duration::from_secs(5);
        l1.fill(l1.ticket(), b"later", copy(), Some(later));
        let kept = l1.get(b"later").expect("kept");
        let left = Duration::from_secs(5) - clock::SLACK;
        assert!(
            kept.deadline <= clock::now().plus(left),
            "never past the entry"
        );
        assert!(kept.deadline > clock::now().plus(Duration::from_secs(4)));
    }
}
