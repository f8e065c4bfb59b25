//! The deadline: the longest one operation may take, retries included.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// The deadline of one backend's operations.
#[derive(Debug)]
pub(super) struct Deadline {
    backend: &'static str,
    timeout: Duration,
    /// The bound the backend enforces on one attempt itself, if any: an
    /// attempt it ends in time gets no timer of ours on top.
    own: Option<Duration>,
}

impl Deadline {
    /// A deadline of `timeout` for `backend`'s operations; `own` is the
    /// bound the backend enforces on one attempt itself, if any.
    pub(super) fn new(backend: &'static str, timeout: Duration, own: Option<Duration>) -> Self {
        Deadline {
            backend,
            timeout,
            own,
        }
    }

    /// The timeout.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the first attempt of an operation: with no timer when the
    /// backend's own bound is within the timeout, else [`Error::Timeout`]
    /// past the timeout.
    pub(super) async fn bound<T>(
        &self,
        operation: &'static str,
        attempt: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if self.own.is_some_and(|own| own <= self.timeout) {
            return attempt.await;
        }
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(self.expired(operation)))
    }

    /// Runs an attempt of an operation due by `deadline`: with no timer
    /// when the backend's own bound ends it sooner, else [`Error::Timeout`]
    /// at the deadline.
    pub(super) async fn until<T>(
        &self,
        deadline: Instant,
        operation: &'static str,
        attempt: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let left = deadline.saturating_duration_since(Instant::now());
        if self.own.is_some_and(|own| own <= left) {
            return attempt.await;
        }
        tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(self.expired(operation)))
    }

    fn expired(&self, operation: &'static str) -> Error {
        Error::timeout(self.backend, operation, self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn slow() -> Result<()> {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_time_out() {
        let deadline = Deadline::new("test", Duration::from_secs(3), None);
        assert!(matches!(
            deadline.bound("get", slow()).await,
            Err(Error::Timeout {
                operation: "get",
                ..
            })
        ));
        let due = Instant::now() + Duration::from_secs(1);
        assert!(deadline.until(due, "get", slow()).await.is_err());
        assert_eq!(Instant::now(), due, "ended at the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_with_its_own_timeout_gets_no_second_timer() {
        let bounded = Deadline::new("test", Duration::from_secs(3), Some(Duration::from_secs(1)));
        assert!(
            bounded.bound("get", slow()).await.is_ok(),
            "the backend's own timeout is trusted"
        );
        let due = Instant::now() + Duration::from_secs(2);
        assert!(bounded.until(due, "get", slow()).await.is_ok());
        // A retry with less time left than the backend's bound gets a timer.
        let due = Instant::now() + Duration::from_millis(500);
        assert!(bounded.until(due, "get", slow()).await.is_err());

        let longer = Deadline::new("test", Duration::from_secs(3), Some(Duration::from_secs(5)));
        assert!(
            longer.bound("get", slow()).await.is_err(),
            "a backend bound longer than the layer's keeps the layer's timer"
        );
    }
}
