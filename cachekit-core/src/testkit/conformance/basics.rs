//! The required operations: hooks that agree with the declared flags,
//! read-write-delete, values as opaque bytes, `get_many` and `set_many`,
//! and a `Cache` over the backend that checks its capabilities.

use std::time::Duration;

use bytes::Bytes;

use super::case::{Case, Ctx, Need};
use crate::{Cache, Capability, DomainState, Error, key};

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "basics::hooks_agree_with_flags",
        need: Need::Nothing,
        run: |c| Box::pin(hooks_agree_with_flags(c)),
    },
    Case {
        name: "basics::read_write_delete",
        need: Need::Nothing,
        run: |c| Box::pin(read_write_delete(c)),
    },
    Case {
        name: "basics::opaque_values",
        need: Need::Nothing,
        run: |c| Box::pin(opaque_values(c)),
    },
    Case {
        name: "basics::get_many_matches_get",
        need: Need::Nothing,
        run: |c| Box::pin(get_many_matches_get(c)),
    },
    Case {
        name: "basics::set_many_matches_set",
        need: Need::Nothing,
        run: |c| Box::pin(set_many_matches_set(c)),
    },
    Case {
        name: "basics::cache_checks_capabilities",
        need: Need::Nothing,
        run: |c| Box::pin(cache_checks_capabilities(c)),
    },
];

/// The `as_*` hooks are offered exactly when the flags say so, and the
/// declared limits leave room for cachekit's keys.
async fn hooks_agree_with_flags(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let caps = b.capabilities();
    assert_eq!(
        b.as_ttl_inspect().is_some(),
        caps.ttl_inspect,
        "{name}: ttl_inspect hook vs flag"
    );
    assert_eq!(
        b.as_touch().is_some(),
        caps.touch,
        "{name}: touch hook vs flag"
    );
    assert_eq!(
        b.as_lock().is_some(),
        caps.lock,
        "{name}: lock hook vs flag"
    );
    assert!(
        caps.max_key_len >= key::MIN_BACKEND_KEY_LEN,
        "{name}: max_key_len too small for cachekit keys"
    );
    if caps.max_ttl.is_some() || caps.touch || caps.ttl_inspect {
        assert!(
            caps.ttl,
            "{name}: max_ttl, touch or ttl_inspect without ttl"
        );
    }
}

/// `health` (named after the backend, every domain up), a miss, a write read back, an overwrite, and deletes.
async fn read_write_delete(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let health = b
        .health()
        .await
        .unwrap_or_else(|e| panic!("{name}: health: {e}"));
    assert_eq!(health.backend, b.name(), "{name}: health names the backend");
    for domain in &health.domains {
        assert_eq!(
            domain.state,
            DomainState::Up,
            "{name}: health: every domain of a running server is up: {health:?}"
        );
        assert!(domain.latency.is_some(), "{name}: {domain:?} has a latency");
    }
    let k = c.key("basic");
    assert_eq!(
        b.get(&k).await.unwrap(),
        None,
        "{name}: fresh key is a miss"
    );
    assert!(
        !b.exists(&k).await.unwrap(),
        "{name}: fresh key does not exist"
    );
    b.set(&k, Bytes::from_static(b"one"), None).await.unwrap();
    assert_eq!(
        b.get(&k).await.unwrap().as_deref(),
        Some(&b"one"[..]),
        "{name}: read back"
    );
    assert!(b.exists(&k).await.unwrap(), "{name}: exists after set");
    b.set(&k, Bytes::from_static(b"two"), None).await.unwrap();
    assert_eq!(
        b.get(&k).await.unwrap().as_deref(),
        Some(&b"two"[..]),
        "{name}: overwrite"
    );
    assert!(
        b.delete(&k).await.unwrap(),
        "{name}: delete of a present key is true"
    );
    assert!(
        !b.delete(&k).await.unwrap(),
        "{name}: delete of a missing key is false"
    );
    assert_eq!(b.get(&k).await.unwrap(), None, "{name}: miss after delete");
}

/// Empty, binary (every byte, and protocol lookalikes) and large values
/// round-trip unchanged.
async fn opaque_values(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let all_bytes: Vec<u8> = (0..=255u8).chain(b"\r\nEND\r\n".iter().copied()).collect();
    for (label, value) in [
        ("empty", Vec::new()),
        ("binary", all_bytes),
        ("large", vec![b'x'; 100_000]),
    ] {
        let k = c.key(label);
        b.set(&k, Bytes::from(value.clone()), None).await.unwrap();
        let back = b.get(&k).await.unwrap();
        assert_eq!(
            back.as_deref(),
            Some(&value[..]),
            "{name}: {label} value must round-trip"
        );
        b.delete(&k).await.unwrap();
    }
}

/// `get_many` answers every key, in order, as `get` would.
async fn get_many_matches_get(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let keys: Vec<String> = (0..20).map(|i| c.key(&format!("many{i}"))).collect();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        b.set(k, Bytes::from(format!("v{i}")), None).await.unwrap();
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let many = b.get_many(&refs).await.unwrap();
    assert_eq!(many.len(), keys.len(), "{name}: get_many answers every key");
    for (i, (k, value)) in keys.iter().zip(many).enumerate() {
        let expected = (i % 3 != 0).then(|| Bytes::from(format!("v{i}")));
        assert_eq!(value, expected, "{name}: get_many for key {i}");
        b.delete(k).await.unwrap();
    }
}

/// `set_many` stores every entry as `set` would, and refuses an unsafe key.
async fn set_many_matches_set(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let keys: Vec<String> = (0..20).map(|i| c.key(&format!("setmany{i}"))).collect();
    let entries: Vec<(&str, Bytes)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), Bytes::from(format!("v{i}"))))
        .collect();
    b.set_many(&entries, None).await.unwrap();
    for (key, value) in &entries {
        assert_eq!(
            b.get(key).await.unwrap().as_ref(),
            Some(value),
            "{name}: set_many stored {key}"
        );
        b.delete(key).await.unwrap();
    }
    let bad = [
        (keys[0].as_str(), Bytes::from_static(b"v")),
        ("a b", Bytes::new()),
    ];
    let refused = b.set_many(&bad, None).await;
    assert!(
        matches!(refused, Err(Error::InvalidKey { .. })),
        "{name}: set_many with an unsafe key must be InvalidKey, got {refused:?}"
    );
    b.delete(&keys[0]).await.unwrap();
}

/// A `Cache` over the backend answers `Unsupported` exactly for the
/// capabilities it lacks, and loads and stores through it.
async fn cache_checks_capabilities(c: &Ctx) {
    let name = c.name();
    let cache = Cache::builder()
        .shared_backend(c.backend.clone())
        .namespace(c.prefix().to_owned())
        .without_l1()
        .config(crate::config::ConfigSource::defaults_only())
        .build()
        .unwrap();
    let caps = c.backend.capabilities();
    let checks = [
        (
            Capability::Lock,
            caps.lock,
            cache.lock("c", Duration::from_secs(5)).await.err(),
        ),
        (
            Capability::TtlInspect,
            caps.ttl_inspect,
            cache.ttl("c").await.err(),
        ),
        (
            Capability::Touch,
            caps.touch,
            cache.touch("c", None).await.err(),
        ),
    ];
    for (capability, declared, error) in checks {
        let unsupported =
            matches!(error, Some(Error::Unsupported { capability: c, .. }) if c == capability);
        assert_eq!(
            unsupported, !declared,
            "{name}: Cache on {capability:?} (declared {declared}) gave {error:?}"
        );
    }
    let value = cache
        .get_or_insert_with("loaded", None, || async { 41 + 1 })
        .await;
    assert_eq!(value, 42);
    assert_eq!(
        cache.get::<i32>("loaded").await.unwrap(),
        Some(42),
        "{name}: loaded value is stored"
    );
    cache.delete("loaded").await.unwrap();
}
