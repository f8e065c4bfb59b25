//! A cached function's own L1: sized by `l1_capacity` or the setting,
//! reported under the function's path, and never serving a copy past its
//! backend entry's expiry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit::cache;

/// Distinct arguments each sized function is called with.
const CALLS: u64 = 1_000;

#[cache(namespace = "l1-small", l1_capacity = 50)]
fn small(n: u64) -> u64 {
    n + 1
}

#[cache(namespace = "l1-default")]
fn default_sized(n: u64) -> u64 {
    n + 1
}

/// Entries in the L1 of the function at `path`, if it has one.
fn l1_entries(path: &str) -> Option<u64> {
    cachekit::stats()
        .l1
        .iter()
        .find(|tier| tier.name == path)
        .map(|tier| tier.entries)
}

#[test]
fn l1_capacity_bounds_the_function_s_own_l1() {
    for n in 0..CALLS {
        assert_eq!(small(n), n + 1);
        assert_eq!(default_sized(n), n + 1);
    }
    let small_entries = l1_entries("macro_l1::small").expect("small has an L1");
    assert!(
        (1..=50).contains(&small_entries),
        "`l1_capacity = 50` holds at most 50: {small_entries}"
    );
    assert_eq!(
        l1_entries("macro_l1::default_sized"),
        Some(CALLS),
        "the `l1_max_entries` default (10,000) holds every one"
    );
    // What is kept answers from L1: the last argument called is kept in both.
    let before = (small_stats().l1_hits, default_sized_stats().l1_hits);
    assert_eq!(small(CALLS - 1), CALLS);
    assert_eq!(default_sized(CALLS - 1), CALLS);
    assert_eq!(small_stats().l1_hits, before.0 + 1);
    assert_eq!(default_sized_stats().l1_hits, before.1 + 1);
}

static SHORT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(namespace = "l1-expiry", ttl = 1)]
async fn short_lived(n: u64) -> u64 {
    SHORT_RUNS.fetch_add(1, Ordering::SeqCst);
    n
}

/// The L1 copy never outlives the backend entry it was read from: a call
/// just past the TTL runs the body again.
#[tokio::test]
async fn a_copy_never_outlives_its_backend_entry() {
    assert_eq!(short_lived(7).await, 7);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(short_lived(7).await, 7);
    assert_eq!(SHORT_RUNS.load(Ordering::SeqCst), 1, "a hit within the TTL");
    assert_eq!(short_lived_stats().l1_hits, 1);
    tokio::time::sleep(Duration::from_millis(750)).await;
    assert_eq!(short_lived(7).await, 7);
    assert_eq!(
        SHORT_RUNS.load(Ordering::SeqCst),
        2,
        "past the 1 s TTL: neither the copy nor the entry answers"
    );
}

static ABSENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(namespace = "l1-negative", ttl = 60, none_ttl = 1)]
async fn absent(n: u64) -> Option<u64> {
    ABSENT_RUNS.fetch_add(1, Ordering::SeqCst);
    let _ = n;
    None
}

/// A `None` kept in L1 lives no longer than its own, shorter TTL.
#[tokio::test]
async fn a_none_copy_lives_for_none_ttl() {
    assert_eq!(absent(3).await, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(absent(3).await, None);
    assert_eq!(ABSENT_RUNS.load(Ordering::SeqCst), 1, "a hit within 1 s");
    assert_eq!(absent_stats().l1_hits, 1);
    tokio::time::sleep(Duration::from_millis(750)).await;
    assert_eq!(absent(3).await, None);
    assert_eq!(
        ABSENT_RUNS.load(Ordering::SeqCst),
        2,
        "past the 1 s none_ttl (the function's TTL is 60 s): loaded again"
    );
}
