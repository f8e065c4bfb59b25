//! Pinned keys of cached-function calls: the full backend key (namespace
//! `ns`, function `f`) for a representative set of argument types. They
//! were recorded with bincode 2 (`config::standard()`), which keys were built
//! with before the key encoding of their own: version 1 of that encoding
//! must give every one of them unchanged, or every deployed cache would miss
//! after an upgrade. The one deliberate difference, maps written in the
//! order of their entries' bytes, is pinned apart.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, DefaultHasher};

use cachekit_core::key;
use serde::Serialize;

/// The backend key of the call of `f` with `args` (the tuple of its
/// arguments) in namespace `ns`, as `#[cache]` and a `Cache` build it.
fn call_key<T: Serialize + ?Sized>(args: &T) -> String {
    key::build(
        "ns",
        &key::for_call("f", args).expect("serializes"),
        key::MAX_KEY_LEN,
    )
}

#[derive(Serialize)]
struct Profile {
    id: u64,
    name: &'static str,
    active: bool,
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Meters(u32);

#[derive(Serialize)]
struct Pair(u8, i16);

#[derive(Serialize)]
enum Shape {
    Empty,
    Circle(u32),
    Rect(u16, u16),
    Named { id: u64, label: String },
}

/// Every argument set with its key, in the order of [`PINNED`].
fn vectors() -> Vec<(&'static str, String)> {
    let nan = f64::from_bits(0x7ff8_0000_0000_0000);
    let small_map: BTreeMap<u8, &str> = [(1, "a"), (2, "b")].into();
    vec![
        ("u8 0", call_key(&(0_u8,))),
        ("u8 250", call_key(&(250_u8,))),
        ("u8 251", call_key(&(251_u8,))),
        ("u8 255", call_key(&(255_u8,))),
        ("i8 -1", call_key(&(-1_i8,))),
        ("u16 251", call_key(&(251_u16,))),
        ("u32 65536", call_key(&(65_536_u32,))),
        ("u64 0", call_key(&(0_u64,))),
        ("u64 42", call_key(&(42_u64,))),
        ("u64 250", call_key(&(250_u64,))),
        ("u64 251", call_key(&(251_u64,))),
        ("u64 65535", call_key(&(65_535_u64,))),
        ("u64 65536", call_key(&(65_536_u64,))),
        ("u64 2^32-1", call_key(&(u64::from(u32::MAX),))),
        ("u64 2^32", call_key(&(1_u64 << 32,))),
        ("u64 max", call_key(&(u64::MAX,))),
        ("usize 300", call_key(&(300_usize,))),
        ("i64 0", call_key(&(0_i64,))),
        ("i64 -1", call_key(&(-1_i64,))),
        ("i64 42", call_key(&(42_i64,))),
        ("i64 -126", call_key(&(-126_i64,))),
        ("i64 min", call_key(&(i64::MIN,))),
        ("i32 max", call_key(&(i32::MAX,))),
        ("isize -300", call_key(&(-300_isize,))),
        ("u128 2^64", call_key(&(1_u128 << 64,))),
        ("i128 min", call_key(&(i128::MIN,))),
        ("bool false", call_key(&(false,))),
        ("bool true", call_key(&(true,))),
        ("f32 1.5", call_key(&(1.5_f32,))),
        ("f64 1.5", call_key(&(1.5_f64,))),
        ("f64 -0.0", call_key(&(-0.0_f64,))),
        ("f64 NaN", call_key(&(nan,))),
        ("char a", call_key(&('a',))),
        ("char é", call_key(&('é',))),
        ("char €", call_key(&('€',))),
        ("char crab", call_key(&('🦀',))),
        ("str empty", call_key(&("",))),
        ("str ascii", call_key(&("hello",))),
        ("str utf-8", call_key(&("héllo",))),
        ("String", call_key(&(String::from("id-7"),))),
        ("Vec<u8>", call_key(&(vec![1_u8, 2, 255],))),
        ("&[u32]", call_key(&(&[1_u32, 300, 70_000][..],))),
        ("[u8; 3]", call_key(&([9_u8, 8, 7],))),
        ("Option None", call_key(&(None::<u64>,))),
        ("Option Some", call_key(&(Some(5_u64),))),
        ("unit", call_key(&((),))),
        ("no arguments", call_key(&())),
        ("unit struct", call_key(&(Unit,))),
        ("newtype struct", call_key(&(Meters(400),))),
        ("tuple struct", call_key(&(Pair(1, -2),))),
        ("tuple (u64, &str)", call_key(&(42_u64, "x"))),
        ("tuple nested", call_key(&((1_u8, (2_u16, 3_u32)), true))),
        (
            "struct",
            call_key(&(Profile {
                id: 7,
                name: "ada",
                active: true,
            },)),
        ),
        ("enum unit variant", call_key(&(Shape::Empty,))),
        ("enum newtype variant", call_key(&(Shape::Circle(3),))),
        ("enum tuple variant", call_key(&(Shape::Rect(2, 300),))),
        (
            "enum struct variant",
            call_key(&(Shape::Named {
                id: 1,
                label: "x".into(),
            },)),
        ),
        (
            "Vec<Option<String>>",
            call_key(&(vec![Some("a".to_string()), None],)),
        ),
        (
            "long, hashed",
            call_key(&(42_u64, "a user name that does not fit")),
        ),
        ("long str, hashed", call_key(&("x".repeat(1000),))),
        ("15 bytes, plain", call_key(&([0xab_u8; 15],))),
        ("16 bytes, hashed", call_key(&([0xab_u8; 15], 1_u8))),
        ("BTreeMap<u8, &str>", call_key(&(small_map,))),
        ("BTreeMap empty", call_key(&(BTreeMap::<u8, u8>::new(),))),
    ]
}

/// The keys bincode 2 gave, by label.
const PINNED: &[(&str, &str)] = &[
    ("u8 0", "ns:f:00"),
    ("u8 250", "ns:f:fa"),
    ("u8 251", "ns:f:fb"),
    ("u8 255", "ns:f:ff"),
    ("i8 -1", "ns:f:ff"),
    ("u16 251", "ns:f:fbfb00"),
    ("u32 65536", "ns:f:fc00000100"),
    ("u64 0", "ns:f:00"),
    ("u64 42", "ns:f:2a"),
    ("u64 250", "ns:f:fa"),
    ("u64 251", "ns:f:fbfb00"),
    ("u64 65535", "ns:f:fbffff"),
    ("u64 65536", "ns:f:fc00000100"),
    ("u64 2^32-1", "ns:f:fcffffffff"),
    ("u64 2^32", "ns:f:fd0000000001000000"),
    ("u64 max", "ns:f:fdffffffffffffffff"),
    ("usize 300", "ns:f:fb2c01"),
    ("i64 0", "ns:f:00"),
    ("i64 -1", "ns:f:01"),
    ("i64 42", "ns:f:54"),
    ("i64 -126", "ns:f:fbfb00"),
    ("i64 min", "ns:f:fdffffffffffffffff"),
    ("i32 max", "ns:f:fcfeffffff"),
    ("isize -300", "ns:f:fb5702"),
    ("u128 2^64", "ns:f:9a9ea526a5089c29f791869a3db81ba3"),
    ("i128 min", "ns:f:b9a0baf73d791621030123f4a650c1df"),
    ("bool false", "ns:f:00"),
    ("bool true", "ns:f:01"),
    ("f32 1.5", "ns:f:0000c03f"),
    ("f64 1.5", "ns:f:000000000000f83f"),
    ("f64 -0.0", "ns:f:0000000000000080"),
    ("f64 NaN", "ns:f:000000000000f87f"),
    ("char a", "ns:f:61"),
    ("char é", "ns:f:c3a9"),
    ("char €", "ns:f:e282ac"),
    ("char crab", "ns:f:f09fa680"),
    ("str empty", "ns:f:00"),
    ("str ascii", "ns:f:0568656c6c6f"),
    ("str utf-8", "ns:f:0668c3a96c6c6f"),
    ("String", "ns:f:0469642d37"),
    ("Vec<u8>", "ns:f:030102ff"),
    ("&[u32]", "ns:f:0301fb2c01fc70110100"),
    ("[u8; 3]", "ns:f:090807"),
    ("Option None", "ns:f:00"),
    ("Option Some", "ns:f:0105"),
    ("unit", "ns:f:"),
    ("no arguments", "ns:f:"),
    ("unit struct", "ns:f:"),
    ("newtype struct", "ns:f:fb9001"),
    ("tuple struct", "ns:f:0103"),
    ("tuple (u64, &str)", "ns:f:2a0178"),
    ("tuple nested", "ns:f:01020301"),
    ("struct", "ns:f:070361646101"),
    ("enum unit variant", "ns:f:00"),
    ("enum newtype variant", "ns:f:0103"),
    ("enum tuple variant", "ns:f:0202fb2c01"),
    ("enum struct variant", "ns:f:03010178"),
    ("Vec<Option<String>>", "ns:f:0201016100"),
    ("long, hashed", "ns:f:7d8d71276503f3af27380d30b65e57e7"),
    ("long str, hashed", "ns:f:6bc2059d320034ee33bf36d062957a4f"),
    ("15 bytes, plain", "ns:f:ababababababababababababababab"),
    ("16 bytes, hashed", "ns:f:9414a5a0708f1ae868910d9de1f51584"),
    ("BTreeMap<u8, &str>", "ns:f:02010161020162"),
    ("BTreeMap empty", "ns:f:00"),
];

#[test]
fn version_1_keys_are_the_keys_recorded_with_bincode() {
    let got = vectors();
    let listing: String = got
        .iter()
        .map(|(label, key)| format!("    ({label:?}, {key:?}),\n"))
        .collect();
    assert_eq!(got.len(), PINNED.len(), "got:\n{listing}");
    for ((label, key), (pinned_label, pinned)) in got.iter().zip(PINNED) {
        assert_eq!(label, pinned_label);
        assert_eq!(key, pinned, "{label}; got:\n{listing}");
    }
}

/// `BTreeMap`s whose order is not that of their entries' bytes: the label,
/// the key bincode gave, and version 1's (entries sorted by their bytes).
const REORDERED_MAPS: &[(&str, &str, &str)] = &[
    // "b" (01 62) sorts before "aa" (02 61 61): the length comes first.
    (
        "BTreeMap<String, u8>",
        "ns:f:0202616101016202",
        "ns:f:0201620202616101",
    ),
    // 512 (fb 00 02) sorts before 511 (fb ff 01): little endian.
    (
        "BTreeMap<u64, u8>",
        "ns:f:02fbff0101fb000202",
        "ns:f:02fb000202fbff0101",
    ),
    // 0 (00) sorts before -1 (zigzag 01).
    ("BTreeMap<i64, u8>", "ns:f:0201010002", "ns:f:0200020101"),
];

#[test]
fn maps_whose_order_is_not_their_bytes_order_get_canonical_keys() {
    let string_map: BTreeMap<String, u8> = [("aa".into(), 1), ("b".into(), 2)].into();
    let wide_map: BTreeMap<u64, u8> = [(511, 1), (512, 2)].into();
    let signed_map: BTreeMap<i64, u8> = [(-1, 1), (0, 2)].into();
    let got = [
        call_key(&(string_map,)),
        call_key(&(wide_map,)),
        call_key(&(signed_map,)),
    ];
    for (key, (label, bincode, v1)) in got.iter().zip(REORDERED_MAPS) {
        assert_eq!(key, v1, "{label}");
        assert_ne!(key, bincode, "{label}");
    }
}

#[test]
fn a_hash_map_gives_one_key_whatever_its_order() {
    let entries: Vec<(String, u32)> = (0..50).map(|i| (format!("k{i}"), i * 100)).collect();
    let key = call_key(&(entries.iter().cloned().collect::<HashMap<_, _>>(),));
    for _ in 0..10 {
        // A new `RandomState` each time: a new iteration order.
        let random: HashMap<String, u32> = entries.iter().rev().cloned().collect();
        assert_eq!(call_key(&(random,)), key);
    }
    let fixed: HashMap<String, u32, BuildHasherDefault<DefaultHasher>> =
        entries.iter().cloned().collect();
    assert_eq!(call_key(&(fixed,)), key);
    // The same entries in a `BTreeMap` (already hashed: 50 entries are long).
    let sorted: BTreeMap<String, u32> = entries.into_iter().collect();
    assert_eq!(call_key(&(sorted,)), key);
    assert_eq!(key.len(), "ns:f:".len() + 32);

    // A short one, whose key shows the entries in the order of their bytes.
    let mut short = HashMap::new();
    short.insert("aa", 1_u8);
    short.insert("b", 2_u8);
    assert_eq!(call_key(&(short,)), REORDERED_MAPS[0].2);
}
