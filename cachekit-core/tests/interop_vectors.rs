//! The interop codec against the vectors of the real cachekit-py 0.24.1
//! (`tests/vectors/cachekit-interop-vectors.json`, read back from memcached):
//! every key vector's canonical argument bytes and full key, built from Rust
//! arguments through their `InteropArg` implementations; every value
//! vector decoded into a Rust type and written back byte for byte.
//!
//! A vector this file does not know fails the test, so a new one cannot be
//! skipped silently.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachekit_core::interop::{
    InteropArg, InteropValue, call_key, canonical_args, from_msgpack, to_msgpack, validate_segment,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const VECTORS: &str = include_str!("vectors/cachekit-interop-vectors.json");

fn vectors(kind: &str) -> Vec<serde_json::Value> {
    let all: serde_json::Value = serde_json::from_str(VECTORS).expect("the vectors parse");
    all[kind].as_array().expect("a list of vectors").clone()
}

fn field<'a>(vector: &'a serde_json::Value, name: &str) -> &'a str {
    vector[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {vector}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The UUID of `datetime_uuid_enum_decimal`, `6BA7B810-9DAD-11D1-80B4-00C04FD430C8`.
const UUID: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

#[cfg(feature = "uuid")]
fn uuid_arg() -> Box<dyn InteropArg> {
    Box::new(uuid::Uuid::parse_str("6BA7B810-9DAD-11D1-80B4-00C04FD430C8").expect("a UUID"))
}

#[cfg(not(feature = "uuid"))]
fn uuid_arg() -> Box<dyn InteropArg> {
    Box::new(InteropValue::Uuid(UUID))
}

/// The calls of a key vector, each as Rust arguments: several calls when
/// Python gave one key for several forms (`2.0` and `2`).
fn calls(name: &str) -> Vec<Vec<Box<dyn InteropArg>>> {
    fn one(args: Vec<Box<dyn InteropArg>>) -> Vec<Vec<Box<dyn InteropArg>>> {
        vec![args]
    }
    match name {
        // `get_user(42)` and `get_user(user_id=42)`: one slot either way.
        "single_int_42" | "positional_vs_keyword" => one(vec![Box::new(42_i64)]),
        "neg_ints" => one(vec![Box::new(vec![
            -1_i64,
            -32,
            -33,
            -128,
            -129,
            -32_768,
            -32_769,
            -2_147_483_648,
            -2_147_483_649,
            i64::MIN,
        ])]),
        "pos_ints_widths" => one(vec![Box::new(vec![
            0_u64,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            4_294_967_295,
            4_294_967_296,
            1 << 63,
            u64::MAX,
        ])]),
        // Python's literal 3.14, not π.
        #[allow(clippy::approx_constant)]
        "floats" => one(vec![Box::new(vec![
            3.14_f64,
            2.0,
            -0.0,
            0.1,
            1e300,
            -2.5,
            18_446_744_073_709_551_616.0,
        ])]),
        "float_int_equivalence" => vec![vec![Box::new(2.0_f64)], vec![Box::new(2_i32)]],
        "strings_unicode" => one(vec![Box::new(vec![
            String::new(),
            "héllo".into(),
            "日本語".into(),
            "🎉".into(),
            "a".repeat(31),
            "b".repeat(32),
        ])]),
        "bytes_args" => one(vec![Box::new(vec![
            Bytes::new(),
            Bytes::from_static(b"\x00\x01\xff"),
            Bytes::from_static(&[0, 1, 2, 3]),
        ])]),
        "none_bool" => one(vec![Box::new((None::<i32>, true, false))]),
        "nested_list_tuple" => one(vec![Box::new((1, vec![2, 3], ("x", None::<i32>)))]),
        "dict_sorted" => {
            let inner: HashMap<&str, InteropValue> = [
                ("y", InteropValue::Int(1)),
                ("x", vec![1].to_interop().expect("a list")),
            ]
            .into();
            let outer: HashMap<String, InteropValue> = [
                ("b", InteropValue::Int(1)),
                ("a", InteropValue::Int(2)),
                ("é", InteropValue::Int(3)),
                ("Z", InteropValue::Int(4)),
                ("aa", inner.to_interop().expect("a map")),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
            one(vec![Box::new(outer)])
        }
        // All four Python calls bind to `(a=1, b=5)`.
        "kwargs_vs_positional" => one(vec![Box::new(1), Box::new(5)]),
        // Python's defaults, passed explicitly.
        "default_args_applied" => one(vec![Box::new(42), Box::new(false), Box::new(None::<i32>)]),
        // `*rest` is one array slot, `**opts` one map slot.
        "varargs_varkw" => one(vec![
            Box::new(1),
            Box::new((2, 3)),
            Box::new(BTreeMap::from([("z", 1), ("y", 2)])),
        ]),
        "varargs_empty" => one(vec![
            Box::new(1),
            Box::new(Vec::<i32>::new()),
            Box::new(HashMap::<String, i32>::new()),
        ]),
        "kwonly" => one(vec![Box::new(7), Box::new(10)]),
        // `{3, 1, 2, 2.0}`: as a Rust set, and with Python's float element.
        "set_arg" => vec![
            vec![Box::new(HashSet::from([3, 1, 2]))],
            vec![Box::new(InteropValue::Set(vec![
                InteropValue::Int(3),
                InteropValue::Int(1),
                InteropValue::Int(2),
                InteropValue::Float(2.0),
            ]))],
        ],
        // The enum and the Decimal as the strings Python hashes them as.
        "datetime_uuid_enum_decimal" => {
            let new_year = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
            let mut calls: Vec<Vec<Box<dyn InteropArg>>> = vec![vec![Box::new((
                new_year,
                InteropValue::Uuid(UUID),
                "red",
                "1.50",
            ))]];
            let from_crates = vec![
                Box::new(new_year) as Box<dyn InteropArg>,
                uuid_arg(),
                Box::new("red"),
                Box::new("1.50"),
            ];
            calls.push(vec![Box::new(from_crates)]);
            #[cfg(feature = "chrono")]
            {
                use chrono::TimeZone;
                let utc = chrono::Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
                let args: Vec<Box<dyn InteropArg>> =
                    vec![Box::new(utc), uuid_arg(), Box::new("red"), Box::new("1.50")];
                calls.push(vec![Box::new(args)]);
            }
            calls
        }
        "empty_args" => one(vec![]),
        other => panic!("key vector {other:?} is not handled: add its Rust arguments"),
    }
}

#[test]
fn every_key_vector_gives_pythons_bytes_and_key() {
    let vectors = vectors("key_vectors");
    assert_eq!(vectors.len(), 19);
    for vector in &vectors {
        let name = field(vector, "name");
        let (namespace, operation) = (field(vector, "namespace"), field(vector, "operation"));
        validate_segment("namespace", namespace).expect("a valid namespace");
        validate_segment("operation", operation).expect("a valid operation");
        for args in calls(name) {
            let refs: Vec<&dyn InteropArg> = args.iter().map(|arg| &**arg).collect();
            let values: Vec<InteropValue> = refs
                .iter()
                .map(|arg| arg.to_interop().expect("an interop value"))
                .collect();
            let bytes = canonical_args(&values).expect("canonical bytes");
            assert_eq!(hex(&bytes), field(vector, "canonical_args_hex"), "{name}");
            let key = format!("{namespace}:{}", call_key(operation, &refs).expect("a key"));
            assert_eq!(key, field(vector, "key"), "{name}");
        }
    }
}

/// Reads `stored` as `T` and writes it back: Python's exact bytes again.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(stored: &[u8], expected: T) {
    let value: T = from_msgpack(stored).expect("decodes");
    assert_eq!(value, expected);
    assert_eq!(hex(&to_msgpack(&value).expect("encodes")), hex(stored));
}

/// Python `bytes` in a Rust value: serialized with `serialize_bytes`.
#[derive(Debug, PartialEq)]
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match InteropValue::deserialize(deserializer)? {
            InteropValue::Bytes(bytes) => Ok(Blob(bytes)),
            other => Err(serde::de::Error::custom(format!("bytes, not {other:?}"))),
        }
    }
}

/// `{'name': 'alice', 'age': 30}`, its fields in Python's insertion order.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    age: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Scores {
    z: f64,
    m: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u32,
    tags: Vec<String>,
    scores: Scores,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Nested {
    user: User,
    ok: bool,
    blob: Blob,
}

/// A datetime value at the root: the sentinel map itself.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct When(#[serde(with = "cachekit_core::interop::datetime")] SystemTime);

#[test]
fn every_value_vector_decodes_and_writes_back_byte_for_byte() {
    let vectors = vectors("value_vectors");
    assert_eq!(vectors.len(), 14);
    for vector in &vectors {
        let name = field(vector, "name");
        let stored = unhex(field(vector, "stored_hex"));
        match name {
            "int_42" => round_trip(&stored, 42_i64),
            "int_neg_big" => round_trip(&stored, -(1_i64 << 40)),
            "uint64_max" => round_trip(&stored, u64::MAX),
            "float_2_0" => round_trip(&stored, 2.0_f64),
            "float_0_1" => round_trip(&stored, 0.1_f64),
            "str_unicode" => round_trip(&stored, "héllo 🎉".to_owned()),
            "bytes" => round_trip(&stored, Blob(vec![0x00, 0xff])),
            "none" => round_trip(&stored, None::<i64>),
            "bool_true" => round_trip(&stored, true),
            "list" => round_trip(&stored, (1_i64, "two".to_owned(), 3.5_f64, None::<i64>)),
            "dict_unsorted_input" => round_trip(
                &stored,
                Person {
                    name: "alice".into(),
                    age: 30,
                },
            ),
            "nested" => round_trip(
                &stored,
                Nested {
                    user: User {
                        id: 7,
                        tags: vec!["a".into(), "b".into()],
                        scores: Scores { z: 1.5, m: -3 },
                    },
                    ok: true,
                    blob: Blob(vec![1]),
                },
            ),
            "tuple" => round_trip(&stored, (1_i64, 2_i64)),
            "datetime_value" => {
                let noon = UNIX_EPOCH + Duration::from_secs(1_705_321_800);
                round_trip(&stored, When(noon));
            }
            other => panic!("value vector {other:?} is not handled: add its Rust type"),
        }
        // Every vector also reads as a generic value and writes back the same.
        let generic: InteropValue = from_msgpack(&stored).expect("a generic value");
        assert_eq!(
            hex(&to_msgpack(&generic).expect("encodes")),
            hex(&stored),
            "{name}"
        );
    }
}
