//! A `Cache` in interop mode and with encryption on: what reaches the
//! backend is exactly what cachekit-py writes (the vectors of
//! `tests/vectors/cachekit-interop-vectors.json`), what it reads back is
//! checked, and every inconsistent setting is an `Error::Config` that names
//! it and never shows a key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cachekit_core::backend::Bytes;
use cachekit_core::encryption::MasterKey;
use cachekit_core::interop::{self, InteropArg};
use cachekit_core::{
    Backend, Cache, Capabilities, ConfigSource, Error, Health, MemoryBackend, Result, Revalidate,
};
use serde::{Deserialize, Serialize};

const TTL: Option<Duration> = Some(Duration::from_secs(60));
/// The master key of the vectors (spec 6.3).
const MASTER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
/// `users:get_user` for `42`, as Python keys it.
const USER_42: &str =
    "users:get_user:61598716255080080f6456eb065c2e51badfaa4320b0efe97469c29cffee8875";
/// `{"age": 30, "name": "alice"}` as Python stores it.
const ALICE: &str = "82a36167651ea46e616d65a5616c696365";
/// The same, encrypted by cachekit-py 0.24.1 under [`MASTER`] for [`USER_42`].
const ALICE_SEALED_BY_PYTHON: &str =
    "e2f33e5589e38ef9000000004221e0d23311e3a2f8705218a47f4cbfbe4724b4e444d9cf0cc85b85422e9db97c";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    age: u32,
}

fn alice() -> User {
    User {
        name: "alice".into(),
        age: 30,
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

fn key(hex: &str) -> MasterKey {
    MasterKey::from_hex(hex).unwrap()
}

fn builder(backend: &Arc<MemoryBackend>) -> cachekit_core::CacheBuilder {
    Cache::builder()
        .shared_backend(backend.clone())
        .namespace("users")
        .without_l1()
        .config(ConfigSource::defaults_only())
}

/// The key part of `get_user(42)`.
fn user_42() -> String {
    let args: &[&dyn InteropArg] = &[&42u64];
    interop::call_key("get_user", args).unwrap()
}

async fn raw(backend: &MemoryBackend, key: &str) -> Option<Vec<u8>> {
    backend.get(key).await.unwrap().map(|bytes| bytes.to_vec())
}

#[tokio::test]
async fn an_interop_entry_is_the_canonical_value_under_the_python_key() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = builder(&backend).interop().build().unwrap();
    assert_eq!(format!("users:{}", user_42()), USER_42);
    cache.set(&user_42(), &alice(), TTL).await.unwrap();
    assert_eq!(raw(&backend, USER_42).await, Some(hex(ALICE)));
    assert_eq!(cache.get::<User>(&user_42()).await.unwrap(), Some(alice()));
}

#[tokio::test]
async fn python_bytes_are_read_and_unreadable_ones_are_misses_that_get_overwritten() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = builder(&backend).interop().build().unwrap();
    // Python's map written unsorted is read all the same.
    let unsorted = hex("82a46e616d65a5616c696365a36167651e");
    backend
        .set(USER_42, Bytes::from(unsorted), TTL)
        .await
        .unwrap();
    assert_eq!(cache.get::<User>(&user_42()).await.unwrap(), Some(alice()));
    // A cachekit-py auto-mode frame, trailing bytes, a truncated document.
    let frame = b"CK\x03\x00\x00\x00\x02{}\x2a".to_vec();
    let mut trailing = hex(ALICE);
    trailing.push(0xc0);
    let truncated = hex(&ALICE[..ALICE.len() - 4]);
    for bad in [frame, trailing, truncated] {
        backend
            .set(USER_42, Bytes::from(bad.clone()), TTL)
            .await
            .unwrap();
        assert_eq!(
            cache.get::<User>(&user_42()).await.unwrap(),
            None,
            "{bad:02x?}"
        );
        let loaded = cache
            .get_or_insert_with(&user_42(), TTL, || async { alice() })
            .await;
        assert_eq!(loaded, alice());
        assert_eq!(
            raw(&backend, USER_42).await,
            Some(hex(ALICE)),
            "overwritten"
        );
    }
}

#[tokio::test]
async fn interop_entries_have_no_room_for_a_stale_window_or_tags() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = builder(&backend).interop().build().unwrap();
    let value = cache
        .get_or_revalidate(
            "stale",
            TTL,
            Revalidate::stale(Duration::from_secs(30)),
            || async { alice() },
        )
        .await;
    assert_eq!(value, alice(), "the value is returned");
    let tagged = cache
        .get_or_insert_tagged("tagged", TTL, &["t"], || async { alice() })
        .await;
    assert_eq!(tagged, alice());
    for key in ["users:stale", "users:tagged"] {
        assert_eq!(raw(&backend, key).await, None, "{key}: nothing stored");
    }
}

#[tokio::test]
async fn interop_refuses_what_python_could_not_share() {
    let backend = Arc::new(MemoryBackend::new());
    for namespace in [
        "Users",
        "ns",
        "nsapi",
        "a..b",
        "-x",
        "users\n",
        &"a".repeat(65),
    ] {
        let error = Cache::builder()
            .shared_backend(backend.clone())
            .namespace(namespace)
            .interop()
            .config(ConfigSource::defaults_only())
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config { setting, .. } if setting == "namespace"),
            "{namespace:?}: {error}"
        );
    }
    let error = builder(&backend).interop().version(2).build().unwrap_err();
    assert!(
        matches!(&error, Error::Config { setting, .. } if setting == "version"),
        "{error}"
    );
    let prefixed = Arc::new(Prefixed(MemoryBackend::new()));
    let error = Cache::builder()
        .shared_backend(prefixed)
        .namespace("users")
        .interop()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(&error, Error::Config { setting, .. } if setting == "prefixed.key_prefix")
            && text.contains("\"app:\""),
        "{text}"
    );
}

#[tokio::test]
async fn an_entry_encrypted_by_python_is_read_and_ours_opens_only_under_its_key() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = builder(&backend)
        .interop()
        .encrypt(true)
        .master_key(key(MASTER))
        .build()
        .unwrap();
    backend
        .set(USER_42, Bytes::from(hex(ALICE_SEALED_BY_PYTHON)), TTL)
        .await
        .unwrap();
    assert_eq!(cache.get::<User>(&user_42()).await.unwrap(), Some(alice()));

    // Ours: nonce, ciphertext and tag; fresh nonces; bound to the key.
    cache.set("other:1", &alice(), TTL).await.unwrap();
    let sealed = raw(&backend, "users:other:1").await.unwrap();
    assert_eq!(sealed.len(), 12 + ALICE.len() / 2 + 16);
    cache.set("other:1", &alice(), TTL).await.unwrap();
    let again = raw(&backend, "users:other:1").await.unwrap();
    assert_ne!(sealed[..12], again[..12], "a fresh nonce per write");
    backend
        .set("users:other:2", Bytes::from(sealed), TTL)
        .await
        .unwrap();
    assert_eq!(
        cache.get::<User>("other:2").await.unwrap(),
        None,
        "copied under another key"
    );
    // A plaintext entry is refused.
    backend
        .set("users:plain", Bytes::from(hex(ALICE)), TTL)
        .await
        .unwrap();
    assert_eq!(cache.get::<User>("plain").await.unwrap(), None, "plaintext");
    assert_eq!(cache.stats().undecryptable, 2);

    // Fail closed: an error, and the entry is left for inspection.
    let strict = builder(&backend)
        .interop()
        .encrypt(true)
        .master_key(key(MASTER))
        .fail_closed(true)
        .build()
        .unwrap();
    let error = strict.get::<User>("plain").await.unwrap_err();
    assert!(matches!(error, Error::Undecryptable { .. }), "{error}");
    assert!(!error.to_string().contains(MASTER));
}

#[tokio::test]
async fn native_entries_are_sealed_too_and_rotation_reads_the_old_key() {
    let backend = Arc::new(MemoryBackend::new());
    let old = builder(&backend)
        .encrypt(true)
        .master_key(key(MASTER))
        .build()
        .unwrap();
    old.set("k", &alice(), TTL).await.unwrap();
    let stored = raw(&backend, &old.backend_key("k")).await.unwrap();
    assert!(
        !stored.windows(5).any(|window| window == b"alice"),
        "the value is not in the clear"
    );
    assert_eq!(old.get::<User>("k").await.unwrap(), Some(alice()));
    let rotated = builder(&backend)
        .encrypt(true)
        .master_key(key(OTHER))
        .previous_master_keys(vec![key(MASTER)])
        .build()
        .unwrap();
    assert_eq!(
        rotated.get::<User>("k").await.unwrap(),
        Some(alice()),
        "the previous key opens it"
    );
    let forgotten = builder(&backend)
        .encrypt(true)
        .master_key(key(OTHER))
        .build()
        .unwrap();
    assert_eq!(
        forgotten.get::<User>("k").await.unwrap(),
        None,
        "without it, a miss"
    );
    // An interop entry never opens as a native one, nor the reverse.
    let interop = builder(&backend)
        .interop()
        .encrypt(true)
        .master_key(key(MASTER))
        .build()
        .unwrap();
    assert_eq!(interop.get::<User>("k").await.unwrap(), None);
}

#[tokio::test]
async fn l1_keeps_decrypted_copies() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = Cache::builder()
        .shared_backend(backend.clone())
        .namespace("users")
        .l1(Default::default())
        .encrypt(true)
        .master_key(key(MASTER))
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    cache.set("k", &alice(), TTL).await.unwrap();
    assert_eq!(cache.get::<User>("k").await.unwrap(), Some(alice()));
    assert_eq!(cache.stats().l1_hits, 1);
}

#[test]
fn a_syntax_error_in_the_file_never_shows_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cachekit.toml");
    std::fs::write(
        &path,
        format!("[encryption]\nenabled = true\nmaster_key = {MASTER}\n"),
    )
    .unwrap();
    let config = ConfigSource::from_parts(Some(&path), Vec::<(String, String)>::new()).unwrap();
    let error = Cache::builder()
        .shared_backend(Arc::new(MemoryBackend::new()))
        .config(config)
        .build()
        .unwrap_err();
    let text = format!("{error} / {error:?}");
    assert!(text.contains("line 3"), "where to look: {text}");
    assert!(!text.contains(&MASTER[..16]), "the key leaks: {text}");
}

#[tokio::test]
async fn an_oversized_value_fails_a_jittered_batch_before_anything_is_written() {
    let backend = Arc::new(MemoryBackend::with_limits(16, 64 << 10));
    let limit = backend.capabilities().max_value_size.unwrap();
    // Under the limit in its envelope, over it once sealed (28 bytes more).
    let big = "x".repeat(limit - 60);
    for encrypt in [false, true] {
        let namespace = format!("batch{encrypt}");
        let cache = Cache::builder()
            .shared_backend(backend.clone())
            .namespace(namespace.as_str())
            .without_l1()
            .ttl_jitter(20)
            .encrypt(encrypt)
            .master_key(key(MASTER))
            .config(ConfigSource::defaults_only())
            .build()
            .unwrap();
        let big = big.clone();
        let values = cache
            .get_or_insert_many(&["a", "b"], TTL, |keys| async move {
                keys.iter()
                    .map(|key| match key.as_str() {
                        "a" => "small".to_owned(),
                        _ => big.clone(),
                    })
                    .collect()
            })
            .await;
        assert_eq!(values.len(), 2, "the values are returned");
        let stored = raw(&backend, &format!("{namespace}:a")).await.is_some();
        assert_eq!(
            stored, !encrypt,
            "encrypted: {encrypt}: written only if all fit"
        );
    }
}

fn config(vars: &[(&str, &str)]) -> ConfigSource {
    ConfigSource::from_parts(None, vars.iter().copied()).unwrap()
}

fn built(vars: &[(&str, &str)]) -> Result<Cache> {
    Cache::builder()
        .shared_backend(Arc::new(MemoryBackend::new()))
        .config(config(vars))
        .build()
}

#[test]
fn inconsistent_encryption_settings_are_errors_naming_the_setting() {
    // Four previous keys: one more than the limit.
    let four_keys = [OTHER; 4].join(",");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("CACHEKIT_MASTER_KEY", MASTER)], "encryption.enabled"),
        (&[("CACHEKIT_ENCRYPTION", "true")], "encryption.master_key"),
        (
            &[
                ("CACHEKIT_ENCRYPTION", "true"),
                ("CACHEKIT_MASTER_KEY", "0011223344"),
            ],
            "encryption.master_key",
        ),
        (
            &[
                ("CACHEKIT_ENCRYPTION", "true"),
                ("CACHEKIT_MASTER_KEY", MASTER),
                (
                    "CACHEKIT_DEPLOYMENT_UUID",
                    "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
                ),
            ],
            "encryption.deployment_uuid",
        ),
        (
            &[
                ("CACHEKIT_ENCRYPTION", "true"),
                ("CACHEKIT_MASTER_KEY", MASTER),
                ("CACHEKIT_PREVIOUS_MASTER_KEYS", four_keys.as_str()),
            ],
            "encryption.previous_master_keys",
        ),
    ];
    for (vars, named) in cases {
        let error = built(vars).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(
            matches!(&error, Error::Config { setting, .. } if setting == named),
            "{vars:?}: {text}"
        );
        assert!(
            !text.contains(MASTER) && !text.contains("0011223344"),
            "a key shown: {text}"
        );
    }
    // Stated either way, a key is fine; a previous key list of three too.
    let three = [OTHER, OTHER, OTHER].join(",");
    for vars in [
        &[
            ("CACHEKIT_MASTER_KEY", MASTER),
            ("CACHEKIT_ENCRYPTION", "false"),
        ][..],
        &[
            ("CACHEKIT_MASTER_KEY", MASTER),
            ("CACHEKIT_ENCRYPTION", "true"),
        ][..],
        &[
            ("CACHEKIT_MASTER_KEY", MASTER),
            ("CACHEKIT_ENCRYPTION", "true"),
            ("CACHEKIT_PREVIOUS_MASTER_KEYS", three.as_str()),
            (
                "CACHEKIT_DEPLOYMENT_UUID",
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            ),
        ][..],
    ] {
        built(vars).unwrap_or_else(|error| panic!("{vars:?}: {error}"));
    }
    let builder = Cache::builder().master_key(key(MASTER));
    assert!(!format!("{builder:?}").contains(MASTER));
}

#[tokio::test]
async fn encryption_enabled_in_the_configuration_seals_every_cache() {
    let backend = Arc::new(MemoryBackend::new());
    let cache = Cache::builder()
        .shared_backend(backend.clone())
        .namespace("cfg")
        .without_l1()
        .config(config(&[
            ("CACHEKIT_MASTER_KEY", MASTER),
            ("CACHEKIT_ENCRYPTION", "true"),
        ]))
        .build()
        .unwrap();
    cache.set("k", &alice(), TTL).await.unwrap();
    let stored = raw(&backend, "cfg:k").await.unwrap();
    assert!(!stored.starts_with(b"CK"), "sealed, not an envelope");
    let plain = Cache::builder()
        .shared_backend(backend.clone())
        .namespace("cfg")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    assert_eq!(
        plain.get::<User>("k").await.unwrap(),
        None,
        "unreadable without the key"
    );
}

/// The in-process store with a key prefix, as memcached's and Redis's
/// `key_prefix` make.
#[derive(Debug)]
struct Prefixed(MemoryBackend);

#[async_trait]
impl Backend for Prefixed {
    fn name(&self) -> &'static str {
        "prefixed"
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.get(&format!("app:{key}")).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.0.set(&format!("app:{key}"), value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.0.delete(&format!("app:{key}")).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.0.exists(&format!("app:{key}")).await
    }

    async fn health(&self) -> Result<Health> {
        Ok(Health::new(self.name()))
    }

    fn key_prefix(&self) -> &str {
        "app:"
    }
}
