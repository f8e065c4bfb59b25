//! Notices from a shared backend that entries changed elsewhere, so that
//! caches drop their in-process (L1) copies of them: the backend sends
//! through an [`InvalidationSender`], each L1 tier listens on
//! [`Invalidations`] of its own.

use tokio::sync::broadcast;

/// How many notices wait for a listener that is behind before it misses
/// some (it then drops every copy: see [`Invalidations::recv`]).
const BACKLOG: usize = 4096;

/// What changed in the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// The entry under this key (as `Backend` calls name it, without the
    /// backend's own key prefix) was written, deleted or expired by another
    /// client.
    Key(String),
    /// Any entry may have changed unseen (the backend lost its notices for
    /// a while, as across a reconnect): drop every copy.
    All,
}

/// The backend's end: sends notices to every listener.
#[derive(Debug, Clone)]
pub struct InvalidationSender {
    sender: broadcast::Sender<Invalidation>,
}

impl InvalidationSender {
    /// A sender with no listener yet.
    pub fn new() -> Self {
        InvalidationSender {
            sender: broadcast::channel(BACKLOG).0,
        }
    }

    /// Sends `invalidation` to every listener; nothing happens without one.
    pub fn send(&self, invalidation: Invalidation) {
        let _ = self.sender.send(invalidation);
    }

    /// A new listener, hearing the notices sent from now on: what
    /// [`Backend::invalidations`](crate::Backend::invalidations) returns.
    pub fn subscribe(&self) -> Invalidations {
        Invalidations {
            receiver: self.sender.subscribe(),
        }
    }
}

impl Default for InvalidationSender {
    fn default() -> Self {
        Self::new()
    }
}

/// A listener's end: the notices sent since it subscribed, in order.
#[derive(Debug)]
pub struct Invalidations {
    receiver: broadcast::Receiver<Invalidation>,
}

impl Invalidations {
    /// The next notice; [`Invalidation::All`] when this listener fell so far
    /// behind that it missed some; `None` once the backend is gone.
    pub async fn recv(&mut self) -> Option<Invalidation> {
        match self.receiver.recv().await {
            Ok(invalidation) => Some(invalidation),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Invalidation::All),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
