//! The reader: exactly one document, bounded nesting and lengths, the
//! specific error for cachekit-py frames, and every well-formed form accepted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::*;

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn generic(bytes: &[u8]) -> Result<InteropValue, InteropError> {
    from_msgpack(bytes)
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    age: u32,
}

#[test]
fn exactly_one_document_is_read() {
    assert_eq!(from_msgpack::<i64>(&[0x2a]), Ok(42));
    let e = from_msgpack::<i64>(&[0x2a, 0x00]).unwrap_err();
    assert!(
        e.reason()
            .contains("1 bytes after its one MessagePack document"),
        "{e}"
    );
    let e = generic(&[0x92, 0x01, 0x02, 0x03]).unwrap_err();
    assert!(e.reason().contains("after its one"), "{e}");
    let e = generic(&[]).unwrap_err();
    assert!(e.reason().contains("empty"), "{e}");
    for truncated in [
        "92",
        "9201",
        "cd01",
        "a3616263"[..6].as_ref(),
        "c403ff",
        "d4",
        "81a161",
    ] {
        assert!(generic(&unhex(truncated)).is_err(), "{truncated}");
    }
    let e = generic(&[0xc1]).unwrap_err();
    assert!(e.reason().contains("0xc1"), "{e}");
}

#[test]
fn a_python_auto_mode_frame_has_its_own_error() {
    let frame = unhex("434b030000007e7b2273223a202264656661756c74227d82a46e616d65a5616c696365");
    let e = from_msgpack::<User>(&frame).unwrap_err();
    assert!(e.is_python_frame());
    assert!(e.reason().contains("auto-mode (CK) frame"), "{e}");
    assert!(e.reason().contains("`interop=`"), "{e}");
    assert!(generic(b"CK").unwrap_err().is_python_frame());
    // A lone `C` is the int 67, and not a frame.
    assert_eq!(generic(b"C"), Ok(InteropValue::Int(67)));
    let e = generic(&[0x2a, 0x00]).unwrap_err();
    assert!(!e.is_python_frame());
}

/// `levels` nested arrays, the innermost empty.
fn nested(levels: usize) -> Vec<u8> {
    let mut bytes = vec![0x91; levels - 1];
    bytes.push(0x90);
    bytes
}

#[test]
fn nesting_of_1024_is_read_and_1025_refused() {
    let value = generic(&nested(MAX_DEPTH)).expect("1024 levels");
    let mut depth = 0;
    let mut at = &value;
    while let InteropValue::Array(items) = at {
        depth += 1;
        match items.first() {
            Some(inner) => at = inner,
            None => break,
        }
    }
    assert_eq!(depth, MAX_DEPTH);
    assert_eq!(to_msgpack(&value).unwrap(), nested(MAX_DEPTH));
    let e = generic(&nested(MAX_DEPTH + 1)).unwrap_err();
    assert!(e.reason().contains("deeper than 1024"), "{e}");
    // Maps count as arrays do, and an ext at the bottom is no level.
    let mut maps = [0x81, 0xa1, 0x6b].repeat(MAX_DEPTH - 1);
    maps.extend_from_slice(&[0x91, 0xd4, 0x01, 0x02]);
    assert!(generic(&maps).is_ok());
    let e = from_msgpack::<InteropValue>(&[&[0x91][..], &maps].concat()).unwrap_err();
    assert!(e.reason().contains("deeper than 1024"), "{e}");
    // A million levels are refused, without recursion.
    assert!(generic(&vec![0x91; 1_000_000]).is_err());
}

#[test]
fn a_declared_length_the_input_cannot_hold_is_refused_before_decoding() {
    for header in [
        "c6ffffffff",
        "dbffffffff",
        "ddffffffff",
        "dfffffffff",
        "c9ffffffff01",
    ] {
        let mut bytes = unhex(header);
        bytes.extend_from_slice(&[1, 2, 3]);
        let e = generic(&bytes).unwrap_err();
        assert!(e.reason().contains("truncated or corrupt"), "{header}: {e}");
        assert!(from_msgpack::<Vec<u8>>(&bytes).is_err());
    }
    // 2^31 map entries declare 2^32 elements.
    let e = generic(&unhex("df80000000010203")).unwrap_err();
    assert!(e.reason().contains("declares 4294967296"), "{e}");
}

#[test]
fn non_canonical_forms_are_read() {
    assert_eq!(from_msgpack::<u8>(&unhex("d10005")), Ok(5));
    assert_eq!(generic(&unhex("d10005")), Ok(InteropValue::Int(5)));
    assert_eq!(from_msgpack::<i64>(&unhex("cf0000000000000005")), Ok(5));
    assert_eq!(from_msgpack::<f64>(&unhex("ca40200000")), Ok(2.5));
    assert_eq!(generic(&unhex("ca40200000")), Ok(InteropValue::Float(2.5)));
    assert_eq!(from_msgpack::<String>(&unhex("da000178")), Ok("x".into()));
    assert_eq!(from_msgpack::<Vec<u8>>(&unhex("c4020102")), Ok(vec![1, 2]));
    let unsorted = unhex("82a46e616d65a5616c696365a36167651e");
    let user = User {
        name: "alice".into(),
        age: 30,
    };
    assert_eq!(from_msgpack::<User>(&unsorted), Ok(user));
    let sorted = to_msgpack(&generic(&unsorted).unwrap()).unwrap();
    assert_eq!(sorted, unhex("82a36167651ea46e616d65a5616c696365"));
    // Non-string keys: into a typed map, not into an InteropValue.
    let int_keys = unhex("8201a1780ca179");
    let map: HashMap<u8, String> = from_msgpack(&int_keys).unwrap();
    assert_eq!(map, HashMap::from([(1, "x".into()), (12, "y".into())]));
    let e = generic(&int_keys).unwrap_err();
    assert!(e.reason().contains("string map key"), "{e}");
    // Ext: its type and data.
    let ext = generic(&unhex("d401ff")).unwrap();
    assert_eq!(
        ext,
        InteropValue::Array(vec![InteropValue::Int(1), InteropValue::Bytes(vec![0xff])])
    );
    assert!(generic(&unhex("c702050102")).is_ok());
    // Invalid UTF-8 in a string is refused, as Python refuses it (rmp-serde
    // alone would read it as bytes).
    let e = generic(&unhex("a1ff")).unwrap_err();
    assert!(e.reason().contains("not UTF-8"), "{e}");
    assert!(from_msgpack::<Vec<u8>>(&unhex("9101a1ff")).is_err());
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Event {
    #[serde(with = "crate::interop::datetime")]
    at: SystemTime,
    name: String,
}

#[test]
fn datetime_fields_are_sentinel_maps() {
    let at = UNIX_EPOCH + Duration::from_secs(1_705_321_800);
    let event = Event {
        at,
        name: "x".into(),
    };
    let bytes = to_msgpack(&event).unwrap();
    let sentinel = "82ac5f5f6461746574696d655f5fc3a576616c7565b9323032342d30312d31355431323a33303a30302b30303a3030";
    // {"at": <sentinel>, "name": "x"}
    assert_eq!(bytes, unhex(&format!("82a26174{sentinel}a46e616d65a178")));
    assert_eq!(from_msgpack::<Event>(&bytes), Ok(event));
    // Other offsets and `Z` read as the same instant; a fraction of 1 digit too.
    for text in [
        "2024-01-15T12:30:00Z",
        "2024-01-15T13:30:00+01:00",
        "2024-01-15T12:30:00.0Z",
    ] {
        let mut map = BTreeMap::new();
        map.insert("__datetime__".to_owned(), InteropValue::Bool(true));
        map.insert("value".to_owned(), InteropValue::Str(text.into()));
        let stored = to_msgpack(&BTreeMap::from([
            ("at".to_owned(), InteropValue::Map(map)),
            ("name".to_owned(), InteropValue::Str("x".into())),
        ]))
        .unwrap();
        assert_eq!(from_msgpack::<Event>(&stored).unwrap().at, at, "{text}");
    }
    // A generic read revives the sentinel, and writes it back as Python does.
    let revived = generic(&unhex(sentinel)).unwrap();
    assert_eq!(
        revived,
        InteropValue::DateTime {
            unix_micros: 1_705_321_800_000_000
        }
    );
    assert_eq!(to_msgpack(&revived).unwrap(), unhex(sentinel));
    let naive = to_msgpack(&BTreeMap::from([
        ("__datetime__", InteropValue::Bool(true)),
        ("value", InteropValue::Str("2024-01-15T12:30:00".into())),
    ]))
    .unwrap();
    assert!(matches!(generic(&naive), Ok(InteropValue::Map(_))));
    #[derive(Debug, Deserialize)]
    #[serde(transparent)]
    #[allow(dead_code)]
    struct When(#[serde(with = "crate::interop::datetime")] SystemTime);
    let e = from_msgpack::<When>(&naive).unwrap_err();
    assert!(
        e.reason().contains("not an ISO datetime with an offset"),
        "{e}"
    );
}
