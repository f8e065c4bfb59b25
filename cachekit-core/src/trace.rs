//! The `tracing` spans of cachekit, at debug level: one per cache
//! operation (`cachekit.operation`) and one per backend round trip
//! (`cachekit.backend`), nested under the caller's span. They carry names,
//! outcomes and durations, never a value, and a key only as a hash of the
//! backend key (the same in both spans, so they can be matched).
//!
//! With no subscriber interested in debug spans, making one is a check of
//! the level filter, and nothing is hashed, timed or recorded. A traced
//! future ([`Traced`]) is the future with a few fields around it, not an
//! `async` block: an `async` wrapper with one path for disabled spans and
//! one for enabled ones holds the wrapped future twice, and every cache
//! operation's future (moved at each spawn and `block_on`) grows with it.
//! `docs/benchmarks.md` ("Observability") has the measurements.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tracing::Span;
use tracing::field::Empty;

/// The span of operation `operation` of the cache (or cached function)
/// `cache` on the backend key `key`, if on one.
#[inline]
pub(crate) fn operation(
    cache: &str,
    backend: &'static str,
    operation: &'static str,
    key: Option<&str>,
) -> Span {
    let span = tracing::debug_span!(
        "cachekit.operation",
        cache,
        backend = (!backend.is_empty()).then_some(backend),
        operation,
        key = Empty,
        outcome = Empty,
        elapsed_us = Empty,
    );
    with_key(span, key)
}

/// The span of one round trip of `operation` to `backend` for `key`.
#[inline]
fn round_trip(backend: &'static str, operation: &'static str, key: Option<&str>) -> Span {
    let span = tracing::debug_span!(
        "cachekit.backend",
        backend,
        operation,
        key = Empty,
        outcome = Empty,
        elapsed_us = Empty,
    );
    with_key(span, key)
}

/// `span`, with the hash of `key` recorded if it is enabled.
fn with_key(span: Span, key: Option<&str>) -> Span {
    if let (false, Some(key)) = (span.is_disabled(), key) {
        span.record("key", key_hash(key));
    }
    span
}

/// `future` run in `span`, recording how long it took; its outcome is
/// recorded by the code it runs ([`outcome`]).
pub(crate) fn traced<F: Future>(span: Span, future: F) -> Traced<F, fn(&F::Output) -> Outcome> {
    Traced::new(span, future, |_| None)
}

/// `operation`, one that finds no value (`set`, `delete`, `exists`, `ttl`,
/// `touch`), run in `span` as by [`traced`], recording its outcome: `ok`
/// or `error`.
pub(crate) fn traced_result<T, F>(span: Span, operation: F) -> Traced<F, fn(&F::Output) -> Outcome>
where
    F: Future<Output = crate::Result<T>>,
{
    Traced::new(span, operation, |result| {
        Some(if result.is_ok() { "ok" } else { "error" })
    })
}

/// `attempt`, one round trip of `operation` to `backend` for `key`, run in
/// its span, recording its outcome: `ok`, or the error's kind.
pub(crate) fn backend_call<T, F>(
    backend: &'static str,
    operation: &'static str,
    key: Option<&str>,
    attempt: F,
) -> Traced<F, fn(&F::Output) -> Outcome>
where
    F: Future<Output = crate::Result<T>>,
{
    Traced::new(round_trip(backend, operation, key), attempt, |result| {
        Some(match result {
            Ok(_) => "ok",
            Err(error) => error.kind(),
        })
    })
}

/// Runs `step`, the synchronous first step of an operation, in `span`;
/// `Some` if it finished the operation, recording how long it took.
#[inline]
pub(crate) fn first_step<R>(span: &Span, step: impl FnOnce() -> Option<R>) -> Option<R> {
    if span.is_disabled() {
        return step();
    }
    let started = Instant::now();
    let output = span.in_scope(step);
    if output.is_some() {
        span.record("elapsed_us", elapsed_us(started));
    }
    output
}

/// What a finished future's span records as its outcome, if anything.
pub(crate) type Outcome = Option<&'static str>;

pin_project_lite::pin_project! {
    /// A future run in a span: entered at each poll, and given its
    /// duration (and, by `outcome`, its outcome) when the future is done.
    pub(crate) struct Traced<F, O> {
        #[pin]
        future: F,
        span: Span,
        // `None` when the span is disabled: nothing to time.
        started: Option<Instant>,
        outcome: O,
    }
}

impl<F, O> Traced<F, O> {
    fn new(span: Span, future: F, outcome: O) -> Self {
        Traced {
            started: (!span.is_disabled()).then(Instant::now),
            future,
            span,
            outcome,
        }
    }
}

impl<F: Future, O: Fn(&F::Output) -> Outcome> Future for Traced<F, O> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = {
            let _entered = this.span.enter();
            ready!(this.future.poll(cx))
        };
        if let Some(started) = this.started.take() {
            if let Some(outcome) = (this.outcome)(&output) {
                this.span.record("outcome", outcome);
            }
            this.span.record("elapsed_us", elapsed_us(started));
        }
        Poll::Ready(output)
    }
}

/// Records the outcome of the cache operation in progress (`l1_hit`,
/// `hit`, `miss`, `coalesced`, `error`, ...) on its span; the last one
/// recorded is the operation's.
#[inline]
pub(crate) fn outcome(outcome: &'static str) {
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        let current = Span::current();
        // Only on a span of ours: the caller's may have a field of that name.
        if current
            .metadata()
            .is_some_and(|span| span.name() == "cachekit.operation")
        {
            current.record("outcome", outcome);
        }
    }
}

/// 64 bits of BLAKE3 over the backend key, in hex: enough to tell keys
/// apart in traces, nothing of what they hold.
pub(crate) fn key_hash(key: &str) -> String {
    let hash = blake3::hash(key.as_bytes());
    hash.as_bytes()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn elapsed_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}
