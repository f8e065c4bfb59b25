//! `#[cache(tags = [...])]` and `#[cache(invalidate_all)]`: invalidating a
//! tag, or all of a function's results, makes the next calls misses. (The
//! conformance kit checks tags through `Cache` on every backend, across
//! caches.)
#![cfg(feature = "macros")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use cachekit::{Cache, ConfigSource, MemoryBackend, cache};

fn shared_backend() -> Arc<MemoryBackend> {
    static BACKEND: OnceLock<Arc<MemoryBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(MemoryBackend::new()))
        .clone()
}

static ORDER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(tags = ["user:{user}", "shop:{shop}"], namespace = "shop", backend = shared_backend())]
async fn order_count(user: u64, shop: String) -> usize {
    ORDER_RUNS.fetch_add(1, Ordering::SeqCst);
    user as usize + shop.len()
}

/// The cache `invalidate_tag` is called on: the function's namespace.
fn shop_cache() -> Cache {
    Cache::builder()
        .shared_backend(shared_backend())
        .namespace("shop")
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

fn runs() -> usize {
    ORDER_RUNS.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_tag_made_from_the_arguments_invalidates_its_results() {
    for (user, shop) in [(1, "north"), (2, "north"), (1, "south")] {
        order_count(user, shop.into()).await;
    }
    let before = runs();
    assert_eq!(order_count(1, "north".into()).await, 6);
    assert_eq!(runs(), before, "a hit");
    shop_cache().invalidate_tag("user:1").await.unwrap();
    order_count(2, "north".into()).await;
    assert_eq!(runs(), before, "user 2 is untouched");
    order_count(1, "north".into()).await;
    order_count(1, "south".into()).await;
    assert_eq!(runs(), before + 2, "both results of user 1 ran again");
    shop_cache().invalidate_tag("shop:north").await.unwrap();
    order_count(1, "south".into()).await;
    assert_eq!(runs(), before + 2, "south is untouched");
    order_count(2, "north".into()).await;
    assert_eq!(runs(), before + 3);
    // Every result carries the function's tag too.
    order_count_invalidate_all().await.unwrap();
    order_count(1, "south".into()).await;
    assert_eq!(runs(), before + 4);
}

static RATE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(invalidate_all, namespace = "rates", backend = shared_backend())]
fn rate(currency: String) -> usize {
    RATE_RUNS.fetch_add(1, Ordering::SeqCst);
    currency.len()
}

#[test]
fn invalidate_all_drops_every_result_of_a_plain_function() {
    for currency in ["EUR", "USD", "EUR"] {
        assert_eq!(rate(currency.into()), 3);
    }
    assert_eq!(RATE_RUNS.load(Ordering::SeqCst), 2);
    rate_invalidate_all().unwrap();
    rate("EUR".into());
    rate("USD".into());
    assert_eq!(RATE_RUNS.load(Ordering::SeqCst), 4, "both ran again");
    rate("USD".into());
    assert_eq!(RATE_RUNS.load(Ordering::SeqCst), 4, "stored again");
}

/// The source `profile` reads, which a test changes.
static PROFILE_VERSION: AtomicUsize = AtomicUsize::new(1);

#[cache(tags = ["profile:{id}"], namespace = "profiles", backend = shared_backend())]
async fn profile(id: u64) -> usize {
    let version = PROFILE_VERSION.load(Ordering::SeqCst);
    if id == 2 {
        // A write and its invalidation land while this body runs.
        PROFILE_VERSION.fetch_add(1, Ordering::SeqCst);
        profile_invalidate_all().await.unwrap();
    }
    version
}

#[tokio::test]
async fn a_refresh_that_raced_an_invalidation_is_not_served() {
    let read = profile_refresh(2).await;
    let now = PROFILE_VERSION.load(Ordering::SeqCst);
    assert_eq!(read + 1, now, "the body read the version before the write");
    // The refreshed value was stored under the generation before the
    // invalidation: the next call reads the source again.
    assert_eq!(profile(2).await, now, "not the stale {read}");
}
