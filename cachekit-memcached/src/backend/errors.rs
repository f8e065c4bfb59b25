//! The errors the memcached backend returns, each in the failure domain of
//! the server concerned, and what a failed attempt leads to.

use std::sync::atomic::Ordering;

use cachekit_core::{Error, Result};

use super::MemcachedBackend;
use crate::connection::ConnectionError;
use crate::protocol::Response;
use crate::server::Server;

impl MemcachedBackend {
    /// The error for a value of `size` bytes over [`Inner::max_value_size`](super::Inner::max_value_size).
    pub(super) fn too_large(&self, size: usize) -> Error {
        Error::ValueTooLarge {
            size,
            limit: self.inner.max_value_size,
        }
    }

    /// The error for a value of `size` bytes, within the limit, that the
    /// server refused as too large: its item size (`-I`) is smaller than
    /// `max_item_size`, which the warning says to fix.
    pub(super) fn refused_as_too_large(&self, operation: &'static str, size: usize) -> Error {
        if !self.inner.warned_item_size.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                size,
                max_item_size = self.inner.config.max_item_size,
                "memcached {operation}: the server refused a value as too large for its item size (-I); set max_item_size to the servers' -I"
            );
        }
        self.too_large(size)
    }

    /// The error of `operation` running out of time on `server`.
    pub(super) fn timed_out(&self, operation: &'static str, server: &Server) -> Error {
        Error::timeout(Self::NAME, operation, self.inner.config.timeout).in_domain(server.index)
    }

    /// Records that attempt number `attempt` on `server` failed with
    /// `error`: `Ok` if the operation is to be retried, else its error.
    pub(super) fn failed(
        &self,
        server: &Server,
        operation: &'static str,
        attempt: u32,
        error: Failure,
    ) -> Result<()> {
        server.failed();
        let config = &self.inner.config;
        match error {
            Failure::TimedOut => Err(self.timed_out(operation, server)),
            Failure::Connection(error) if attempt >= config.retry_attempts => {
                Err(unavailable(server, error))
            }
            Failure::Connection(error) => {
                tracing::debug!(server = %server.name, %error, attempt, "memcached {operation} failed: retrying");
                Ok(())
            }
        }
    }

    /// An answer that does not fit the request, in the domain of the
    /// server that owns `key`.
    pub(super) fn unexpected(&self, operation: &str, key: &str, response: Response) -> Error {
        let reason = match response {
            Response::ServerError(message) => format!("{operation}: SERVER_ERROR {message}"),
            Response::ClientError(message) => format!("{operation}: CLIENT_ERROR {message}"),
            other => format!("{operation}: unexpected answer {other:?}"),
        };
        Error::unavailable(Self::NAME, reason).in_domain(self.pick(key).index)
    }

    /// `true` for a hit (`HD`), `false` for a miss (`EN`, `NF`).
    pub(super) fn hit_or_miss(
        &self,
        operation: &str,
        key: &str,
        response: Response,
    ) -> Result<bool> {
        match response {
            Response::Stored => Ok(true),
            Response::Miss => Ok(false),
            other => Err(self.unexpected(operation, key, other)),
        }
    }
}

/// Why an attempt failed.
pub(super) enum Failure {
    /// The operation's deadline passed: not retried.
    TimedOut,
    /// The connection failed: retried while attempts are left.
    Connection(ConnectionError),
}

impl From<ConnectionError> for Failure {
    fn from(error: ConnectionError) -> Self {
        match error {
            // The watchdog failed the connection.
            ConnectionError::TimedOut => Failure::TimedOut,
            error => Failure::Connection(error),
        }
    }
}

/// `error` of `server`: an [`Error::Unavailable`] confined to the server's
/// failure domain, with the connection's error as its cause.
pub(super) fn unavailable(server: &Server, error: ConnectionError) -> Error {
    let failure = ServerFailure {
        server: server.name.clone(),
        error,
    };
    Error::unavailable(MemcachedBackend::NAME, failure).in_domain(server.index)
}

/// One server's failure: the cause of an [`Error::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[error("{server}: {error}")]
struct ServerFailure {
    /// The server, as `host:port`.
    server: String,
    /// What failed.
    #[source]
    error: ConnectionError,
}
