//! `#[cache(stale = ...)]` and `#[cache(early_refresh)]`: a result past its
//! TTL (or due early) is returned at once while one background refresh
//! runs the body. (The conformance kit checks the same through `Cache` on
//! every backend: stale windows, failed refreshes, late refreshes.)
#![cfg(feature = "macros")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachekit::{MemoryBackend, cache};
use tokio::sync::Semaphore;

/// How many callers read a stale result at once.
const CALLERS: usize = 64;

fn shared_backend() -> Arc<MemoryBackend> {
    static BACKEND: OnceLock<Arc<MemoryBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(MemoryBackend::new()))
        .clone()
}

/// Polls `check` every 20 ms for up to 10 s.
async fn settles(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

static PRICE_RUNS: AtomicUsize = AtomicUsize::new(0);
/// Holds every run of `price` after the first until the test opens it.
static PRICE_GATE: Semaphore = Semaphore::const_new(0);

#[cache(ttl = 1, stale = "30s", namespace = "swr", backend = shared_backend())]
async fn price(item: String) -> usize {
    let run = PRICE_RUNS.fetch_add(1, Ordering::SeqCst);
    if run > 0 {
        PRICE_GATE.acquire().await.expect("never closed").forget();
    }
    item.len() * 100 + run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_result_is_returned_at_once_and_refreshed_once() {
    assert_eq!(price("tea".into()).await, 300);
    // Past the TTL: the L1 copy is gone, the backend's entry is stale.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(price("tea".into())))
        .collect();
    // The refresh is held at the gate: a caller that waited for it would hang.
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 300, "the stale result, at once");
    }
    PRICE_GATE.add_permits(CALLERS);
    assert!(settles(async || price("tea".into()).await == 301).await);
    assert_eq!(PRICE_RUNS.load(Ordering::SeqCst), 2, "one refresh");
    let stats = price_stats();
    assert_eq!(stats.refreshes, 1, "{stats:?}");
    assert!(stats.stale_hits >= 1, "{stats:?}");
}

static QUOTE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Loads of 20 ms against a 60 s TTL, with a beta so large that a read is
/// due for an early refresh but for a chance of 3 * 10^-6 (60 s against
/// 0.02 s * 10^9): L1 copies (on, by default) end at an early draw too, far
/// in the past here, so calls reach the backend.
#[cache(ttl = 60, early_refresh = 1000000000.0, namespace = "early", backend = shared_backend())]
async fn quote(symbol: String) -> usize {
    tokio::time::sleep(Duration::from_millis(20)).await;
    symbol.len() * 100 + QUOTE_RUNS.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test]
async fn a_hot_result_is_refreshed_before_it_expires() {
    assert_eq!(quote("ACME".into()).await, 400);
    // Due early: returned at once, refreshed behind.
    assert_eq!(quote("ACME".into()).await, 400);
    assert!(settles(async || quote("ACME".into()).await > 400).await);
    let stats = quote_stats();
    assert!(stats.refreshes >= 1, "{stats:?}");
    assert_eq!(stats.stale_hits, 0, "never stale: {stats:?}");
}

struct Catalog {
    markup: usize,
}

static ITEM_RUNS: AtomicUsize = AtomicUsize::new(0);

impl Catalog {
    /// A method refreshes with its `Arc<Self>` moved into the refresh.
    #[cache(ttl = 1, stale = "30s", skip(self), namespace = "catalog", backend = shared_backend())]
    async fn item(self: Arc<Self>, id: u64) -> usize {
        id as usize * self.markup + ITEM_RUNS.fetch_add(1, Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_method_refreshes_with_its_owned_self() {
    let catalog = Arc::new(Catalog { markup: 10 });
    assert_eq!(Arc::clone(&catalog).item(7).await, 70);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(Arc::clone(&catalog).item(7).await, 70, "stale, at once");
    assert!(settles(async || Arc::clone(&catalog).item(7).await == 71).await);
}

static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Succeeds once, then fails: with `err_ttl`, a call stores its `Err`, but
/// a background refresh that gets one keeps the stale `Ok`.
#[cache(ttl = 1, stale = "30s", err_ttl = 60, namespace = "flaky", backend = shared_backend())]
async fn flaky(n: u64) -> Result<u64, String> {
    match FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) {
        0 => Ok(n),
        _ => Err("the source is down".to_owned()),
    }
}

#[tokio::test]
async fn a_refresh_that_gets_an_err_keeps_the_stale_value() {
    assert_eq!(flaky(9).await, Ok(9));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        settles(async || {
            assert_eq!(flaky(9).await, Ok(9), "stale, never the refresh's `Err`");
            flaky_stats().load_errors >= 1
        })
        .await
    );
    assert_eq!(flaky(9).await, Ok(9));
    assert!(FLAKY_RUNS.load(Ordering::SeqCst) >= 2);
}

static FAILING_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Always fails: its `Err` is stored for `err_ttl`, never served stale.
#[cache(ttl = 60, stale = "30s", err_ttl = 1, namespace = "failing", backend = shared_backend())]
async fn failing(n: u64) -> Result<u64, String> {
    FAILING_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(format!("{n} failed"))
}

#[tokio::test]
async fn an_err_is_stored_for_err_ttl_and_not_served_stale() {
    // 1.5 s of calls every 10 ms: a run, then one after `err_ttl` ends.
    for _ in 0..150 {
        assert_eq!(failing(3).await, Err("3 failed".to_owned()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let runs = FAILING_RUNS.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&runs),
        "{runs} runs in 1.5 s with err_ttl = 1"
    );
    assert_eq!(
        failing_stats().refreshes,
        0,
        "an error is not refreshed stale"
    );
}

static PLAIN_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A plain `fn`: on a miss its body runs on the caller's thread; a refresh
/// runs it on the cache runtime's blocking pool.
#[cache(ttl = 1, stale = "30s", namespace = "plain-stale", backend = shared_backend())]
fn plain_price(item: String) -> (usize, String) {
    let run = PLAIN_RUNS.fetch_add(1, Ordering::SeqCst);
    let thread = std::thread::current().name().unwrap_or("").to_owned();
    (item.len() * 100 + run, thread)
}

#[test]
fn a_plain_fn_serves_stale_and_refreshes_off_the_caller_s_thread() {
    let caller = std::thread::current().name().unwrap_or("").to_owned();
    let (first, ran_on) = plain_price("tea".into());
    assert_eq!(
        (first, ran_on.as_str()),
        (300, caller.as_str()),
        "a miss runs here"
    );
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(plain_price("tea".into()).0, 300, "stale, at once");
    let mut refreshed = None;
    for _ in 0..500 {
        let (value, ran_on) = plain_price("tea".into());
        if value == 301 {
            refreshed = Some(ran_on);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran_on = refreshed.expect("refreshed within 10 s");
    assert_ne!(ran_on, caller, "the refresh ran elsewhere");
    assert_eq!(PLAIN_RUNS.load(Ordering::SeqCst), 2, "one refresh");
}
