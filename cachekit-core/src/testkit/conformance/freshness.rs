//! Stale-while-revalidate and early refresh through a [`Cache`] over the
//! backend: they live in the entry's envelope, so every backend with expiry
//! serves them, memcached included.
//!
//! Loaders wait on a gate the case opens, so a caller that waited for a
//! loader would hang the case (and fail it at its time limit) rather than
//! pass slowly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::case::{Case, Ctx, Need};
use crate::{Cache, ConfigSource, Revalidate};

/// How many callers read a stale entry at once.
const CALLERS: usize = 64;

/// The fresh part of the entries of these cases.
const TTL: Duration = Duration::from_secs(1);

/// Their stale window: long enough for a slow server's second-grained
/// clock, short enough to wait out.
const STALE: Duration = Duration::from_secs(3);

/// The longest a case polls for a background refresh's effect.
const SETTLE: Duration = Duration::from_secs(10);

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "freshness::stale_served_while_one_refresh_runs",
        need: Need::Ttl,
        run: |c| Box::pin(stale_served_while_one_refresh_runs(c)),
    },
    Case {
        name: "freshness::one_refresh_across_caches",
        need: Need::Ttl,
        run: |c| Box::pin(one_refresh_across_caches(c)),
    },
    Case {
        name: "freshness::failed_refresh_keeps_stale_until_window_ends",
        need: Need::Ttl,
        run: |c| Box::pin(failed_refresh_keeps_stale_until_window_ends(c)),
    },
    Case {
        name: "freshness::late_refresh_loses_to_newer_set",
        need: Need::Ttl,
        run: |c| Box::pin(late_refresh_loses_to_newer_set(c)),
    },
    Case {
        name: "freshness::late_refresh_loses_to_invalidation",
        need: Need::Ttl,
        run: |c| Box::pin(late_refresh_loses_to_invalidation(c)),
    },
    Case {
        name: "freshness::early_refresh_before_expiry",
        need: Need::Ttl,
        run: |c| Box::pin(early_refresh_before_expiry(c)),
    },
];

/// A cache over the case's backend, without L1 (every read reaches the
/// backend): a process of its own.
fn cache(c: &Ctx) -> Cache {
    Cache::builder()
        .shared_backend(Arc::clone(&c.backend))
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap_or_else(|error| panic!("{}: cannot build a cache: {error}", c.name()))
}

/// A loader that counts its runs, waits for `gate`, and returns `value`.
fn gated(
    runs: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
    value: &str,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = String> + Send>> + Send + 'static {
    let (runs, gate, value) = (Arc::clone(runs), Arc::clone(gate), value.to_owned());
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let _open = gate.acquire().await.expect("the gate is never closed");
            value
        })
    }
}

/// Stores `value` under `key` through `cache` with [`TTL`] and [`STALE`],
/// then waits until it is stale.
async fn stored_then_stale(cache: &Cache, key: &str, value: &str) {
    let value = value.to_owned();
    let revalidate = Revalidate::stale(STALE);
    let got = cache
        .get_or_revalidate(key, Some(TTL), revalidate, move || async move { value })
        .await;
    assert!(!got.is_empty());
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
}

/// Polls `check` every 20 ms until it holds or [`SETTLE`] passes.
async fn settles(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 64 callers of a stale entry all get it at once (the refresh's loader is
/// held until they have), one refresh runs, and its value replaces the entry.
async fn stale_served_while_one_refresh_runs(c: &Ctx) {
    let (cache, name, key) = (cache(c), c.name(), c.key("hot"));
    stored_then_stale(&cache, &key, "old").await;
    let (runs, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let (cache, key, loader) = (cache.clone(), key.clone(), gated(&runs, &gate, "new"));
        callers.spawn(async move {
            cache
                .get_or_revalidate(&key, Some(TTL), Revalidate::stale(STALE), loader)
                .await
        });
    }
    while let Some(got) = callers.join_next().await {
        assert_eq!(got.unwrap(), "old", "{name}: a caller of a stale entry");
    }
    gate.add_permits(CALLERS);
    let refreshed =
        settles(async || cache.get::<String>(&key).await.unwrap().as_deref() == Some("new")).await;
    assert!(
        refreshed,
        "{name}: the refresh's value never replaced the stale one"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "{name}: refreshes of one stale entry"
    );
    let stats = cache.stats();
    assert_eq!(stats.refreshes, 1, "{name}: {stats:?}");
    assert_eq!(stats.stale_hits, CALLERS as u64, "{name}: {stats:?}");
    // The refreshed entry is fresh: reading it starts nothing.
    let again = cache
        .get_or_revalidate(&key, Some(TTL), Revalidate::stale(STALE), || async {
            panic!("a fresh entry is not refreshed") as String
        })
        .await;
    assert_eq!(again, "new", "{name}");
    if let Some(inspect) = c.backend.as_ttl_inspect() {
        let wire = cache.backend_key(&key);
        let left = inspect.ttl(&wire).await.unwrap();
        let stored = TTL + STALE;
        assert!(
            matches!(left, crate::KeyTtl::Expires(d) if d > STALE && d <= stored),
            "{name}: the backend keeps the entry for TTL + stale, {stored:?}: {left:?}"
        );
    }
}

/// Two caches over one backend (two processes) read one stale entry at
/// once: with a backend lock, one of them refreshes; without, each at most once.
async fn one_refresh_across_caches(c: &Ctx) {
    let (first, second, name, key) = (cache(c), cache(c), c.name(), c.key("shared"));
    stored_then_stale(&first, &key, "old").await;
    let (runs, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let mut callers = JoinSet::new();
    for i in 0..CALLERS {
        let cache = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let (key, loader) = (key.clone(), gated(&runs, &gate, "new"));
        callers.spawn(async move {
            cache
                .get_or_revalidate(&key, Some(TTL), Revalidate::stale(STALE), loader)
                .await
        });
    }
    while let Some(got) = callers.join_next().await {
        assert_eq!(got.unwrap(), "old", "{name}: a caller of a stale entry");
    }
    gate.add_permits(CALLERS);
    let refreshed =
        settles(async || first.get::<String>(&key).await.unwrap().as_deref() == Some("new")).await;
    assert!(refreshed, "{name}: no refresh replaced the stale entry");
    let most = if c.backend.capabilities().lock { 1 } else { 2 };
    let ran = runs.load(Ordering::SeqCst);
    assert!(
        (1..=most).contains(&ran),
        "{name}: {ran} refreshes across two caches (lock: {})",
        c.backend.capabilities().lock
    );
}

/// A refresh that fails keeps the stale value served, and counts a load
/// error; once the stale window ends, the entry is gone and callers load.
async fn failed_refresh_keeps_stale_until_window_ends(c: &Ctx) {
    let (cache, name, key) = (cache(c), c.name(), c.key("failing"));
    stored_then_stale(&cache, &key, "old").await;
    let failing = || async { Err::<String, &str>("the source is down") };
    // Each stale read after a failure starts another refresh (once the
    // failed one has let go of the key), which fails too.
    for failures in 1..=2 {
        let failed = settles(async || {
            let got = cache
                .try_get_or_revalidate(&key, Some(TTL), Revalidate::stale(STALE), failing)
                .await;
            assert_eq!(got, Ok("old".to_owned()), "{name}: a stale read");
            cache.stats().load_errors >= failures
        })
        .await;
        assert!(failed, "{name}: failed refresh {failures} was not counted");
    }
    assert_eq!(
        cache.get::<String>(&key).await.unwrap().as_deref(),
        Some("old"),
        "{name}: a failed refresh must not remove the stale entry"
    );
    // Past TTL + stale (and a second for servers that count whole seconds).
    tokio::time::sleep(STALE + Duration::from_secs(1)).await;
    let gone = settles(async || cache.get::<String>(&key).await.unwrap().is_none()).await;
    assert!(gone, "{name}: the entry outlived its stale window");
    let got = cache
        .try_get_or_revalidate(&key, Some(TTL), Revalidate::stale(STALE), failing)
        .await;
    assert_eq!(
        got,
        Err("the source is down"),
        "{name}: after the window, callers load"
    );
}

/// A `set` made (by another cache) while a refresh loads wins over it.
async fn late_refresh_loses_to_newer_set(c: &Ctx) {
    let (cache, other, name, key) = (cache(c), cache(c), c.name(), c.key("set-meanwhile"));
    for (round, writer) in [&cache, &other].into_iter().enumerate() {
        stored_then_stale(&cache, &key, "old").await;
        let (runs, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
        let loader = gated(&runs, &gate, "refreshed late");
        let got = cache
            .get_or_revalidate(&key, Some(TTL), Revalidate::stale(STALE), loader)
            .await;
        assert_eq!(got, "old", "{name}");
        assert!(
            settles(async || runs.load(Ordering::SeqCst) == 1).await,
            "{name}: no refresh"
        );
        writer
            .set(&key, "newer", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        gate.add_permits(1);
        // The refresh returns at once; give its write (which must not come) time.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            cache.get::<String>(&key).await.unwrap().as_deref(),
            Some("newer"),
            "{name}: a late refresh overwrote a newer set (round {round}: the set by {})",
            ["the same cache", "another cache"][round]
        );
        cache.delete(&key).await.unwrap();
    }
}

/// An invalidation made while a refresh loads wins over it: the key stays gone.
async fn late_refresh_loses_to_invalidation(c: &Ctx) {
    let (cache, name, key) = (cache(c), c.name(), c.key("deleted-meanwhile"));
    stored_then_stale(&cache, &key, "old").await;
    let (runs, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let loader = gated(&runs, &gate, "refreshed late");
    let got = cache
        .get_or_revalidate(&key, Some(TTL), Revalidate::stale(STALE), loader)
        .await;
    assert_eq!(got, "old", "{name}");
    assert!(
        settles(async || runs.load(Ordering::SeqCst) == 1).await,
        "{name}: no refresh"
    );
    assert!(
        cache.delete(&key).await.unwrap(),
        "{name}: the stale entry was there"
    );
    gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cache.get::<String>(&key).await.unwrap(),
        None,
        "{name}: a late refresh brought an invalidated key back"
    );
}

/// With early refresh, a fresh entry whose load was slow (against its TTL)
/// is refreshed before it expires, without serving anything stale.
async fn early_refresh_before_expiry(c: &Ctx) {
    let (cache, name, key) = (cache(c), c.name(), c.key("early"));
    // Loads of 50 ms, beta 10^9: a read 10 s before the fresh end is due
    // unless a draw falls below 10 / (0.05 * 10^9): a chance of 2 * 10^-7.
    let revalidate = Revalidate::stale(STALE).early_refresh(1e9);
    let ttl = Some(Duration::from_secs(10));
    let runs = Arc::new(AtomicUsize::new(0));
    let loader = |value: &'static str| {
        let runs = Arc::clone(&runs);
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            value.to_owned()
        }
    };
    let first = cache
        .get_or_revalidate(&key, ttl, revalidate, loader("first"))
        .await;
    assert_eq!(first, "first", "{name}");
    let read = cache
        .get_or_revalidate(&key, ttl, revalidate, loader("second"))
        .await;
    assert_eq!(
        read, "first",
        "{name}: a read due early gets the entry at once"
    );
    let refreshed =
        settles(async || cache.get::<String>(&key).await.unwrap().as_deref() == Some("second"))
            .await;
    assert!(refreshed, "{name}: no early refresh of an entry due early");
    let stats = cache.stats();
    assert_eq!(
        (stats.refreshes, stats.stale_hits),
        (1, 0),
        "{name}: {stats:?}"
    );
    // Without early refresh, the same fresh entry is left alone.
    let plain = Revalidate::stale(STALE);
    let again = cache
        .get_or_revalidate(&key, ttl, plain, || async { panic!("not due") as String })
        .await;
    assert_eq!(again, "second", "{name}");
}
