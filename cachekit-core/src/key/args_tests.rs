//! The key encoding against bincode 2's `config::standard()`, which version 1
//! must equal outside maps, and the canonical form of maps.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use proptest::prelude::*;
use serde::ser::{SerializeSeq, Serializer};
use smallvec::SmallVec;

use super::*;
use crate::key::test_value::Value;

fn ours<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out).expect("encodes");
    out
}

fn bincode_of<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("bincode encodes")
}

#[test]
fn the_version_is_pinned() {
    // Raising it means every deployed key changes: a release note, and new
    // pinned vectors in tests/key_vectors.rs.
    assert_eq!(KEY_ENCODING_VERSION, 1);
}

#[test]
fn integers_around_every_varint_boundary_are_bincodes() {
    let mut values: Vec<u64> = vec![0, 1, u64::MAX];
    for edge in [250, 251, 65_535, 65_536, u64::from(u32::MAX), 1 << 32] {
        values.extend([edge - 1, edge, edge + 1]);
    }
    for v in values {
        assert_eq!(ours(&v), bincode_of(&v), "{v}");
        assert_eq!(ours(&(v as u32)), bincode_of(&(v as u32)), "{v}");
        assert_eq!(ours(&(v as u16)), bincode_of(&(v as u16)), "{v}");
        assert_eq!(ours(&(v as u8)), bincode_of(&(v as u8)), "{v}");
        assert_eq!(ours(&u128::from(v)), bincode_of(&u128::from(v)), "{v}");
        for s in [v as i64, (v as i64).wrapping_neg()] {
            assert_eq!(ours(&s), bincode_of(&s), "{s}");
            assert_eq!(ours(&(s as i32)), bincode_of(&(s as i32)), "{s}");
            assert_eq!(ours(&(s as i16)), bincode_of(&(s as i16)), "{s}");
            assert_eq!(ours(&(s as i8)), bincode_of(&(s as i8)), "{s}");
            assert_eq!(ours(&i128::from(s)), bincode_of(&i128::from(s)), "{s}");
        }
    }
    for v in [u128::MAX, u128::from(u64::MAX) + 1] {
        assert_eq!(ours(&v), bincode_of(&v), "{v}");
    }
    for v in [i128::MIN, i128::MAX, i128::from(i64::MIN) - 1] {
        assert_eq!(ours(&v), bincode_of(&v), "{v}");
    }
    // The documented forms: u8 raw, i8 two's complement, others varint.
    assert_eq!(ours(&255_u8), [0xff]);
    assert_eq!(ours(&-1_i8), [0xff]);
    assert_eq!(ours(&-1_i64), [0x01]);
    assert_eq!(ours(&251_u64), [251, 251, 0]);
}

#[test]
fn chars_are_their_utf8_bytes_without_a_length() {
    for c in [
        'a', '\u{7f}', '\u{80}', 'é', '\u{7ff}', '\u{800}', '€', '\u{ffff}', '🦀',
    ] {
        assert_eq!(ours(&c), c.to_string().as_bytes(), "{c}");
        assert_eq!(ours(&c), bincode_of(&c), "{c}");
    }
}

/// A value of any serde data-model type but maps (and the refused shapes),
/// serialized as that type itself (no wrapping variant).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::U8),
        any::<u16>().prop_map(Value::U16),
        any::<u32>().prop_map(Value::U32),
        any::<u64>().prop_map(Value::U64),
        any::<u128>().prop_map(Value::U128),
        any::<i8>().prop_map(Value::I8),
        any::<i16>().prop_map(Value::I16),
        any::<i32>().prop_map(Value::I32),
        any::<i64>().prop_map(Value::I64),
        any::<i128>().prop_map(Value::I128),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        any::<char>().prop_map(Value::Char),
        ".{0,40}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
        Just(Value::None),
        Just(Value::Unit),
        Just(Value::UnitStruct),
        any::<u32>().prop_map(Value::UnitVariant),
        // Lengths and indices around the varint boundaries.
        (0_u64..70_000).prop_map(Value::U64),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let items = proptest::collection::vec(inner.clone(), 0..8);
        prop_oneof![
            inner.clone().prop_map(|v| Value::Some(Box::new(v))),
            inner.clone().prop_map(|v| Value::Newtype(Box::new(v))),
            (any::<u32>(), inner.clone()).prop_map(|(i, v)| Value::NewtypeVariant(i, Box::new(v))),
            items.clone().prop_map(Value::Seq),
            items.clone().prop_map(Value::Tuple),
            (any::<u32>(), items).prop_map(|(i, v)| Value::TupleVariant(i, v)),
            proptest::collection::vec(inner, 0..=4).prop_map(Value::Struct),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_value_but_maps_is_encoded_as_bincode_does(args in proptest::collection::vec(value(), 0..4)) {
        // As the arguments of a call: one after the other, like a tuple.
        let mut key: SmallVec<[u8; 64]> = SmallVec::new();
        let mut expected = Vec::new();
        for arg in &args {
            encode(arg, &mut key).expect("encodes");
            expected.extend(bincode_of(arg));
        }
        prop_assert_eq!(&key[..], &expected[..]);
    }

    #[test]
    fn typed_arguments_are_encoded_as_bincode_does(
        id in any::<u64>(),
        name in ".{0,20}",
        delta in any::<i64>(),
        tags in proptest::collection::vec(proptest::option::of(".{0,5}"), 0..5),
        ratio in any::<f64>(),
    ) {
        let args = (id, name.as_str(), delta, &tags, ratio, &tags[..]);
        prop_assert_eq!(ours(&args), bincode_of(&args));
    }
}

#[test]
fn a_sequence_of_unknown_length_is_written_with_its_count() {
    /// Serializes its items as a sequence whose length it does not announce.
    struct Unannounced(Vec<Vec<u16>>);
    impl Serialize for Unannounced {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(None)?;
            self.0.iter().try_for_each(|v| seq.serialize_element(v))?;
            seq.end()
        }
    }
    for n in [0, 1, 250, 251, 300] {
        let items: Vec<Vec<u16>> = (0..n).map(|i| vec![i; usize::from(i % 3)]).collect();
        let unannounced = (7_u8, Unannounced(items.clone()));
        assert_eq!(ours(&unannounced), bincode_of(&(7_u8, items)), "{n}");
    }
}

#[test]
fn a_sequence_whose_length_is_wrong_is_refused() {
    struct Lies;
    impl Serialize for Lies {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(3))?;
            seq.serialize_element(&1_u8)?;
            seq.end()
        }
    }
    assert!(encode(&Lies, &mut Vec::new()).is_err());
}

#[test]
fn a_failing_serialize_is_an_error() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not today"))
        }
    }
    let error = encode(&(1_u64, vec![Fails]), &mut Vec::new()).unwrap_err();
    assert_eq!(error.to_string(), "not today");
    let mut map = BTreeMap::new();
    map.insert(1_u8, Fails);
    assert!(encode(&map, &mut Vec::new()).is_err());
}

/// A hasher whose seed is chosen, so that maps iterate in different orders.
#[derive(Default, Clone)]
struct Seeded<const SEED: u64>(u64);

impl<const SEED: u64> std::hash::Hasher for Seeded<SEED> {
    fn finish(&self) -> u64 {
        let mut x = self.0 ^ SEED;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

#[test]
fn equal_hash_maps_give_equal_bytes_whatever_their_order() {
    let entries: Vec<(String, u64)> = (0..200).map(|i| (format!("k{i}"), i * 1_000)).collect();
    let forward: HashMap<String, u64> = entries.iter().cloned().collect();
    let backward: HashMap<String, u64> = entries.iter().rev().cloned().collect();
    let seeded: HashMap<String, u64, BuildHasherDefault<Seeded<7>>> =
        entries.iter().cloned().collect();
    let reseeded: HashMap<String, u64, BuildHasherDefault<Seeded<99>>> =
        entries.iter().rev().cloned().collect();
    let orders: Vec<Vec<&String>> = [seeded.keys().collect(), reseeded.keys().collect()].into();
    assert_ne!(orders[0], orders[1], "the seeds give different orders");
    let bytes = ours(&forward);
    assert_eq!(ours(&backward), bytes);
    assert_eq!(ours(&seeded), bytes);
    assert_eq!(ours(&reseeded), bytes);
    // The same entries in a `BTreeMap` give the same bytes too.
    let sorted: BTreeMap<String, u64> = entries.into_iter().collect();
    assert_eq!(ours(&sorted), bytes);
    assert_ne!(
        ours(&sorted),
        bincode_of(&sorted),
        "bincode follows the map"
    );
}

#[test]
fn map_entries_are_sorted_by_their_bytes_after_the_count() {
    // "b" (01 62) sorts before "aa" (02 61 61): the length comes first.
    let map: BTreeMap<&str, u8> = [("aa", 1), ("b", 2)].into();
    assert_eq!(ours(&map), [2, 1, b'b', 2, 2, b'a', b'a', 1]);
    // 512 (fb 00 02) sorts before 511 (fb ff 01): little endian.
    let map: BTreeMap<u64, u8> = [(511, 1), (512, 2)].into();
    assert_eq!(ours(&map), [2, 251, 0, 2, 2, 251, 255, 1, 1]);
    // Already in the order of their bytes: bincode's bytes.
    let map: BTreeMap<u8, &str> = [(1, "a"), (2, "b"), (200, "c")].into();
    assert_eq!(ours(&map), bincode_of(&map));
    assert_eq!(ours(&BTreeMap::<u8, u8>::new()), [0]);
}

#[test]
fn nested_and_unannounced_maps_are_canonical_too() {
    let inner = |n: u64| -> HashMap<u64, Vec<u8>> {
        (0..n).map(|i| (i * 300, vec![1; i as usize])).collect()
    };
    let outer: HashMap<String, HashMap<u64, Vec<u8>>> =
        (0..20).map(|i| (format!("n{i}"), inner(i))).collect();
    let again: HashMap<String, HashMap<u64, Vec<u8>>> =
        (0..20).rev().map(|i| (format!("n{i}"), inner(i))).collect();
    assert_eq!(ours(&outer), ours(&again));

    // `#[serde(flatten)]` makes a map of unknown length, which bincode refuses.
    #[derive(Serialize)]
    struct Inner {
        b: u8,
    }
    #[derive(Serialize)]
    struct Outer {
        a: u8,
        #[serde(flatten)]
        inner: Inner,
    }
    let flat = ours(&Outer {
        a: 1,
        inner: Inner { b: 2 },
    });
    let as_map: BTreeMap<&str, u8> = [("a", 1), ("b", 2)].into();
    assert_eq!(flat, ours(&as_map));
}

#[test]
fn sequences_keep_their_order() {
    // Sets arrive as sequences: sorting those would give these one key.
    assert_ne!(ours(&vec![1_u8, 2]), ours(&vec![2_u8, 1]));
}

#[test]
fn small_arguments_write_straight_into_an_inline_key() {
    let mut key: SmallVec<[u8; 64]> = SmallVec::from_slice(&[9; 16]);
    encode(&(42_u64, "x", (1_u8, -2_i32)), &mut key).unwrap();
    assert!(!key.spilled());
    assert_eq!(&key[16..], [0x2a, 1, b'x', 1, 3]);
}
