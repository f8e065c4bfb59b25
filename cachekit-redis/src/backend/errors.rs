//! How the redis client's errors become cachekit's: the temporary ones
//! (the server is down, slow, loading, failing over) count for retries and
//! the circuit breaker; the others (a wrong type, a script error) do not.

use std::fmt;
use std::time::Duration;

use cachekit_core::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::RedisBackend;

/// Whether `error` may pass if the operation is tried again: the
/// connection failed, timed out or answered what is not Redis (see
/// [`speaks_no_redis`]), or the server is loading its data,
/// failing over or resharding (`LOADING`, `TRYAGAIN`, `CLUSTERDOWN`,
/// `MASTERDOWN`, `READONLY` during a failover). `MOVED` and `ASK` never get
/// here: the cluster client follows them.
pub(super) fn is_temporary(error: &RedisError) -> bool {
    speaks_no_redis(error)
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Io
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        )
}

/// Whether the connection that gave `error` is to be replaced: the
/// handshake's refusals (a wrong password, a server loading its data), which
/// redis-rs's `ConnectionManager` would otherwise answer to every call from
/// then on, since it reconnects only after I/O errors. A `LOADING` answer to
/// a plain command replaces a healthy connection too: once per failure of
/// the connection in use, so at most one reconnection per answer.
///
/// Also an answer that is not Redis (see [`speaks_no_redis`]): the
/// connection's stream is out of step, and only a new one can recover.
///
/// Also the cluster client's "Unable to send command": its task, which
/// drives every node's connection, is gone (the runtime that ran it was
/// shut down), and it never comes back on its own.
pub(super) fn needs_new_connection(error: &RedisError) -> bool {
    speaks_no_redis(error)
        || matches!(
            error.kind(),
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::BusyLoading)
        )
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
        || (error.is_io_error() && error.to_string().contains("Unable to send command"))
}

/// Whether `error` says the server answered bytes that are not RESP, or
/// a reply of a shape no command of the backend gets from Redis (a
/// wrong-type key is a server error, not this): another program on the
/// port, or a stream out of step. Temporary, so that the breaker counts
/// it, and the connection is replaced, since redis-rs keeps answering
/// such a connection's calls with the same error.
fn speaks_no_redis(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType
    )
}

impl RedisBackend {
    /// The cachekit error of `operation` failing with `error`: temporary
    /// ones are [`Error::Unavailable`], the others [`Error::Rejected`]
    /// (the server refused the operation: retrying changes nothing).
    pub(super) fn failed(&self, operation: &'static str, error: RedisError) -> Error {
        let temporary = is_temporary(&error);
        let failure = RedisFailure {
            operation,
            password: self.inner.password.clone(),
            error,
        };
        if temporary {
            Error::unavailable(Self::NAME, failure)
        } else {
            Error::rejected(Self::NAME, failure)
        }
    }

    /// The error of `operation` running out of time.
    pub(super) fn timed_out(&self, operation: &'static str) -> Error {
        Error::timeout(Self::NAME, operation, self.inner.config.timeout)
    }

    /// The error for a value of `size` bytes over the limit.
    pub(super) fn too_large(&self, size: usize) -> Error {
        Error::ValueTooLarge {
            size,
            limit: super::MAX_VALUE_SIZE,
        }
    }

    /// The error of an answer of the wrong shape.
    pub(super) fn unexpected(&self, operation: &'static str, answer: impl fmt::Debug) -> Error {
        Error::rejected(
            Self::NAME,
            format!("{operation}: unexpected answer {answer:?}"),
        )
    }

    /// The bound of one call.
    pub(super) fn timeout(&self) -> Duration {
        self.inner.config.timeout
    }
}

/// One failed operation: the cause of an [`Error::Unavailable`] or
/// [`Error::Rejected`], with the redis client's error as its source. Its
/// message never shows the password: redis-rs's errors do not contain it,
/// and this type masks it should one ever do.
struct RedisFailure {
    operation: &'static str,
    /// The URL's password, masked out of the message.
    password: Option<String>,
    error: RedisError,
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.error.to_string();
        let message = match &self.password {
            Some(password) if !password.is_empty() => message.replace(password.as_str(), "***"),
            _ => message,
        };
        write!(f, "{}: {message}", self.operation)
    }
}

impl fmt::Debug for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFailure")
            .field("operation", &self.operation)
            .field("error", &self.to_string())
            .finish()
    }
}

impl std::error::Error for RedisFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
