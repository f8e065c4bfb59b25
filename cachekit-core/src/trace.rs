//! The `tracing` spans of cachekit, at debug level: one per cache
//! operation (`cachekit.operation`) and one per backend round trip
//! (`cachekit.backend`), nested under the caller's span. They carry names,
//! outcomes and durations, never a value, and a key only as a hash of the
//! backend key (the same in both spans, so they can be matched).
//!
//! With no subscriber interested in debug spans, making one is a check of
//! the level filter, and nothing is hashed, timed or recorded.

use std::future::Future;
use std::time::Instant;

use tracing::field::Empty;
use tracing::{Instrument, Span};

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
    if let (false, Some(key)) = (span.is_disabled(), key) {
        span.record("key", key_hash(key));
    }
    span
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
    if let (false, Some(key)) = (span.is_disabled(), key) {
        span.record("key", key_hash(key));
    }
    span
}

/// Runs `future` in `span`, recording how long it took.
pub(crate) async fn traced<F: Future>(span: Span, future: F) -> F::Output {
    if span.is_disabled() {
        return future.await;
    }
    let started = Instant::now();
    let output = future.instrument(span.clone()).await;
    span.record("elapsed_us", elapsed_us(started));
    output
}

/// Runs `operation`, one that finds no value (`set`, `delete`, `exists`,
/// `ttl`, `touch`), in `span`, as [`traced`] does, recording its outcome:
/// `ok` or `error`.
pub(crate) async fn traced_result<T, F>(span: Span, operation: F) -> crate::Result<T>
where
    F: Future<Output = crate::Result<T>>,
{
    if span.is_disabled() {
        return operation.await;
    }
    let result = traced(span.clone(), operation).await;
    span.record("outcome", if result.is_ok() { "ok" } else { "error" });
    result
}

/// Runs `attempt`, one round trip of `operation` to `backend` for `key`,
/// in its span, recording its outcome (`ok`, or the error's kind).
pub(crate) async fn backend_call<T, F>(
    backend: &'static str,
    operation: &'static str,
    key: Option<&str>,
    attempt: F,
) -> crate::Result<T>
where
    F: Future<Output = crate::Result<T>>,
{
    let span = round_trip(backend, operation, key);
    if span.is_disabled() {
        return attempt.await;
    }
    let started = Instant::now();
    let result = attempt.instrument(span.clone()).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.kind(),
    };
    span.record("outcome", outcome);
    span.record("elapsed_us", elapsed_us(started));
    result
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
