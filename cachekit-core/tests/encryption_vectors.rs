//! The encryption layer against cachekit-py 0.24.1's real output (the
//! vectors of `tests/vectors/cachekit-interop-vectors.json` and of the
//! interop reference, 6.3 and 6.4), and its security properties: rotation,
//! tampering, nonce uniqueness, redaction.

use std::collections::HashSet;

use cachekit_core::encryption::{EncryptionErrorKind, Keyring, MasterKey, tenant_of};
use serde_json::Value;

/// The master key of the recorded vectors.
const MASTER_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The interop cache key the recorded entries were written under.
const INTEROP_KEY: &str =
    "users:get_user:61598716255080080f6456eb065c2e51badfaa4320b0efe97469c29cffee8875";
/// `{"age": 30, "name": "alice"}` as canonical msgpack.
const PLAINTEXT_HEX: &str = "82a36167651ea46e616d65a5616c696365";
/// The entry cachekit-rs 0.13.1 wrote, read back by a cachekit-py decorator.
const RS_WRITE_HEX: &str = "21cdcb6d8a1c8d3f00000000b18740a02ffa68f360717704b4d6f5ef08be2bc2\
                            fa852687c020f4b90c166f602a";
/// The protocol's fixed-nonce vector: master 32 × `0x61`, tenant `cross-sdk-test`.
const FIXED_NONCE_SEALED_HEX: &str = "000102030405060708090a0b033caf732820ce189e1506f842aebf8c\
                                      db6a242eb08c55b6f5a91eb9007b3bd657";

fn vectors() -> Value {
    let text = include_str!("vectors/cachekit-interop-vectors.json");
    serde_json::from_str(text).expect("the vectors file is JSON")
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).expect("hex")
}

fn default_keyring() -> Keyring {
    let master = MasterKey::from_hex(MASTER_HEX).unwrap();
    Keyring::new(&master, &[], &tenant_of(None).unwrap()).unwrap()
}

fn keyring_of(byte: u8, previous: &[u8]) -> Keyring {
    let current = MasterKey::from_bytes(&[byte; 32]).unwrap();
    let previous: Vec<MasterKey> = previous
        .iter()
        .map(|&byte| MasterKey::from_bytes(&[byte; 32]).unwrap())
        .collect();
    Keyring::new(&current, &previous, "default").unwrap()
}

#[test]
fn the_recorded_key_fingerprints_as_cachekit_py() {
    let vectors = vectors();
    assert_eq!(vectors["encryption"]["master_key_hex"], MASTER_HEX);
    assert_eq!(
        hex::encode(default_keyring().fingerprint()),
        "7ef7f241ea0cbcacd9e64a900c715995"
    );
}

#[test]
fn interop_entries_of_both_sdks_open() {
    let vectors = vectors();
    let encryption = &vectors["encryption"];
    assert_eq!(encryption["interop"]["key"], INTEROP_KEY);
    let keyring = default_keyring();
    for stored in [
        encryption["interop"]["stored_hex"].as_str().unwrap(),
        encryption["interop_second_write_hex"].as_str().unwrap(),
        RS_WRITE_HEX,
    ] {
        let (plaintext, index) = keyring
            .open_with_index(INTEROP_KEY, "msgpack", &unhex(stored))
            .unwrap();
        assert_eq!(hex::encode(&plaintext), PLAINTEXT_HEX, "{stored}");
        assert_eq!(index, 0);
    }
}

#[test]
fn the_fixed_nonce_vector_seals_and_opens() {
    let master = MasterKey::from_bytes(&[0x61; 32]).unwrap();
    let keyring = Keyring::new(&master, &[], "cross-sdk-test").unwrap();
    assert_eq!(
        hex::encode(keyring.fingerprint()),
        "96179a9bc881aa7ca83f04b78a66afd3"
    );
    let nonce: [u8; 12] = unhex("000102030405060708090a0b").try_into().unwrap();
    let sealed = keyring.seal_with_nonce(INTEROP_KEY, "msgpack", nonce, &unhex(PLAINTEXT_HEX));
    assert_eq!(hex::encode(&sealed), FIXED_NONCE_SEALED_HEX);
    let opened = keyring.open(INTEROP_KEY, "msgpack", &sealed).unwrap();
    assert_eq!(hex::encode(&opened), PLAINTEXT_HEX);
}

#[test]
fn a_python_auto_mode_frame_opens_with_its_five_component_aad() {
    let vectors = vectors();
    let auto = &vectors["encryption"]["auto"];
    let cache_key = auto["key"].as_str().unwrap();
    let frame = unhex(auto["stored_hex"].as_str().unwrap());

    // CK v3: "CK" ‖ 03 ‖ u32-BE header length ‖ JSON header ‖ payload.
    assert_eq!(&frame[..3], b"CK\x03");
    let header_len = u32::from_be_bytes(frame[3..7].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&frame[7..7 + header_len]).unwrap();
    let payload = &frame[7 + header_len..];
    let meta = &header["m"];
    assert_eq!(meta["encrypted"], true);
    assert_eq!(meta["tenant_id"], "default");
    assert_eq!(meta["encryption_algorithm"], "AES-256-GCM");

    let keyring = default_keyring();
    assert_eq!(
        meta["key_fingerprint"].as_str().unwrap(),
        hex::encode(keyring.fingerprint())
    );
    let (envelope, index) = keyring
        .open_with_components(
            &["default", cache_key, "msgpack", "True", "msgpack"],
            payload,
        )
        .unwrap();
    assert_eq!(index, 0);
    assert_eq!(
        hex::encode(&envelope),
        "94c413f00282a46e616d65a5616c696365a36167651e985bcccc3c47ccdf0d4f2211a76d73677061636b"
    );
    // The interop AAD (four components) does not open it.
    assert!(keyring.open(cache_key, "msgpack", payload).is_err());
}

#[test]
fn a_previous_key_opens_what_it_sealed_until_it_is_dropped() {
    let sealed = keyring_of(0xa1, &[]).seal("k", "msgpack", b"value");
    let rotated = keyring_of(0xb2, &[0xc3, 0xa1]);
    let (plaintext, index) = rotated.open_with_index("k", "msgpack", &sealed).unwrap();
    assert_eq!(plaintext, b"value");
    assert_eq!(index, 2, "the second previous key opened it");

    let error = keyring_of(0xb2, &[])
        .open("k", "msgpack", &sealed)
        .unwrap_err();
    assert_eq!(error.kind(), EncryptionErrorKind::Undecryptable);
    assert!(error.to_string().starts_with("cannot decrypt"), "{error}");

    let resealed = rotated.seal("k", "msgpack", &plaintext);
    assert_eq!(
        rotated
            .open_with_index("k", "msgpack", &resealed)
            .unwrap()
            .1,
        0
    );
}

#[test]
fn at_most_three_previous_keys_are_kept() {
    let current = MasterKey::from_bytes(&[1; 32]).unwrap();
    let previous: Vec<MasterKey> = (2..6)
        .map(|byte| MasterKey::from_bytes(&[byte; 32]).unwrap())
        .collect();
    assert!(Keyring::new(&current, &previous[..3], "default").is_ok());
    let error = Keyring::new(&current, &previous, "default").unwrap_err();
    assert_eq!(error.kind(), EncryptionErrorKind::TooManyPreviousKeys);
    let message = error.to_string();
    assert!(
        message.contains("4 previous") && message.contains("at most 3"),
        "{message}"
    );
}

#[test]
fn every_flipped_byte_is_refused() {
    let keyring = default_keyring();
    let sealed = keyring.seal(INTEROP_KEY, "msgpack", &unhex(PLAINTEXT_HEX));
    for at in 0..sealed.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut tampered = sealed.clone();
            tampered[at] ^= flip;
            let error = keyring.open(INTEROP_KEY, "msgpack", &tampered).unwrap_err();
            assert_eq!(error.kind(), EncryptionErrorKind::Undecryptable, "{at}");
        }
    }
}

#[test]
fn a_value_opens_only_under_its_own_key_tenant_and_format() {
    let master = MasterKey::from_hex(MASTER_HEX).unwrap();
    let keyring = default_keyring();
    let sealed = keyring.seal(INTEROP_KEY, "msgpack", b"value");
    assert!(keyring.open(INTEROP_KEY, "msgpack", &sealed).is_ok());
    assert!(
        keyring
            .open("users:get_user:other", "msgpack", &sealed)
            .is_err()
    );
    assert!(keyring.open(INTEROP_KEY, "bincode", &sealed).is_err());
    assert!(keyring.open(INTEROP_KEY, "", &sealed).is_err());
    let uuid = "123e4567-e89b-12d3-a456-426614174000";
    let other_tenant = Keyring::new(&master, &[], &tenant_of(Some(uuid)).unwrap()).unwrap();
    assert!(other_tenant.open(INTEROP_KEY, "msgpack", &sealed).is_err());
}

#[test]
fn truncated_values_are_refused_without_panicking() {
    let keyring = default_keyring();
    let sealed = keyring.seal(INTEROP_KEY, "msgpack", &unhex(PLAINTEXT_HEX));
    for len in 0..28 {
        let error = keyring
            .open(INTEROP_KEY, "msgpack", &sealed[..len])
            .unwrap_err();
        assert_eq!(error.kind(), EncryptionErrorKind::Undecryptable, "{len}");
    }
    for len in 28..sealed.len() {
        assert!(
            keyring
                .open(INTEROP_KEY, "msgpack", &sealed[..len])
                .is_err()
        );
    }
    // An empty plaintext seals to exactly a nonce and a tag.
    let empty = keyring.seal(INTEROP_KEY, "msgpack", b"");
    assert_eq!(empty.len(), 28);
    assert_eq!(keyring.open(INTEROP_KEY, "msgpack", &empty).unwrap(), b"");
}

#[test]
fn a_hundred_thousand_seals_have_distinct_nonces() {
    let keyring = default_keyring();
    let plaintext = unhex(PLAINTEXT_HEX);
    let mut nonces = HashSet::with_capacity(100_000);
    for _ in 0..100_000 {
        let sealed = keyring.seal(INTEROP_KEY, "msgpack", &plaintext);
        let nonce: [u8; 12] = sealed[..12].try_into().unwrap();
        assert!(
            nonces.insert(nonce),
            "nonce {} repeated",
            hex::encode(nonce)
        );
    }
}

#[test]
fn debug_output_holds_no_key_material() {
    let raw = unhex(MASTER_HEX);
    let master = MasterKey::from_hex(MASTER_HEX).unwrap();
    let previous = MasterKey::from_bytes(&[0x61; 32]).unwrap();
    let keyring = Keyring::new(&master, std::slice::from_ref(&previous), "default").unwrap();
    let shown = [
        format!("{master:?}"),
        format!("{:#?}", master.clone()),
        format!("{previous:?}"),
        format!("{keyring:?}"),
        format!("{:#?}", keyring.clone()),
    ];
    assert_eq!(shown[0], "MasterKey(<redacted>)");
    assert_eq!(
        shown[3],
        r#"Keyring { tenant: "default", previous_keys: 1 }"#
    );
    for text in &shown {
        assert_no_key_material(text, &raw);
        assert_no_key_material(text, &[0x61; 32]);
    }
}

#[test]
fn key_errors_hold_no_key_hex() {
    for given in [
        &MASTER_HEX[..40],
        &MASTER_HEX[..63],
        "00112233445566778899aabbccddeefg",
    ] {
        let error = MasterKey::from_hex(given).unwrap_err();
        assert_eq!(error.kind(), EncryptionErrorKind::InvalidKey);
        let message = error.to_string();
        assert_no_key_material(&message, &unhex(&MASTER_HEX[..40]));
        assert!(!message.contains("0011223344"), "{message}");
    }
}

/// Fails if `text` contains the hex (either case) or, as bytes, any 8-byte
/// window of `key`.
fn assert_no_key_material(text: &str, key: &[u8]) {
    let lower = text.to_lowercase();
    for window in key.windows(8) {
        let window_hex = hex::encode(window);
        assert!(!lower.contains(&window_hex), "{text} shows key hex");
        assert!(
            !text.as_bytes().windows(8).any(|bytes| bytes == window),
            "{text} shows key bytes"
        );
    }
}
