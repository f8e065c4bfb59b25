//! The generated code reaches the facade under the name the user gave it:
//! this crate depends on `cachekit` as `renamed_cachekit`, and no crate
//! named `cachekit` is in scope here.

use std::sync::atomic::{AtomicUsize, Ordering};

use renamed_cachekit::cache;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(ttl = 60)]
fn double(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * 2
}

#[test]
fn works_under_a_renamed_dependency() {
    assert_eq!(double(21), 42);
    assert_eq!(double(21), 42);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(double_stats().loads, 1);
}
