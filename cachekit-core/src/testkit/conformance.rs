//! The conformance suite every backend runs against its real server.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{Backend, Cache, Capability, Error, KeyTtl, LockToken, key};

/// Longest the suite waits for an entry to expire (TTLs are whole seconds on
/// some servers, and memcached's clock ticks once a second).
const EXPIRY_WAIT: Duration = Duration::from_secs(4);

/// Runs every check that applies to `backend`, gated by its declared
/// capabilities, and panics naming the first that fails. Keys are unique to
/// the run, so the suite can share a server with other tests.
pub async fn conformance(backend: Arc<dyn Backend>) {
    let run = Run {
        prefix: format!("conf-{}", &key::random_token()[..12]),
        backend,
    };
    run.hooks_agree_with_flags();
    run.basics().await;
    run.values_are_opaque_bytes().await;
    run.keys_are_validated().await;
    run.get_many_matches_get().await;
    run.set_many_matches_set().await;
    run.size_limit().await;
    run.ttl_clamp().await;
    run.cache_checks_capabilities().await;
    tokio::join!(run.expiry(), run.touch());
    run.ttl_inspect().await;
    run.lock().await;
}

struct Run {
    prefix: String,
    backend: Arc<dyn Backend>,
}

impl Run {
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn name(&self) -> &'static str {
        self.backend.name()
    }

    fn hooks_agree_with_flags(&self) {
        let caps = self.backend.capabilities();
        let name = self.name();
        assert_eq!(
            self.backend.as_ttl_inspect().is_some(),
            caps.ttl_inspect,
            "{name}: ttl_inspect hook vs flag"
        );
        assert_eq!(
            self.backend.as_touch().is_some(),
            caps.touch,
            "{name}: touch hook vs flag"
        );
        assert_eq!(
            self.backend.as_lock().is_some(),
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

    async fn basics(&self) {
        let (b, name) = (&self.backend, self.name());
        b.health()
            .await
            .unwrap_or_else(|e| panic!("{name}: health: {e}"));
        let k = self.key("basic");
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

    async fn values_are_opaque_bytes(&self) {
        let (b, name) = (&self.backend, self.name());
        let all_bytes: Vec<u8> = (0..=255u8).chain(b"\r\nEND\r\n".iter().copied()).collect();
        for (label, value) in [
            ("empty", Vec::new()),
            ("binary", all_bytes),
            ("large", vec![b'x'; 100_000]),
        ] {
            let k = self.key(label);
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

    async fn keys_are_validated(&self) {
        let (b, name) = (&self.backend, self.name());
        let max = b.capabilities().max_key_len;
        let longest = format!(
            "{}:{}",
            self.prefix,
            "k".repeat(max - self.prefix.len() - 1)
        );
        b.set(&longest, Bytes::from_static(b"v"), None)
            .await
            .unwrap_or_else(|e| {
                panic!("{name}: a key of max_key_len ({max}) bytes must work: {e}")
            });
        b.delete(&longest).await.unwrap();
        let too_long = format!("{longest}k");
        let bad = [
            too_long.as_str(),
            "has space",
            "crlf\r\nflush_all",
            "",
            "nul\0",
            "ключ",
        ];
        for key in bad {
            let set = b.set(key, Bytes::from_static(b"v"), None).await;
            assert!(
                matches!(set, Err(Error::InvalidKey { .. })),
                "{name}: set({key:?}) must be InvalidKey, got {set:?}"
            );
            let get = b.get(key).await;
            assert!(
                matches!(get, Err(Error::InvalidKey { .. })),
                "{name}: get({key:?}) must be InvalidKey, got {get:?}"
            );
        }
    }

    async fn get_many_matches_get(&self) {
        let (b, name) = (&self.backend, self.name());
        let keys: Vec<String> = (0..20).map(|i| self.key(&format!("many{i}"))).collect();
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

    async fn set_many_matches_set(&self) {
        let (b, name) = (&self.backend, self.name());
        let keys: Vec<String> = (0..20).map(|i| self.key(&format!("setmany{i}"))).collect();
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

    async fn size_limit(&self) {
        let (b, name) = (&self.backend, self.name());
        let Some(limit) = b.capabilities().max_value_size else {
            return;
        };
        let k = self.key("too-large");
        let result = b.set(&k, Bytes::from(vec![0u8; limit + 1]), None).await;
        match result {
            Err(Error::ValueTooLarge {
                size,
                limit: reported,
            }) => {
                assert_eq!(
                    (size, reported),
                    (limit + 1, limit),
                    "{name}: ValueTooLarge states size and limit"
                );
            }
            other => {
                panic!("{name}: a value over max_value_size must be ValueTooLarge, got {other:?}")
            }
        }
        assert_eq!(
            b.get(&k).await.unwrap(),
            None,
            "{name}: a refused value is not stored"
        );
    }

    async fn ttl_clamp(&self) {
        let (b, name) = (&self.backend, self.name());
        let Some(max) = b.capabilities().max_ttl else {
            return;
        };
        let k = self.key("clamped");
        b.set(&k, Bytes::from_static(b"v"), Some(max * 3))
            .await
            .unwrap_or_else(|e| panic!("{name}: a TTL over max_ttl is clamped, not refused: {e}"));
        assert!(
            b.get(&k).await.unwrap().is_some(),
            "{name}: a clamped TTL must not expire the entry at once"
        );
        b.delete(&k).await.unwrap();
    }

    async fn cache_checks_capabilities(&self) {
        let name = self.name();
        let cache = Cache::builder()
            .shared_backend(self.backend.clone())
            .namespace(self.prefix.clone())
            .without_l1()
            .config(crate::config::ConfigSource::defaults_only())
            .build()
            .unwrap();
        let caps = self.backend.capabilities();
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

    async fn expiry(&self) {
        let (b, name) = (&self.backend, self.name());
        if !b.capabilities().ttl {
            return;
        }
        let (short, forever) = (self.key("expiring"), self.key("forever"));
        b.set(
            &short,
            Bytes::from_static(b"v"),
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
        b.set(&forever, Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        assert!(
            b.get(&short).await.unwrap().is_some(),
            "{name}: present before its TTL"
        );
        wait_until_gone(&**b, &short, name).await;
        assert!(
            b.get(&forever).await.unwrap().is_some(),
            "{name}: no TTL means no expiry"
        );
        b.delete(&forever).await.unwrap();
    }

    async fn touch(&self) {
        let (b, name) = (&self.backend, self.name());
        let Some(touch) = b.as_touch() else { return };
        let k = self.key("touched");
        b.set(&k, Bytes::from_static(b"v"), Some(Duration::from_secs(1)))
            .await
            .unwrap();
        assert!(
            touch
                .touch(&k, Some(Duration::from_secs(100)))
                .await
                .unwrap(),
            "{name}: touch of a present key"
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            b.get(&k).await.unwrap().is_some(),
            "{name}: touch must extend the TTL"
        );
        assert!(
            !touch.touch(&self.key("untouched"), None).await.unwrap(),
            "{name}: touch of a missing key"
        );
        b.delete(&k).await.unwrap();
    }

    async fn ttl_inspect(&self) {
        let (b, name) = (&self.backend, self.name());
        let Some(inspect) = b.as_ttl_inspect() else {
            return;
        };
        let (k, forever) = (self.key("inspected"), self.key("inspected-forever"));
        b.set(&k, Bytes::from_static(b"v"), Some(Duration::from_secs(100)))
            .await
            .unwrap();
        b.set(&forever, Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        match inspect.ttl(&k).await.unwrap() {
            KeyTtl::Expires(left) => assert!(
                left <= Duration::from_secs(100) && left >= Duration::from_secs(90),
                "{name}: remaining TTL {left:?} for a 100 s entry"
            ),
            other => panic!("{name}: ttl of an expiring key gave {other:?}"),
        }
        assert_eq!(
            inspect.ttl(&forever).await.unwrap(),
            KeyTtl::Forever,
            "{name}: ttl of a key without expiry"
        );
        assert_eq!(
            inspect.ttl(&self.key("absent")).await.unwrap(),
            KeyTtl::Missing,
            "{name}: ttl of a missing key"
        );
        b.delete(&k).await.unwrap();
        b.delete(&forever).await.unwrap();
    }

    async fn lock(&self) {
        let name = self.name();
        let Some(lock) = self.backend.as_lock() else {
            return;
        };
        let k = self.key("locked");
        let token = lock
            .try_lock(&k, Duration::from_secs(30))
            .await
            .unwrap()
            .expect("a free lock is taken");
        assert!(
            lock.try_lock(&k, Duration::from_secs(30))
                .await
                .unwrap()
                .is_none(),
            "{name}: a held lock is contended"
        );
        let stranger = LockToken::new("not-the-holder");
        assert!(
            !lock.unlock(&k, &stranger).await.unwrap(),
            "{name}: only the holder releases"
        );
        assert!(
            lock.unlock(&k, &token).await.unwrap(),
            "{name}: the holder releases"
        );
        let short = lock
            .try_lock(&k, Duration::from_millis(500))
            .await
            .unwrap()
            .expect("released lock is free");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let next = lock.try_lock(&k, Duration::from_secs(30)).await.unwrap();
        assert!(next.is_some(), "{name}: a lock is free after its lease");
        assert!(
            !lock.unlock(&k, &short).await.unwrap(),
            "{name}: an expired holder cannot release the next one's lock"
        );
        lock.unlock(&k, &next.expect("checked")).await.unwrap();
    }
}

async fn wait_until_gone(backend: &dyn Backend, key: &str, name: &str) {
    let deadline = tokio::time::Instant::now() + EXPIRY_WAIT;
    while tokio::time::Instant::now() < deadline {
        if backend.get(key).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name}: an entry with a 1 s TTL was still there after {EXPIRY_WAIT:?}");
}
