//! Why calls fail: [`ConnectionError`], what a caller gets, and [`Failure`],
//! why a connection failed, kept to fail the calls that come after.

use std::io;

use crate::protocol::{ProtocolError, Response};

/// Why a call on a [`Connection`](super::Connection) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    /// The TCP connection could not be established.
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// The TCP connection was not established within the connect timeout.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// The TLS handshake failed, or did not end within the connect
    /// timeout; the message names the cause and the setting to change.
    #[error("{0}")]
    Tls(String),
    /// Reading or writing the socket failed, or the server closed it.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// [`Connection::close`](super::Connection::close) was called.
    #[error("the connection was closed")]
    Closed,
    /// A call waited longer than the connection's timeout.
    #[error("no answer within the timeout")]
    TimedOut,
    /// The connection, idle, had been closed by the server: the call was
    /// not sent.
    #[error("the server had closed the idle connection")]
    Stale,
    /// The server's bytes are not valid responses to the requests sent.
    #[error("protocol error: {0}")]
    Protocol(#[source] ProtocolError),
}

/// Why a connection failed, kept to fail the calls that come after.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// Closed by [`Connection::close`](super::Connection::close).
    Closed,
    /// Failed by the watchdog: the calls numbered below `late` (numbering
    /// the calls queued from 0) waited longer than the timeout; the others
    /// did not, and fail as closed.
    TimedOut {
        /// The calls below this number timed out.
        late: u64,
    },
    /// An I/O error, by kind and message (`io::Error` is not `Clone`).
    Io(io::ErrorKind, String),
    /// A protocol error.
    Protocol(ProtocolError),
}

impl Failure {
    /// The failure for the end of the stream.
    pub(super) fn end_of_stream() -> Failure {
        Failure::Io(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection".to_owned(),
        )
    }

    /// The failure that follows `response`, if it is a `CLIENT_ERROR` or an
    /// `ERROR`: see [`ProtocolError::Rejected`].
    pub(super) fn after(response: &Response) -> Option<Failure> {
        let rejected = match response {
            Response::ClientError(message) => format!("CLIENT_ERROR {message}"),
            Response::Error => "ERROR".to_owned(),
            _ => return None,
        };
        Some(Failure::Protocol(ProtocolError::Rejected(rejected)))
    }

    /// The error of call number `call` (see [`State::queued`](super::State::queued)).
    pub(super) fn error_for(&self, call: u64) -> ConnectionError {
        match self {
            Failure::TimedOut { late } if call < *late => ConnectionError::TimedOut,
            failure => failure.error(),
        }
    }

    /// The error a call gets for this failure: for a timeout, that of a
    /// call that did not time out itself.
    pub(super) fn error(&self) -> ConnectionError {
        match self {
            Failure::Closed | Failure::TimedOut { .. } => ConnectionError::Closed,
            Failure::Io(kind, message) => {
                ConnectionError::Io(io::Error::new(*kind, message.clone()))
            }
            Failure::Protocol(error) => ConnectionError::Protocol(error.clone()),
        }
    }
}

impl From<io::Error> for Failure {
    /// Keeps the error's kind and message.
    fn from(error: io::Error) -> Self {
        Failure::Io(error.kind(), error.to_string())
    }
}
