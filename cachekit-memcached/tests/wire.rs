//! What reaches the servers: placement over the fleet, the key prefix, the
//! 30-day clamp, the size limit and hostile keys.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cachekit_core::ConfigSource;
use cachekit_core::backend::Bytes;
use cachekit_core::{Backend, Cache, Capability, Error};
use cachekit_memcached::MemcachedBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_on_every_server_where_the_ring_says() {
    let servers = common::servers(3);
    let backend = common::backend(&servers, |_| {});
    for i in 0..300 {
        backend
            .set(&format!("spread:{i}"), Bytes::from_static(b"v"), None)
            .await
            .unwrap();
    }
    let counts = common::item_counts(&servers);
    assert_eq!(counts.iter().sum::<u64>(), 300);
    assert!(
        counts.iter().all(|&c| c >= 60),
        "keys must spread over all three servers: {counts:?}"
    );
    for i in (0..300).step_by(37) {
        let key = format!("spread:{i}");
        let owner = backend.server_for(&key).to_string();
        assert!(
            common::raw(&owner, &format!("mg {key} v")).starts_with("VA 1"),
            "{key} not on {owner}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_is_on_the_wire() {
    let servers = common::servers(1);
    let backend = common::backend(&servers, |c| c.key_prefix = "myapp:".into());
    backend
        .set("user:1", Bytes::from_static(b"ada"), None)
        .await
        .unwrap();
    let address = servers[0].address();
    assert_eq!(common::raw(&address, "mg myapp:user:1 v"), "VA 3\r\nada");
    assert_eq!(common::raw(&address, "mg user:1 v"), "EN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_over_thirty_days_are_clamped_on_the_wire() {
    let servers = common::servers(1);
    let backend = common::backend(&servers, |_| {});
    let year = Duration::from_secs(365 * 24 * 3600);
    backend
        .set("long", Bytes::from_static(b"v"), Some(year))
        .await
        .unwrap();
    let answer = common::raw(&servers[0].address(), "mg long t v");
    let ttl: i64 = answer
        .split_whitespace()
        .find_map(|flag| flag.strip_prefix('t'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no TTL in {answer:?}"));
    assert!(
        (2_591_990..=2_592_000).contains(&ttl),
        "TTL on the server: {ttl}"
    );
    // Memcached would read an unclamped TTL as a Unix time in the past: the entry would be gone.
    assert!(backend.get("long").await.unwrap().is_some());
}

/// The largest value memcached stores under any key with 1 MiB items (its
/// default `-I`): 1 MiB less the longest key (250 bytes) and its 59 bytes of
/// item overhead.
const DEFAULT_VALUE_LIMIT: usize = (1 << 20) - 250 - 59;

/// The largest value with `max_item_size = 2048`.
const SMALL_VALUE_LIMIT: usize = 2048 - 250 - 59;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_of_exactly_the_limit_is_stored_under_any_key_and_reads_back() {
    let servers = common::servers(1);
    let backend = common::backend(&servers, |_| {});
    assert_eq!(
        backend.capabilities().max_value_size,
        Some(DEFAULT_VALUE_LIMIT)
    );
    let value = Bytes::from(
        (0..DEFAULT_VALUE_LIMIT)
            .map(|i| i as u8)
            .collect::<Vec<u8>>(),
    );
    // The longest key makes the largest item: exactly memcached's item size.
    for key in ["k".to_owned(), "k".repeat(250)] {
        backend
            .set(&key, value.clone(), None)
            .await
            .unwrap_or_else(|error| panic!("a {}-byte key: {error}", key.len()));
        assert_eq!(backend.get(&key).await.unwrap(), Some(value.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_one_over_the_limit_is_refused_before_sending_and_the_old_value_survives() {
    let servers = common::servers(1);
    let backend = common::backend(&servers, |_| {});
    let too_large = Bytes::from(vec![1u8; DEFAULT_VALUE_LIMIT + 1]);
    // memcached would store it under a short key, and refuse it under a
    // long one, dropping the key's previous value.
    for key in ["k".to_owned(), "k".repeat(250)] {
        backend
            .set(&key, Bytes::from_static(b"small"), None)
            .await
            .unwrap();
        let refused = backend.set(&key, too_large.clone(), None).await;
        let Err(error @ Error::ValueTooLarge { size, limit }) = &refused else {
            panic!(
                "a {}-byte key: expected ValueTooLarge, got {refused:?}",
                key.len()
            );
        };
        assert_eq!(
            (*size, *limit),
            (DEFAULT_VALUE_LIMIT + 1, DEFAULT_VALUE_LIMIT)
        );
        assert!(
            error.to_string().contains(&DEFAULT_VALUE_LIMIT.to_string()),
            "the message states the limit: {error}"
        );
        assert_eq!(
            backend.get(&key).await.unwrap(),
            Some(Bytes::from_static(b"small")),
            "a {}-byte key keeps its value",
            key.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_the_item_size_are_refused_before_sending() {
    let servers = common::servers(1);
    let backend = common::backend(&servers, |c| c.max_item_size = 2048);
    let size = SMALL_VALUE_LIMIT + 1;
    match backend.set("big", Bytes::from(vec![0u8; size]), None).await {
        Err(Error::ValueTooLarge {
            size: refused,
            limit,
        }) => {
            assert_eq!((refused, limit), (size, SMALL_VALUE_LIMIT))
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert_eq!(common::raw(&servers[0].address(), "mg big v"), "EN");

    // Through a cached function: the value comes back, uncached.
    let cache = Cache::builder()
        .backend(backend)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let big = vec![7u8; 5000];
    assert_eq!(
        cache
            .get_or_insert_with("big", None, || async { big.clone() })
            .await,
        big
    );
    assert_eq!(cache.get::<Vec<u8>>("big").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_the_server_limit_are_refused_with_size_and_limit() {
    // The server's own limit (1 MiB by default) with a client limit above it.
    let servers = common::servers(1);
    let backend = common::backend(&servers, |c| c.max_item_size = 4 << 20);
    let value = Bytes::from(vec![1u8; 2 << 20]);
    match backend.set("huge", value, None).await {
        Err(Error::ValueTooLarge { size, limit }) => {
            assert_eq!((size, limit), (2 << 20, (4 << 20) - 250 - 59))
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_never_reach_the_server_raw() {
    let servers = common::servers(1);
    let backend = Arc::new(common::backend(&servers, |_| {}));
    let long = "k".repeat(300);
    let hostile = ["has space", "crlf\r\nflush_all", long.as_str()];
    for key in hostile {
        let direct = backend.set(key, Bytes::from_static(b"v"), None).await;
        assert!(
            matches!(direct, Err(Error::InvalidKey { .. })),
            "{key:?}: {direct:?}"
        );
    }
    let cache = Cache::builder()
        .shared_backend(backend.clone())
        .namespace("hostile")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    cache.set("canary", &1u8, None).await.unwrap();
    for (i, key) in hostile.iter().enumerate() {
        cache.set(key, &i, None).await.unwrap();
        assert_eq!(cache.get::<usize>(key).await.unwrap(), Some(i));
    }
    // `flush_all` never ran: the canary is still there.
    assert_eq!(cache.get::<u8>("canary").await.unwrap(), Some(1));
    assert_eq!(common::item_count(&servers[0].address()), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_ttl_are_unsupported_and_say_to_use_redis() {
    let servers = common::servers(1);
    let cache = Cache::builder()
        .backend(common::backend(&servers, |_| {}))
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let lock = cache.lock("k", Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(
        lock,
        Error::Unsupported {
            backend: "memcached",
            capability: Capability::Lock
        }
    ));
    assert!(lock.to_string().contains("Redis"), "{lock}");
    let ttl = cache.ttl("k").await.unwrap_err();
    assert!(matches!(
        ttl,
        Error::Unsupported {
            capability: Capability::TtlInspect,
            ..
        }
    ));
    assert!(ttl.to_string().contains("Redis"), "{ttl}");
    cache.set("k", &1u8, None).await.unwrap();
    assert!(
        cache
            .touch("k", Some(Duration::from_secs(60)))
            .await
            .unwrap(),
        "touch is supported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_answers_keys_spread_over_servers() {
    let servers = common::servers(3);
    let backend = common::backend(&servers, |_| {});
    let keys: Vec<String> = (0..100).map(|i| format!("many:{i}")).collect();
    for key in keys.iter().step_by(2) {
        backend
            .set(key, Bytes::from(key.clone()), None)
            .await
            .unwrap();
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = backend.get_many(&refs).await.unwrap();
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        assert_eq!(
            value,
            (i % 2 == 0).then(|| Bytes::from(key.clone())),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_many_stores_keys_spread_over_servers_and_checks_all_before_sending() {
    let servers = common::servers(3);
    let backend = common::backend(&servers, |c| c.max_item_size = 2048);
    let keys: Vec<String> = (0..90).map(|i| format!("setmany:{i}")).collect();
    let entries: Vec<(&str, Bytes)> = keys
        .iter()
        .map(|key| (key.as_str(), Bytes::from(key.clone())))
        .collect();
    backend
        .set_many(&entries, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let counts = common::item_counts(&servers);
    assert_eq!(counts.iter().sum::<u64>(), 90);
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    for key in keys.iter().step_by(7) {
        let owner = backend.server_for(key).to_string();
        let stored = common::raw(&owner, &format!("mg {key} v"));
        assert_eq!(stored, format!("VA {}\r\n{key}", key.len()));
    }

    // One entry too large: refused with its size, and nothing is sent.
    let fresh = [
        ("setmany:fresh", Bytes::from_static(b"v")),
        ("setmany:big", Bytes::from(vec![0u8; SMALL_VALUE_LIMIT + 1])),
    ];
    match backend.set_many(&fresh, None).await {
        Err(Error::ValueTooLarge { size, limit }) => {
            assert_eq!((size, limit), (SMALL_VALUE_LIMIT + 1, SMALL_VALUE_LIMIT))
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let owner = backend.server_for("setmany:fresh").to_string();
    assert_eq!(common::raw(&owner, "mg setmany:fresh v"), "EN");
}

#[test]
fn registered_for_resolution() {
    let names: Vec<&str> = cachekit_core::__private::factories()
        .iter()
        .map(|f| f.name)
        .collect();
    assert!(names.contains(&MemcachedBackend::NAME), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_stored_with_a_binary_key_by_another_client_reads_back() {
    // Another client stores `ns:foo` as a binary key (base64 `bnM6Zm9v`):
    // memcached then echoes the key in base64 with the `b` flag.
    let servers = common::servers(1);
    let address = servers[0].address();
    assert_eq!(common::raw(&address, "ms bnM6Zm9v 3 b\r\nbar"), "HD");
    let backend = common::backend(&servers, |c| c.retry_attempts = 0);
    assert_eq!(
        backend
            .get("ns:foo")
            .await
            .expect("not a protocol error")
            .as_deref(),
        Some(&b"bar"[..])
    );
    assert!(backend.exists("ns:foo").await.unwrap());
    assert_eq!(backend.live_servers(), [address.as_str()], "not ejected");
}
