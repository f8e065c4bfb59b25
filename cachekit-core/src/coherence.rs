//! Keeping an L1 tier coherent with a shared backend: a task per tier
//! applies the backend's notices of changes made elsewhere (see
//! [`Backend::invalidations`]).

use crate::Backend;
use crate::backend::Invalidation;

/// Whether an L1 tier in front of a backend hears of changes made elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coherence {
    /// The backend sends no notices: copies live their `l1_ttl`.
    Unneeded,
    /// A task applies the backend's notices.
    Listening,
    /// The backend sends notices but there is no tokio runtime to hear them
    /// on: the tier must keep no copies, or they would go stale unseen.
    Impossible,
}

/// Applies `backend`'s notices with `apply` on a task of the current tokio
/// runtime, until `apply` returns `false` (its tier is gone) or the backend
/// is.
pub(crate) fn listen(
    backend: &dyn Backend,
    mut apply: impl FnMut(Invalidation) -> bool + Send + 'static,
) -> Coherence {
    let Some(mut notices) = backend.invalidations() else {
        return Coherence::Unneeded;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            backend = backend.name(),
            "the backend invalidates in-process copies, but there is no tokio runtime to hear it on: this tier keeps no copies"
        );
        return Coherence::Impossible;
    };
    runtime.spawn(async move {
        while let Some(notice) = notices.recv().await {
            if !apply(notice) {
                break;
            }
        }
    });
    Coherence::Listening
}
