//! The calls waiting for their responses ([`Waiter`]), and the calls
//! completed, to answer once the state is unlocked ([`Reply`]).

use tokio::sync::oneshot;

use super::ConnectionError;
use crate::protocol::Response;

/// A call waiting for its responses.
#[derive(Debug)]
pub(super) enum Waiter {
    /// A `call` waiting for the reader task: waits for one response.
    One(oneshot::Sender<Result<Response, ConnectionError>>),
    /// A `call_many` waiting for the reader task: waits for `expected`
    /// responses.
    Many {
        /// The responses received so far.
        responses: Vec<Response>,
        /// How many responses complete the call.
        expected: usize,
        /// Where the responses go once all are in.
        reply: oneshot::Sender<Result<Vec<Response>, ConnectionError>>,
    },
    /// The call holding the read role, which takes its responses itself and
    /// removes this waiter when done. Only ever at the front. If the reader
    /// task finds it there, that caller was dropped and its `remaining`
    /// responses are discarded.
    Reader {
        /// How many of its responses its caller had not taken when it gave
        /// the read role back.
        remaining: usize,
    },
}

impl Waiter {
    /// Fails the call with `error` (ignored if the caller is gone; a reading
    /// caller is woken through [`Shared::reading_caller`](super::Shared::reading_caller) instead).
    pub(super) fn fail(self, error: ConnectionError) {
        match self {
            Waiter::One(reply) => {
                let _ = reply.send(Err(error));
            }
            Waiter::Many { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Waiter::Reader { .. } => {}
        }
    }
}

/// A completed call, to be answered once the state lock is released.
#[derive(Debug)]
pub(super) enum Reply {
    /// The response of a `call`.
    One(oneshot::Sender<Result<Response, ConnectionError>>, Response),
    /// The responses of a `call_many`.
    Many(
        oneshot::Sender<Result<Vec<Response>, ConnectionError>>,
        Vec<Response>,
    ),
}

impl Reply {
    /// Answers the call (ignored if the caller is gone).
    pub(super) fn send(self) {
        match self {
            Reply::One(reply, response) => {
                let _ = reply.send(Ok(response));
            }
            Reply::Many(reply, responses) => {
                let _ = reply.send(Ok(responses));
            }
        }
    }
}
