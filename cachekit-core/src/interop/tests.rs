//! The canonical writer at every width boundary, the float collapse, sets,
//! map order, segments, `from_serde` and the argument types.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::write::{Profile, write};
use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn args(value: &InteropValue) -> String {
    let mut out = Vec::new();
    write(value, Profile::Args, &mut out).expect("writes");
    hex(&out)
}

fn stored(value: &InteropValue) -> String {
    let mut out = Vec::new();
    write(value, Profile::Value, &mut out).expect("writes");
    hex(&out)
}

fn refused(value: &InteropValue, profile: Profile) -> String {
    let mut out = Vec::new();
    write(value, profile, &mut out)
        .expect_err("refused")
        .to_string()
}

fn int(n: i128) -> InteropValue {
    InteropValue::Int(n)
}

fn str(s: &str) -> InteropValue {
    InteropValue::Str(s.to_owned())
}

#[test]
fn integers_take_their_shortest_form_unsigned_when_not_negative() {
    let cases: [(i128, &str); 24] = [
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (65_535, "cdffff"),
        (65_536, "ce00010000"),
        (4_294_967_295, "ceffffffff"),
        (4_294_967_296, "cf0000000100000000"),
        (i128::from(i64::MAX), "cf7fffffffffffffff"),
        (i128::from(u64::MAX), "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32_768, "d18000"),
        (-32_769, "d2ffff7fff"),
        (-2_147_483_648, "d280000000"),
        (-2_147_483_649, "d3ffffffff7fffffff"),
        (i128::from(i64::MIN), "d38000000000000000"),
        (100, "64"),
        (-5, "fb"),
        (1000, "cd03e8"),
    ];
    for (n, expected) in cases {
        assert_eq!(args(&int(n)), expected, "{n}");
        assert_eq!(stored(&int(n)), expected, "{n}");
    }
    for n in [
        i128::from(u64::MAX) + 1,
        i128::from(i64::MIN) - 1,
        i128::MAX,
    ] {
        assert!(refused(&int(n), Profile::Args).contains("outside [-2^63, 2^64-1]"));
    }
}

#[test]
fn argument_floats_collapse_to_ints_within_minus_2_63_to_2_64() {
    let two_63 = 9_223_372_036_854_775_808.0_f64;
    let two_64 = 18_446_744_073_709_551_616.0_f64;
    let float = InteropValue::Float;
    assert_eq!(args(&float(2.0)), "02");
    assert_eq!(args(&float(-0.0)), "00");
    assert_eq!(args(&float(-1.0)), "ff");
    assert_eq!(args(&float(-two_63)), "d38000000000000000");
    assert_eq!(args(&float(two_63)), "cf8000000000000000");
    assert_eq!(args(&float(two_64 - 2048.0)), "cffffffffffffff800");
    assert_eq!(args(&float(two_64)), "cb43f0000000000000");
    assert_eq!(args(&float(-two_63 - 2048.0)), "cbc3e0000000000001");
    assert_eq!(args(&float(2.5)), "cb4004000000000000");
    assert_eq!(args(&float(1e300)), "cb7e37e43c8800759c");
    // Values keep their floats.
    assert_eq!(stored(&float(2.0)), "cb4000000000000000");
    assert_eq!(stored(&float(-0.0)), "cb8000000000000000");
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(refused(&float(f), Profile::Args).contains("not finite"));
        assert!(refused(&float(f), Profile::Value).contains("not finite"));
    }
}

#[test]
fn strings_bytes_arrays_and_maps_at_every_length_boundary() {
    let s = |n: usize| "x".repeat(n);
    assert_eq!(&args(&str(&s(31)))[..2], "bf");
    assert_eq!(&args(&str(&s(32)))[..6], "d92078");
    assert_eq!(&args(&str(&s(255)))[..4], "d9ff");
    assert_eq!(&args(&str(&s(256)))[..8], "da010078");
    assert_eq!(&args(&str(&s(65_535)))[..6], "daffff");
    assert_eq!(&args(&str(&s(65_536)))[..10], "db00010000");
    let b = |n: usize| InteropValue::Bytes(vec![7; n]);
    assert_eq!(args(&b(0)), "c400");
    assert_eq!(&args(&b(255))[..4], "c4ff");
    assert_eq!(&args(&b(256))[..6], "c50100");
    assert_eq!(&args(&b(65_536))[..10], "c600010000");
    let a = |n: usize| InteropValue::Array(vec![InteropValue::Nil; n]);
    assert_eq!(args(&a(0)), "90");
    assert_eq!(&args(&a(15))[..2], "9f");
    assert_eq!(&args(&a(16))[..6], "dc0010");
    assert_eq!(&args(&a(65_535))[..6], "dcffff");
    assert_eq!(&args(&a(65_536))[..10], "dd00010000");
    let m = |n: usize| InteropValue::Map((0..n).map(|i| (format!("{i:05}"), int(0))).collect());
    assert_eq!(args(&m(0)), "80");
    assert_eq!(&args(&m(15))[..2], "8f");
    assert_eq!(&args(&m(16))[..6], "de0010");
    assert_eq!(&args(&m(65_536))[..10], "df00010000");
}

#[test]
fn map_keys_are_sorted_by_utf8_bytes_at_every_level() {
    let inner: BTreeMap<_, _> = [("y", 1), ("x", 2)]
        .map(|(k, v)| (k.to_owned(), int(v)))
        .into();
    let outer: BTreeMap<_, _> = [
        ("b", int(1)),
        ("é", int(3)),
        ("Z", int(4)),
        ("a", InteropValue::Map(inner)),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    assert_eq!(
        args(&InteropValue::Map(outer)),
        "84a15a04a16182a17802a17901a16201a2c3a903"
    );
}

#[test]
fn sets_sort_by_encoded_bytes_and_dedup_after_collapse() {
    let set = InteropValue::Set(vec![int(2), InteropValue::Float(2.0), int(-1), int(1)]);
    // 01 < 02 < ff: by encoded bytes, not by value.
    assert_eq!(args(&set), "930102ff");
    let set = InteropValue::Set(vec![str("b"), int(300), str("a"), InteropValue::Float(0.5)]);
    assert_eq!(args(&set), "94a161a162cb3fe0000000000000cd012c");
    assert_eq!(args(&InteropValue::Set(vec![])), "90");
    assert!(refused(&InteropValue::Set(vec![int(1)]), Profile::Value).contains("set"));
    let nested = InteropValue::Array(vec![InteropValue::Set(vec![])]);
    assert!(refused(&nested, Profile::Value).contains("sorted list"));
}

#[test]
fn datetimes_are_float_seconds_as_arguments_and_sentinels_as_values() {
    let whole = InteropValue::DateTime {
        unix_micros: 1_704_067_200_000_000,
    };
    assert_eq!(args(&whole), "ce65920080");
    let half = InteropValue::DateTime {
        unix_micros: 1_500_000,
    };
    assert_eq!(args(&half), "cb3ff8000000000000");
    let before = InteropValue::DateTime {
        unix_micros: -1_000_000,
    };
    assert_eq!(args(&before), "ff");
    let noon = InteropValue::DateTime {
        unix_micros: 1_705_321_800_000_000,
    };
    assert_eq!(
        stored(&noon),
        "82ac5f5f6461746574696d655f5fc3a576616c7565b9323032342d30312d31355431323a33303a30302b30303a3030"
    );
    let uuid = InteropValue::Uuid([
        0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30,
        0xc8,
    ]);
    assert_eq!(
        args(&uuid),
        "d92436626137623831302d396461642d313164312d383062342d303063303466643433306338"
    );
}

#[test]
fn nesting_is_bounded_on_write() {
    let mut deep = InteropValue::Nil;
    for _ in 0..MAX_DEPTH {
        deep = InteropValue::Array(vec![deep]);
    }
    assert_eq!(args(&deep).len(), 2 * (MAX_DEPTH + 1));
    let deeper = InteropValue::Array(vec![deep]);
    assert!(refused(&deeper, Profile::Value).contains("deeper than 1024"));
}

#[test]
fn segments_follow_the_pattern_in_full() {
    for good in [
        "users",
        "a",
        "0",
        "get_user",
        "a.b-c_d",
        "api",
        "nsx",
        &"a".repeat(64),
    ] {
        assert_eq!(validate_segment("namespace", good), Ok(()), "{good:?}");
    }
    for bad in [
        "",
        "users\n",
        "Users",
        "_users",
        ".users",
        "-x",
        "a..b",
        "a b",
        "a:b",
        "é",
        "ns",
        "nsapi",
        &"a".repeat(65),
    ] {
        let e = validate_segment("namespace", bad).expect_err(bad);
        assert!(e.reason().contains("interop namespace"), "{e}");
    }
    assert_eq!(validate_segment("operation", "ns"), Ok(()));
    assert_eq!(validate_segment("operation", "nsapi"), Ok(()));
    assert!(validate_segment("operation", "x..y").is_err());
}

#[test]
fn call_keys_hash_the_argument_array_and_name_bad_arguments() {
    let key = call_key("get_user", &[&42_i64]).unwrap();
    assert_eq!(
        key,
        "get_user:61598716255080080f6456eb065c2e51badfaa4320b0efe97469c29cffee8875"
    );
    assert_eq!(call_key("get_user", &[&42_u8]).unwrap(), key);
    assert_eq!(call_key("get_user", &[&42.0_f64]).unwrap(), key);
    assert_eq!(
        call_key_named("get_user", &[("user_id", &42_i16)]).unwrap(),
        key
    );
    assert_eq!(key, format!("get_user:{}", args_hash(&[int(42)]).unwrap()));
    let e = call_key("f", &[&1, &f64::NAN]).unwrap_err();
    assert!(e.reason().starts_with("argument 1: the float NaN"), "{e}");
    let e = call_key_named("f", &[("limit", &u128::MAX)]).unwrap_err();
    assert!(
        e.reason().starts_with("argument `limit`: the integer"),
        "{e}"
    );
    let e = call_key_named("f", &[("raw", &InteropValue::Int(1 << 70))]).unwrap_err();
    assert!(e.reason().starts_with("argument `raw`: "), "{e}");
    assert!(call_key("Bad", &[]).is_err());
    assert_eq!(
        call_key("none", &[]).unwrap(),
        "none:8064bf5f945dba521b017bb3f32b31a293a6e16944838d171ea9e77fab085e8e"
    );
}

#[test]
fn argument_types_give_their_python_values() {
    let v = |arg: &dyn InteropArg| arg.to_interop().unwrap();
    assert_eq!(v(&vec![1_u8, 2]), InteropValue::Array(vec![int(1), int(2)]));
    assert_eq!(
        v(&bytes::Bytes::from_static(b"\x01")),
        InteropValue::Bytes(vec![1])
    );
    assert_eq!(v(&[1_u8; 2]), v(&VecDeque::from([1, 1])));
    assert_eq!(
        v(&(1, "x", None::<i32>)),
        InteropValue::Array(vec![int(1), str("x"), InteropValue::Nil])
    );
    assert_eq!(v(&Arc::new("x")), str("x"));
    assert_eq!(v(&Box::new('x')), str("x"));
    assert_eq!(v(&Some(i64::MIN)), int(i128::from(i64::MIN)));
    assert_eq!(v(&u128::from(u64::MAX)), int(i128::from(u64::MAX)));
    assert!((u128::from(u64::MAX) + 1).to_interop().is_err());
    let e = u128::MAX.to_interop().unwrap_err();
    assert!(
        e.reason()
            .starts_with(&format!("the integer {} is outside", u128::MAX)),
        "{e}"
    );
    assert!((i128::from(i64::MIN) - 1).to_interop().is_err());
    assert!(f32::NAN.to_interop().is_err());
    let set: HashSet<i32> = [3, 1, 2].into();
    assert_eq!(args(&v(&set)), "93010203");
    assert_eq!(args(&v(&BTreeSet::from(["b", "a"]))), "92a161a162");
    let map: HashMap<String, Vec<i32>> = [("k".to_owned(), vec![1])].into();
    assert_eq!(args(&v(&map)), "81a16b9101");
    let e = HashMap::from([("k", f64::NAN)]).to_interop().unwrap_err();
    assert!(e.reason().starts_with("under the key \"k\": "), "{e}");
    let before = UNIX_EPOCH - Duration::from_nanos(500);
    assert_eq!(v(&before), InteropValue::DateTime { unix_micros: -1 });
}

#[test]
fn from_serde_builds_maps_arrays_and_refuses_what_python_lacks() {
    #[derive(Serialize)]
    struct User {
        name: String,
        tags: (u8, char),
        kind: Kind,
        nick: Option<String>,
    }
    #[derive(Serialize)]
    enum Kind {
        Admin,
        Guest(u8),
    }
    let user = User {
        name: "al".into(),
        tags: (1, 'x'),
        kind: Kind::Admin,
        nick: None,
    };
    assert_eq!(
        to_msgpack(&user).unwrap(),
        [&b"\x84\xa4kind\xa5Admin\xa4name\xa2al\xa4nick\xc0\xa4tags\x92\x01\xa1x"[..],].concat()
    );
    let e = InteropValue::from_serde(&Kind::Guest(1)).unwrap_err();
    assert!(e.reason().contains("`Kind::Guest` carries data"), "{e}");
    let e = InteropValue::from_serde(&HashMap::from([(1, 2)])).unwrap_err();
    assert!(e.reason().contains("a map key is an integer"), "{e}");
    let e = InteropValue::from_serde(&BTreeMap::from([((), 2)])).unwrap_err();
    assert!(e.reason().contains("string keys only"), "{e}");
    assert!(InteropValue::from_serde(&f64::INFINITY).is_err());
    assert!(InteropValue::from_serde(&u128::MAX).is_err());
    let e = to_msgpack(&BTreeSet::from([1])).map(|b| hex(&b));
    assert_eq!(e, Ok("9101".into()), "a serde set is a sequence");
    let e = to_msgpack(&InteropValue::Set(vec![int(1)])).unwrap_err();
    assert!(e.reason().contains("cannot be stored"), "{e}");
}

#[test]
fn interop_values_survive_from_serde() {
    let value = InteropValue::Array(vec![
        InteropValue::Set(vec![int(1)]),
        InteropValue::DateTime { unix_micros: -5 },
        InteropValue::Uuid([9; 16]),
        InteropValue::Bytes(vec![1, 2]),
        int(i128::from(u64::MAX)),
        InteropValue::Map(BTreeMap::from([("k".to_owned(), InteropValue::Nil)])),
    ]);
    assert_eq!(InteropValue::from_serde(&value).unwrap(), value);
}

#[cfg(feature = "chrono")]
#[test]
fn chrono_datetimes_floor_to_microseconds_before_the_epoch_too() {
    use chrono::TimeZone;
    // −0.499999001 s floors toward −∞: −500000 µs.
    let at = |secs, nanos| chrono::Utc.timestamp_opt(secs, nanos).unwrap().to_interop();
    assert_eq!(
        at(-1, 500_000_999),
        Ok(InteropValue::DateTime {
            unix_micros: -500_000
        })
    );
    assert_eq!(
        at(-1, 999_999_999),
        Ok(InteropValue::DateTime { unix_micros: -1 })
    );
    assert_eq!(
        at(1, 1),
        Ok(InteropValue::DateTime {
            unix_micros: 1_000_000
        })
    );
}

/// A struct argument whose fields are a set and a datetime, marked so.
#[derive(Serialize)]
struct Filter {
    #[serde(with = "crate::interop::set")]
    teams: HashSet<String>,
    #[serde(with = "crate::interop::datetime")]
    since: std::time::SystemTime,
}

impl InteropArg for Filter {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        InteropValue::from_serde(self)
    }
}

#[test]
fn set_and_datetime_fields_of_a_struct_argument_hash_as_python_s() {
    let since = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let filter = Filter {
        teams: ["b", "aa", "c"].iter().map(|s| s.to_string()).collect(),
        since,
    };
    // Python's `{"teams": {"aa", "b", "c"}, "since": datetime(...)}`.
    let as_python = InteropValue::Map(BTreeMap::from([
        (
            "teams".to_owned(),
            InteropValue::Set(vec![
                InteropValue::Str("c".into()),
                InteropValue::Str("aa".into()),
                InteropValue::Str("b".into()),
            ]),
        ),
        (
            "since".to_owned(),
            InteropValue::DateTime {
                unix_micros: 1_700_000_000_000_000,
            },
        ),
    ]));
    let ours = call_key("find", &[&filter as &dyn InteropArg]).unwrap();
    let python = call_key("find", &[&as_python as &dyn InteropArg]).unwrap();
    assert_eq!(ours, python);
    // A set value is refused, as Python refuses it; a datetime value is the
    // sentinel map.
    assert!(to_msgpack(&filter).is_err(), "a set in a value");
    #[derive(Serialize)]
    struct At(#[serde(with = "crate::interop::datetime")] std::time::SystemTime);
    let sentinel = to_msgpack(&At(since)).unwrap();
    assert_eq!(sentinel[0], 0x82, "a map of two");
}
