//! The interop reader against a million random and mutated inputs: random
//! bytes (often starting with a MessagePack marker) and mutations of valid
//! canonical documents (random interop values, datetime sentinels, deep
//! nesting), each decoded into a generic [`InteropValue`] and into typed
//! structs.
//!
//! For every input: nothing panics; a generic value that was read writes
//! back to bytes that read as the same value, and write the same bytes
//! again. For every random value made to seed the corpus (without NaN): the
//! value profile refuses it exactly when it holds a set; otherwise
//! `from_msgpack(to_msgpack(v))` is `v` (a UUID reads back as its text); and
//! its argument bytes are always written.
//!
//! The generator is seeded: every run tries the same inputs.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::write::hyphenated;
use super::*;
use crate::test_rng::Rng;

/// Inputs tried, half random and half mutations of earlier ones.
const INPUTS: usize = 1_000_000;

/// The run stops here even short of [`INPUTS`] (a guard against a hang;
/// many times the usual run time on a loaded CI machine).
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// How many valid documents, and how many earlier inputs, mutations start from.
const POOL: usize = 4096;

/// Bytes a mutation writes: MessagePack markers at the edges of their forms.
const MARKERS: [u8; 16] = [
    0x00, 0x7f, 0x80, 0x90, 0xa0, 0xc1, 0xc4, 0xc7, 0xca, 0xcb, 0xd4, 0xd9, 0xdc, 0xdd, 0xdf, 0xff,
];

/// The fuzz tests' generator, with draws of interop data.
impl Rng {
    /// A number, often one at a MessagePack width boundary.
    fn int(&mut self) -> i128 {
        const EDGES: [i128; 14] = [
            0,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as i128,
            1 << 32,
            u64::MAX as i128,
            -32,
            -33,
            -129,
            i64::MIN as i128,
        ];
        match self.below(4) {
            0 => EDGES[self.below(EDGES.len())],
            1 => i128::from(self.next() as i64),
            2 => i128::from(self.next()),
            _ => i128::from(self.next() as i8),
        }
    }

    fn text(&mut self) -> String {
        const PIECES: [&str; 8] = ["a", "Z", "é", "🎉", "__datetime__", "value", "", "日本"];
        let mut text = String::new();
        for _ in 0..self.below(4) {
            text.push_str(PIECES[self.below(PIECES.len())]);
        }
        if self.below(16) == 0 {
            text.push_str(&"x".repeat(self.below(300)));
        }
        text
    }

    /// A random interop value without NaN; sets only when `sets`.
    fn value(&mut self, depth: u32, sets: bool) -> InteropValue {
        let kinds = if depth == 0 { 9 } else { 12 };
        match self.below(kinds) {
            0 => InteropValue::Nil,
            1 => InteropValue::Bool(self.below(2) == 1),
            2 | 3 => InteropValue::Int(self.int()),
            4 => InteropValue::Float(match self.below(3) {
                0 => f64::from_bits(self.next()),
                1 => self.int() as f64,
                _ => self.int() as f64 / 8.0,
            })
            .finite_or_nil(),
            5 => InteropValue::Str(self.text()),
            6 => InteropValue::Bytes((0..self.below(40)).map(|_| self.next() as u8).collect()),
            // Years 1 to 9999, which Python's datetime holds.
            7 => InteropValue::DateTime {
                unix_micros: (self.next() % 315_537_897_600_000_000) as i64
                    - 62_135_596_800_000_000,
            },
            8 => InteropValue::Uuid(self.next().to_le_bytes().repeat(2).try_into().expect("16")),
            9 => InteropValue::Array(self.values(depth - 1, sets)),
            10 if sets => InteropValue::Set(self.values(depth - 1, sets)),
            _ => InteropValue::Map(
                (0..self.below(6))
                    .map(|_| (self.text(), self.value(depth - 1, sets)))
                    .collect(),
            ),
        }
    }

    fn values(&mut self, depth: u32, sets: bool) -> Vec<InteropValue> {
        (0..self.below(6))
            .map(|_| self.value(depth, sets))
            .collect()
    }
}

impl InteropValue {
    fn finite_or_nil(self) -> InteropValue {
        match self {
            InteropValue::Float(f) if !f.is_finite() => InteropValue::Nil,
            other => other,
        }
    }

    fn has_set(&self) -> bool {
        match self {
            InteropValue::Set(_) => true,
            InteropValue::Array(items) => items.iter().any(InteropValue::has_set),
            InteropValue::Map(map) => map.values().any(InteropValue::has_set),
            _ => false,
        }
    }

    /// The value a stored copy of this one reads back as: a UUID is its text.
    fn as_read(&self) -> InteropValue {
        match self {
            InteropValue::Uuid(bytes) => InteropValue::Str(hyphenated(bytes)),
            InteropValue::Array(items) => {
                InteropValue::Array(items.iter().map(Self::as_read).collect())
            }
            InteropValue::Map(map) => {
                InteropValue::Map(map.iter().map(|(k, v)| (k.clone(), v.as_read())).collect())
            }
            other => other.clone(),
        }
    }
}

/// A typed target: a struct with nested, optional and map fields (whose
/// keys are integers, which only a typed read accepts).
#[derive(Debug, Serialize, Deserialize)]
struct Typed {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
    nested: Option<Box<Typed>>,
    extra: HashMap<u32, Vec<i64>>,
}

/// A typed target with a datetime field.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Stamped {
    #[serde(with = "crate::interop::datetime")]
    at: SystemTime,
    name: String,
}

/// How many inputs each way of reading accepted.
#[derive(Debug, Default)]
struct Read {
    generic: usize,
    typed: usize,
}

/// Decodes `input` every way; checks what a generic read gives.
fn check(input: &[u8], read: &mut Read) {
    let typed = from_msgpack::<Typed>(input).is_ok()
        | from_msgpack::<Stamped>(input).is_ok()
        | from_msgpack::<Vec<(String, i64)>>(input).is_ok();
    read.typed += usize::from(typed);
    let Ok(value) = from_msgpack::<InteropValue>(input) else {
        return;
    };
    read.generic += 1;
    // A generic value with NaN, a far datetime or a set cannot be written;
    // any other writes back to what reads as itself.
    if let Ok(bytes) = to_msgpack(&value) {
        let again: InteropValue = from_msgpack(&bytes).expect("canonical bytes read");
        assert_eq!(again, value, "re-read of {bytes:02x?}");
        assert_eq!(to_msgpack(&again).expect("writes"), bytes, "written twice");
    }
}

/// Checks a random valid value both ways; its canonical stored bytes, if any.
fn check_value(value: &InteropValue) -> Option<Vec<u8>> {
    canonical_args(std::slice::from_ref(value)).expect("arguments are written");
    match to_msgpack(value) {
        Ok(bytes) => {
            assert!(!value.has_set(), "a set was stored");
            let read: InteropValue = from_msgpack(&bytes).expect("reads");
            assert_eq!(read, value.as_read(), "round trip of {value:?}");
            Some(bytes)
        }
        Err(e) => {
            assert!(value.has_set(), "{e} for {value:?}");
            None
        }
    }
}

/// Documents the corpus starts from: a typed struct (as rmp-serde writes
/// it, with integer keys), a datetime field, deep nesting, ext,
/// non-canonical widths, a `CK` frame.
fn seeds() -> Vec<Vec<u8>> {
    let leaf = Typed {
        id: 7,
        name: "n".into(),
        tags: vec!["a".into(), "é".into()],
        score: Some(0.5),
        nested: None,
        extra: HashMap::from([(1, vec![-1, 300]), (70_000, vec![])]),
    };
    let typed = Typed {
        id: u64::MAX,
        nested: Some(Box::new(leaf)),
        score: None,
        extra: HashMap::new(),
        name: String::new(),
        tags: vec![],
    };
    let stamped = BTreeMap::from([
        (
            "at",
            InteropValue::DateTime {
                unix_micros: 1_705_321_800_000_007,
            },
        ),
        ("name", InteropValue::Str("x".into())),
    ]);
    let mut deep = vec![0x91; MAX_DEPTH - 1];
    deep.push(0x90);
    vec![
        rmp_serde::to_vec_named(&typed).expect("writes"),
        to_msgpack(&stamped).expect("writes"),
        deep,
        vec![
            0x82, 0xa2, b'i', b'd', 0xd1, 0x00, 0x05, 0xa4, b'n', b'a', b'm', b'e', 0xd4, 1, 2,
        ],
        vec![0xdd, 0, 0, 0, 2, 0xca, 0x40, 0x20, 0, 0, 0xc7, 1, 5, 9],
        b"CK\x03\x00\x00\x00\x02{}\x80".to_vec(),
    ]
}

#[test]
fn a_million_random_and_mutated_inputs_decode_without_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let seeds = seeds();
    // Canonical documents of random values, and earlier inputs: what
    // mutations start from (with the seeds), each pool bounded.
    let mut valid: Vec<Vec<u8>> = Vec::new();
    let mut corpus: Vec<Vec<u8>> = vec![Vec::new()];
    let keep = |rng: &mut Rng, pool: &mut Vec<Vec<u8>>, bytes: Vec<u8>| {
        if pool.len() < POOL {
            pool.push(bytes);
        } else {
            pool[rng.below(POOL)] = bytes;
        }
    };
    let (mut failures, mut first_failure) = (0, None);
    let mut read = Read::default();
    let mut values = 0;
    let started = Instant::now();
    let mut tried = 0;
    while tried < INPUTS && started.elapsed() < TIME_LIMIT {
        // Every 8th input, a fresh valid value: checked, and its bytes kept.
        if tried % 8 == 0 {
            let sets = rng.below(4) == 0;
            let value = rng.value(3, sets);
            match catch_unwind(AssertUnwindSafe(|| check_value(&value))) {
                Ok(Some(bytes)) => keep(&mut rng, &mut valid, bytes),
                Ok(None) => {}
                Err(_) => {
                    failures += 1;
                    first_failure.get_or_insert_with(|| format!("value {value:?}"));
                }
            }
            values += 1;
        }
        let input: Vec<u8> = if rng.below(2) == 0 {
            let mut bytes: Vec<u8> = (0..rng.below(48)).map(|_| rng.next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                *first = 0x80 | (*first & 0x7f);
            }
            bytes
        } else {
            let pool = match rng.below(4) {
                0 => &seeds,
                1 if !valid.is_empty() => &valid,
                _ => &corpus,
            };
            let mut input = pool[rng.below(pool.len())].clone();
            let other = &corpus[rng.below(corpus.len())];
            for _ in 0..1 + rng.below(3) {
                rng.mutate(&mut input, other, &MARKERS);
            }
            input
        };
        match catch_unwind(AssertUnwindSafe(|| check(&input, &mut read))) {
            Ok(()) => {}
            Err(_) => {
                failures += 1;
                first_failure.get_or_insert_with(|| format!("input {input:02x?}"));
            }
        }
        keep(&mut rng, &mut corpus, input);
        tried += 1;
    }
    println!(
        "interop reader: {tried} inputs ({} read as a generic value, {} as a typed one) \
         and {values} random values in {:.1?}",
        read.generic,
        read.typed,
        started.elapsed()
    );
    assert_eq!(
        failures, 0,
        "inputs that panicked; the first: {first_failure:?}"
    );
}
