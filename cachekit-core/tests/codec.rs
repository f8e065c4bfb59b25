//! The codec against hostile bytes: a million mutated envelopes and payloads
//! (their checksums recomputed, so that every mutation reaches the payload
//! reader) decoded as several stored types, with no panic and no abort; and
//! round trips of random values.
//!
//! Envelopes are forged by the documented format (`cachekit_core::codec`),
//! independently of the codec's own writer.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use cachekit_core::__private::codec::{self, HEADER_LEN};
use cachekit_core::backend::Bytes;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    email: Option<String>,
    tags: Vec<String>,
    score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    Started,
    Moved { x: i32, y: i32 },
    Named(String),
    Pair(u8, char),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tree {
    label: String,
    children: Vec<Tree>,
    next: Option<Box<Tree>>,
}

type Table = HashMap<String, Vec<u8>>;
type Mixed = (
    i16,
    i64,
    u128,
    bool,
    char,
    Option<u16>,
    BTreeMap<u32, String>,
);

fn tree(depth: u32) -> Tree {
    Tree {
        label: format!("n{depth}"),
        children: (0..depth.min(3)).map(tree).collect(),
        next: (depth > 0).then(|| Box::new(tree(depth - 1))),
    }
}

/// Valid envelopes of every stored type, to mutate.
fn seeds() -> Vec<Bytes> {
    let profile = Profile {
        id: 42,
        name: "Ada Lovelace".into(),
        email: Some("ada@example.com".into()),
        tags: vec!["math".into(), "engines".into()],
        score: 9.5,
    };
    let table: Table = [("a".into(), vec![1, 2, 3]), ("bb".into(), vec![])]
        .into_iter()
        .collect();
    let mixed: Mixed = (
        -300,
        i64::MIN,
        u128::MAX,
        true,
        'é',
        Some(65_000),
        [(1, "one".into()), (70_000, "big".into())]
            .into_iter()
            .collect(),
    );
    let events = vec![
        Event::Started,
        Event::Moved { x: -5, y: 1 << 20 },
        Event::Named("x".repeat(300)),
        Event::Pair(7, '🦀'),
    ];
    vec![
        codec::encode("a string of some length", None).unwrap(),
        codec::encode(&1_700_000_000_000_u64, None).unwrap(),
        codec::encode(&vec!["x".to_string(); 40], None).unwrap(),
        codec::encode(&profile, None).unwrap(),
        codec::encode(&events, None).unwrap(),
        codec::encode(&tree(5), None).unwrap(),
        codec::encode(&table, None).unwrap(),
        codec::encode(&mixed, None).unwrap(),
    ]
}

/// How many stored types [`decode_as`] knows.
const TYPES: usize = 8;

/// Decodes `envelope` as stored type number `ty` (the order of [`seeds`]),
/// catching a panic; `true` if it panicked.
fn decode_as(ty: usize, envelope: &Bytes) -> bool {
    fn one<T: DeserializeOwned>(envelope: &Bytes) -> bool {
        catch_unwind(AssertUnwindSafe(|| {
            let _ = codec::decode::<T>(envelope.clone());
        }))
        .is_err()
    }
    match ty % TYPES {
        0 => one::<String>(envelope),
        1 => one::<u64>(envelope),
        2 => one::<Vec<String>>(envelope),
        3 => one::<Profile>(envelope),
        4 => one::<Vec<Event>>(envelope),
        5 => one::<Tree>(envelope),
        6 => one::<Table>(envelope),
        _ => one::<Mixed>(envelope),
    }
}

/// Decodes a bare `payload` (no envelope) as stored type number `ty`.
fn decode_payload_as(ty: usize, payload: &[u8]) {
    match ty % TYPES {
        0 => drop(codec::decode_payload::<String>(payload)),
        1 => drop(codec::decode_payload::<u64>(payload)),
        2 => drop(codec::decode_payload::<Vec<String>>(payload)),
        3 => drop(codec::decode_payload::<Profile>(payload)),
        4 => drop(codec::decode_payload::<Vec<Event>>(payload)),
        5 => drop(codec::decode_payload::<Tree>(payload)),
        6 => drop(codec::decode_payload::<Table>(payload)),
        _ => drop(codec::decode_payload::<Mixed>(payload)),
    }
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random change to `bytes` at or after `from`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, from: usize) {
    let from = from.min(bytes.len());
    let at = from + rng.below(bytes.len() - from + 1);
    match rng.below(8) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 if at < bytes.len() => bytes[at] = rng.next() as u8,
        // A varint marker, then a huge or random length.
        2 => {
            let marker = [251, 252, 253, 254, 255][rng.below(5)];
            let mut inserted = vec![marker];
            let width = match marker {
                251 => 2,
                252 => 4,
                253 => 8,
                _ => 16,
            };
            let big = if rng.below(2) == 0 {
                u128::MAX
            } else {
                u128::from(rng.next())
            };
            inserted.extend_from_slice(&big.to_le_bytes()[..width]);
            bytes.splice(at..at, inserted);
        }
        3 => bytes.truncate(at),
        4 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            if at < end {
                bytes.drain(at..end);
            }
        }
        5 => {
            let noise: Vec<u8> = (0..1 + rng.below(12)).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, noise);
        }
        // Nesting: a run of "Some" / "variant 1" tags.
        6 => {
            let run = vec![1_u8; rng.below(400)];
            bytes.splice(at..at, run);
        }
        _ if at < bytes.len() => bytes[at] = [0, 1, 250, 251, 252, 253, 254, 255][rng.below(8)],
        _ => bytes.push(rng.next() as u8),
    }
}

/// Recomputes the checksum of an envelope of at least `HEADER_LEN` bytes
/// (the current version's: the checksum is its last 4 bytes).
fn reseal(envelope: &mut [u8]) {
    let at = HEADER_LEN - 4;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&envelope[2..at]), &envelope[HEADER_LEN..]);
    envelope[at..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_million_mutated_entries_decode_without_panic_or_abort() {
    const INPUTS: usize = 1_000_000;
    let seeds = seeds();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut panics = 0;
    let mut decoded = 0;
    let mut opened = 0;
    for round in 0..INPUTS {
        let seed = &seeds[round % seeds.len()];
        let mut bytes = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            // Mostly the payload; sometimes the header too.
            let from = if rng.below(10) == 0 { 0 } else { HEADER_LEN };
            mutate(&mut rng, &mut bytes, from);
        }
        // A valid checksum, nine times in ten: the mutation reaches the reader.
        if bytes.len() >= HEADER_LEN && rng.below(10) != 0 {
            reseal(&mut bytes);
        }
        let envelope = Bytes::from(bytes);
        opened += usize::from(codec::open(envelope.clone()).is_ok());
        // As the type that wrote it, and as another.
        let ty = round % seeds.len();
        panics += usize::from(decode_as(ty, &envelope));
        panics += usize::from(decode_as(ty + 1 + rng.below(TYPES - 1), &envelope));
        decoded += 1;
    }
    assert_eq!(decoded, INPUTS);
    assert!(
        opened > INPUTS / 2,
        "{opened} of {INPUTS} envelopes passed the checksum: the mutations do not reach the reader"
    );
    assert_eq!(panics, 0, "decodes that panicked");
}

fn profiles() -> impl Strategy<Value = Profile> {
    (
        any::<u64>(),
        ".{0,40}",
        proptest::option::of(".{0,20}"),
        proptest::collection::vec(".{0,8}", 0..6),
        any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()),
    )
        .prop_map(|(id, name, email, tags, score)| Profile {
            id,
            name,
            email,
            tags,
            score,
        })
}

fn events() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Started),
        (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Event::Moved { x, y }),
        ".{0,300}".prop_map(Event::Named),
        (any::<u8>(), any::<char>()).prop_map(|(n, c)| Event::Pair(n, c)),
    ]
}

fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = codec::encode(value, None).expect("encodes");
    prop_assert_eq!(&codec::decode::<T>(bytes).expect("decodes"), value);
    Ok(())
}

proptest! {
    #[test]
    fn random_values_round_trip(
        profile in profiles(),
        events in proptest::collection::vec(events(), 0..20),
        mixed in (
            any::<i16>(),
            any::<i64>(),
            any::<u128>(),
            any::<bool>(),
            any::<char>(),
            any::<Option<u16>>(),
            proptest::collection::btree_map(any::<u32>(), ".{0,10}", 0..10),
        ),
        table in proptest::collection::hash_map(".{0,10}", any::<Vec<u8>>(), 0..10),
        bytes in any::<Vec<u8>>(),
    ) {
        round_trips(&profile)?;
        round_trips(&events)?;
        round_trips(&mixed)?;
        round_trips(&table)?;
        round_trips(&bytes)?;
    }

    #[test]
    fn any_payload_is_a_value_or_an_error(payload in any::<Vec<u8>>()) {
        for ty in 0..TYPES {
            let panicked = catch_unwind(|| decode_payload_as(ty, &payload)).is_err();
            prop_assert!(!panicked, "type {}", ty);
        }
    }
}
