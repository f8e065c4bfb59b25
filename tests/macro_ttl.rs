//! The lifetimes `#[cache]` gives what it stores, read back from the
//! backend: `ttl_jitter` spreads them, `none_ttl` shortens a `None`'s,
//! `err_ttl` stores an `Err` for its own, shorter one.
//! (tests/macro_l1.rs checks that L1 copies keep to them.)
#![cfg(feature = "macros")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachekit::{Backend, MemoryBackend, cache};

/// The backend whose TTLs the tests read.
fn shared_backend() -> Arc<MemoryBackend> {
    static BACKEND: OnceLock<Arc<MemoryBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(MemoryBackend::new()))
        .clone()
}

#[cache(ttl = 1000, ttl_jitter = 20, namespace = "jitter", backend = shared_backend())]
async fn jittered(n: u64) -> u64 {
    n
}

#[tokio::test]
async fn ttl_jitter_spreads_a_function_s_ttls() {
    let inspect = shared_backend();
    let inspect = inspect.as_ttl_inspect().unwrap();
    let mut ttls = Vec::new();
    for n in 0..100u64 {
        assert_eq!(jittered(n).await, n);
        let key = format!(
            "jitter:jittered:{}",
            cachekit::key::args_part(&(n,)).unwrap()
        );
        match inspect.ttl(&key).await.unwrap() {
            cachekit::KeyTtl::Expires(left) => ttls.push(left),
            other => panic!("expected a TTL on {key}, got {other:?}"),
        }
    }
    let (low, high) = (Duration::from_secs(790), Duration::from_secs(1200));
    assert!(
        ttls.iter().all(|ttl| (low..=high).contains(ttl)),
        "{ttls:?}"
    );
    assert!(
        ttls.iter().any(|ttl| *ttl < Duration::from_secs(900)),
        "{ttls:?}"
    );
    assert!(
        ttls.iter().any(|ttl| *ttl > Duration::from_secs(1100)),
        "{ttls:?}"
    );
}

static FOUND_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(ttl = "1h", none_ttl = "10s", namespace = "negative", backend = shared_backend())]
async fn found(n: u64) -> Option<u64> {
    FOUND_RUNS.fetch_add(1, Ordering::SeqCst);
    (n % 2 == 0).then_some(n)
}

#[tokio::test]
async fn none_results_are_stored_for_their_own_ttl() {
    let inspect = shared_backend();
    let inspect = inspect.as_ttl_inspect().unwrap();
    for n in [2u64, 3] {
        let expected = (n % 2 == 0).then_some(n);
        assert_eq!(found(n).await, expected);
        assert_eq!(found(n).await, expected, "stored, `None` included");
        let key = format!(
            "negative:found:{}",
            cachekit::key::args_part(&(n,)).unwrap()
        );
        let Ok(cachekit::KeyTtl::Expires(left)) = inspect.ttl(&key).await else {
            panic!("expected a TTL on {key}");
        };
        if expected.is_some() {
            assert!(left > Duration::from_secs(3590), "{n}: {left:?}");
        } else {
            assert!(left <= Duration::from_secs(10), "{n}: {left:?}");
            assert!(left > Duration::from_secs(5), "{n}: {left:?}");
        }
    }
    assert_eq!(FOUND_RUNS.load(Ordering::SeqCst), 2, "one run per argument");
}

static LOOKUP_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Odd numbers fail; with `err_ttl`, the failure is stored too, briefly.
#[cache(ttl = "1h", err_ttl = 1, namespace = "errors", backend = shared_backend())]
async fn lookup(n: u64) -> Result<u64, String> {
    LOOKUP_RUNS.fetch_add(1, Ordering::SeqCst);
    if n % 2 == 0 {
        Ok(n)
    } else {
        Err(format!("{n} is odd"))
    }
}

#[tokio::test]
async fn err_results_are_stored_for_their_own_ttl() {
    let inspect = shared_backend();
    let inspect = inspect.as_ttl_inspect().unwrap();
    for n in [4u64, 5] {
        let expected = if n % 2 == 0 {
            Ok(n)
        } else {
            Err(format!("{n} is odd"))
        };
        assert_eq!(lookup(n).await, expected);
        assert_eq!(lookup(n).await, expected, "stored, `Err` included");
        let key = format!("errors:lookup:{}", cachekit::key::args_part(&(n,)).unwrap());
        let Ok(cachekit::KeyTtl::Expires(left)) = inspect.ttl(&key).await else {
            panic!("expected a TTL on {key}");
        };
        let expected_ttl = if n % 2 == 0 { 3600 } else { 1 };
        assert!(
            left <= Duration::from_secs(expected_ttl)
                && left > Duration::from_secs(expected_ttl) / 2,
            "{n}: {left:?}"
        );
    }
    assert_eq!(
        LOOKUP_RUNS.load(Ordering::SeqCst),
        2,
        "one run per argument"
    );
    // The error (and its L1 copy) is gone after `err_ttl`; the value stays.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(lookup(5).await, Err("5 is odd".to_owned()));
    assert_eq!(lookup(4).await, Ok(4));
    assert_eq!(LOOKUP_RUNS.load(Ordering::SeqCst), 3, "the error ran again");
}
