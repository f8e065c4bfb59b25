//! The deadline: the longest one operation may take, retries included.

use std::future::Future;
use std::time::Duration;

use crate::{Error, Result};

/// The deadline of one backend's operations.
#[derive(Debug)]
pub(super) struct Deadline {
    backend: &'static str,
    timeout: Duration,
    /// The backend bounds its own operations within `timeout` (or never
    /// waits): no timer of ours on top.
    bounded_by_backend: bool,
}

impl Deadline {
    /// A deadline of `timeout` for `backend`'s operations; `own` is the
    /// bound the backend enforces itself, if any.
    pub(super) fn new(backend: &'static str, timeout: Duration, own: Option<Duration>) -> Self {
        Deadline {
            backend,
            timeout,
            bounded_by_backend: own.is_some_and(|own| own <= timeout),
        }
    }

    /// The timeout.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `operation` within the deadline: [`Error::Timeout`] past it.
    pub(super) async fn bound<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if self.bounded_by_backend {
            return future.await;
        }
        match tokio::time::timeout(self.timeout, future).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(self.backend, operation, self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slow_calls_time_out() {
        let deadline = Deadline::new("test", Duration::from_secs(3), None);
        let slow = deadline.bound("get", async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        assert!(matches!(
            slow.await,
            Err(Error::Timeout {
                operation: "get",
                ..
            })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_with_its_own_timeout_gets_no_second_timer() {
        let bounded = Deadline::new("test", Duration::from_secs(3), Some(Duration::from_secs(1)));
        let slow = bounded.bound("get", async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        });
        assert!(slow.await.is_ok(), "the backend's own timeout is trusted");
        let longer = Deadline::new("test", Duration::from_secs(3), Some(Duration::from_secs(5)));
        assert!(
            !longer.bounded_by_backend,
            "a backend bound longer than the layer's keeps the layer's timer"
        );
    }
}
