//! One operation on the server that owns its key: the first attempt on an
//! open connection inline, and connecting and retries (each on the key's
//! owner then) within the operation's `timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cachekit_core::backend::{Error, Result};
use tokio::time::{Instant, timeout_at};

use super::MemcachedBackend;
use super::errors::Failure;
use crate::connection::{Connection, ConnectionError};
use crate::protocol::{Request, Response};
use crate::server::Server;

impl MemcachedBackend {
    /// Sends `request` (for the wire key of `key`) to the owner of `key`.
    /// Within one `timeout` for everything, failures to reach a server are
    /// retried up to `retry_attempts` times, each time on the key's owner
    /// then (another server once the failing one is ejected). All operations
    /// sent here are idempotent.
    ///
    /// The common case, a first attempt on an open connection, is inline and
    /// sets no timer: the [watchdog](crate::watchdog) bounds the call by
    /// `timeout`. Connecting and retries are in
    /// [`attempt_until`](Self::attempt_until), under a timer for what is
    /// left of the `timeout`.
    pub(super) async fn execute(
        &self,
        operation: &'static str,
        key: &str,
        request: Request<'_>,
    ) -> Result<Response> {
        let deadline = Instant::now() + self.inner.config.timeout;
        let server = self.pick(key);
        let Some(connection) = server.pool.ready() else {
            return self
                .attempt_until(deadline, server, 0, operation, key, request)
                .await;
        };
        let error = match connection.call(request).await {
            Ok(response) => {
                server.succeeded();
                return Ok(response);
            }
            // Closed by the server while idle (restarted), and nothing sent:
            // not the server failing now. Its other idle connections likely
            // are too: they are replaced at once.
            Err(ConnectionError::Stale) => {
                server.pool.check_idle();
                return self
                    .attempt_until(deadline, server, 0, operation, key, request)
                    .await;
            }
            Err(error) => Failure::from(error),
        };
        self.failed(server, operation, 0, error)?;
        self.attempt_until(deadline, server, 1, operation, key, request)
            .await
    }

    /// Attempts from number `attempt` on, each under a timer for what is
    /// left until `deadline`, as [`execute`](Self::execute) describes;
    /// `first` is the key's owner when the operation started.
    ///
    /// Boxed: connecting and timers make a large future, which would
    /// otherwise make every operation's future large (and costlier to
    /// allocate and move), though only the first attempt on an open
    /// connection is common.
    fn attempt_until<'a>(
        &'a self,
        deadline: Instant,
        first: &'a Server,
        mut attempt: u32,
        operation: &'static str,
        key: &'a str,
        request: Request<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Response>> + Send + 'a>> {
        Box::pin(async move {
            // A connection found closed while idle, as in `execute`, is
            // replaced once without counting; a new one found so counts.
            let mut stale_seen = false;
            loop {
                let server = self.pick(key);
                let mut used = None;
                let answer = timeout_at(deadline, async {
                    let connection = server.pool.connection().await?;
                    used = Some(Arc::clone(&connection));
                    connection.call(request).await
                })
                .await;
                let error = match answer {
                    Ok(Ok(response)) => {
                        server.succeeded();
                        return Ok(response);
                    }
                    Ok(Err(ConnectionError::Stale)) if !stale_seen => {
                        stale_seen = true;
                        server.pool.check_idle();
                        continue;
                    }
                    Ok(Err(error)) => Failure::from(error),
                    // A retry on another server that ran out of the time
                    // the first one's attempts left: the operation's
                    // budget, not this server's fault.
                    // Neither counted against it nor closing its connection
                    // (shared with other calls; the dropped call's answer is
                    // read and discarded): after a frozen server's timeout,
                    // a retry on a healthy one would otherwise eject it.
                    Err(_) if !std::ptr::eq(server, first) => {
                        return Err(Error::timeout(
                            Self::NAME,
                            operation,
                            self.inner.config.timeout,
                        )
                        .in_domain(first.index));
                    }
                    Err(_) => {
                        // The answer may still come: this connection can no longer be trusted.
                        if let Some(connection) = used {
                            connection.close();
                        }
                        Failure::TimedOut
                    }
                };
                self.failed(server, operation, attempt, error)?;
                attempt += 1;
            }
        })
    }
}

/// Runs `call` on a connection of `server`'s pool, and once more on a new
/// one if the first had been closed by the server while idle (nothing was
/// sent on it; the pool's other such connections are replaced too).
pub(super) async fn on_connection<T, F, Fut>(server: &Server, call: F) -> Result<T, ConnectionError>
where
    F: Fn(Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<T, ConnectionError>>,
{
    match call(server.pool.connection().await?).await {
        Err(ConnectionError::Stale) => {
            server.pool.check_idle();
            call(server.pool.connection().await?).await
        }
        answer => answer,
    }
}
