//! The key builder against a million random and mutated inputs: namespaces,
//! raw keys and function names of any text (spaces, line ends, `:`, `~`, `@`,
//! non-ASCII, hundreds of bytes), versions, backend key limits, and the
//! arguments of a call in every serde shape (maps in any order, sequences of
//! unannounced length, and `Serialize` implementations that fail or lie).
//!
//! For every input: nothing panics; every key built (raw, call and lock key)
//! passes the backend key validation under the limit asked for; the same
//! input gives the same key; equal maps give one key whatever their order;
//! `#[cache]`'s one-step call key equals the `Cache` key of `for_call`'s; an
//! argument that cannot be encoded is an `Error::Codec`, never a key; and no
//! two different inputs give one key (among the keys met, and against the
//! inputs that spell the same text with a `:` moved between namespace and
//! key, or the version written into the namespace).
//!
//! Inputs are byte strings that a small reader turns into a case, so that a
//! mutation of the bytes is a mutation of the case. The generator is seeded:
//! every run tries the same inputs.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::test_value::Value;
use super::*;
use crate::backend::validate_key;
use crate::test_rng::Rng;

/// Inputs tried, half random and half mutations of earlier ones.
const INPUTS: usize = 1_000_000;

/// The run stops here even short of [`INPUTS`] (a guard against a hang;
/// about 15 times the usual run time on a loaded CI machine).
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// How many keys the collision check remembers (the first ones built).
const REMEMBERED: usize = 200_000;

/// Reads a case out of input bytes; past their end, every byte reads as 0.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// A number, often one at a varint boundary, else of 1 to 16 bytes.
    fn number(&mut self) -> u128 {
        const EDGES: [u128; 10] = [
            0,
            1,
            250,
            251,
            65_535,
            65_536,
            u32::MAX as u128,
            1 << 32,
            u64::MAX as u128,
            u128::MAX,
        ];
        match self.below(20) {
            i if i < EDGES.len() => EDGES[i],
            _ => (0..1 + self.below(16)).fold(0, |n, _| n << 8 | u128::from(self.byte())),
        }
    }

    /// Text from pieces that matter to keys, sometimes one repeated far past
    /// every length limit.
    fn text(&mut self) -> String {
        const PIECES: [&str; 24] = [
            "a",
            "Z",
            "0",
            "9",
            "_",
            "-",
            ".",
            "/",
            ":",
            "~",
            "@",
            "!",
            "lock",
            "@v2",
            " ",
            "\r\n",
            "\t",
            "\0",
            "\x7f",
            "é",
            "🦀",
            "ключ",
            "set x 0 0 1\r\n",
            "users",
        ];
        let mut text = String::new();
        if self.below(8) == 0 {
            let piece = PIECES[self.below(PIECES.len())];
            return piece.repeat(usize::from(self.byte()) + usize::from(self.byte()));
        }
        for _ in 0..self.below(12) {
            match self.byte() {
                b if usize::from(b) < PIECES.len() * 4 => text.push_str(PIECES[usize::from(b) / 4]),
                b => text.push(char::from(b % 0x60 + 0x20)),
            }
        }
        text
    }

    fn value(&mut self, depth: u32) -> Value {
        const LEAVES: usize = 22;
        let kinds = if depth == 0 { LEAVES } else { LEAVES + 10 };
        let n = self.number();
        match self.below(kinds) {
            0 => Value::Bool(n % 2 == 1),
            1 => Value::U8(n as u8),
            2 => Value::U16(n as u16),
            3 => Value::U32(n as u32),
            4 => Value::U64(n as u64),
            5 => Value::U128(n),
            6 => Value::I8(n as i8),
            7 => Value::I16(n as i16),
            8 => Value::I32(n as i32),
            9 => Value::I64(n as i64),
            10 => Value::I128(n as i128),
            11 => Value::F32(f32::from_bits(n as u32)),
            12 => Value::F64(f64::from_bits(n as u64)),
            13 => Value::Char(char::from_u32(n as u32).unwrap_or('\u{fffd}')),
            14 | 15 => Value::Str(self.text()),
            16 => {
                let len = self.below(24) + if self.below(8) == 0 { 300 } else { 0 };
                Value::Bytes((0..len).map(|_| self.byte()).collect())
            }
            17 => Value::None,
            18 => Value::Unit,
            19 => Value::UnitStruct,
            20 => Value::UnitVariant(n as u32),
            21 => Value::Fails,
            22 => Value::Some(Box::new(self.value(depth - 1))),
            23 => Value::Newtype(Box::new(self.value(depth - 1))),
            24 => Value::NewtypeVariant(n as u32, Box::new(self.value(depth - 1))),
            25 => Value::Seq(self.values(depth - 1)),
            26 => Value::Unannounced(self.values(depth - 1)),
            27 => Value::Tuple(self.values(depth - 1)),
            28 => Value::TupleVariant(n as u32, self.values(depth - 1)),
            29 => Value::Struct(self.values(depth - 1).into_iter().take(4).collect()),
            30 => Value::Lying(self.values(depth - 1)),
            _ => Value::Map(
                (0..self.below(6))
                    .map(|_| (self.value(depth - 1), self.value(depth - 1)))
                    .collect(),
            ),
        }
    }

    fn values(&mut self, depth: u32) -> Vec<Value> {
        (0..self.below(6)).map(|_| self.value(depth)).collect()
    }

    fn case(&mut self) -> Case {
        const LIMITS: [usize; 12] = [0, 66, 67, 68, 72, 100, 150, 245, 249, 250, 251, usize::MAX];
        const VERSIONS: [u32; 6] = [0, 0, 0, 1, 2, u32::MAX];
        let max_len = match self.below(16) {
            i if i < LIMITS.len() => LIMITS[i],
            _ => usize::from(self.byte()) + 40,
        };
        let version = match self.below(8) {
            i if i < VERSIONS.len() => VERSIONS[i],
            _ => self.number() as u32,
        };
        Case {
            namespace: self.text(),
            function: self.text(),
            raw: self.text(),
            version,
            max_len,
            // The arguments of a call: the fields of a tuple.
            args: Value::Tuple(self.values(3)),
        }
    }
}

/// One input: what a cache and a call of a cached function are made of.
#[derive(Debug)]
struct Case {
    namespace: String,
    function: String,
    raw: String,
    version: u32,
    max_len: usize,
    args: Value,
}

impl Value {
    /// Whether the key encoding must refuse this value.
    fn refused(&self) -> bool {
        match self {
            Value::Fails | Value::Lying(_) => true,
            Value::Some(v) | Value::Newtype(v) | Value::NewtypeVariant(_, v) => v.refused(),
            Value::Seq(items)
            | Value::Unannounced(items)
            | Value::Tuple(items)
            | Value::TupleVariant(_, items)
            | Value::Struct(items) => items.iter().any(Value::refused),
            Value::Map(entries) => entries.iter().any(|(k, v)| k.refused() || v.refused()),
            _ => false,
        }
    }

    /// The same value with every map's entries in the reverse order.
    fn reversed(&self) -> Value {
        let all = |items: &[Value]| items.iter().map(Value::reversed).collect();
        match self {
            Value::Some(v) => Value::Some(Box::new(v.reversed())),
            Value::Newtype(v) => Value::Newtype(Box::new(v.reversed())),
            Value::NewtypeVariant(i, v) => Value::NewtypeVariant(*i, Box::new(v.reversed())),
            Value::Seq(items) => Value::Seq(all(items)),
            Value::Unannounced(items) => Value::Unannounced(all(items)),
            Value::Tuple(items) => Value::Tuple(all(items)),
            Value::TupleVariant(i, items) => Value::TupleVariant(*i, all(items)),
            Value::Struct(items) => Value::Struct(all(items)),
            Value::Lying(items) => Value::Lying(all(items)),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .rev()
                    .map(|(k, v)| (k.reversed(), v.reversed()))
                    .collect(),
            ),
            leaf => leaf.clone(),
        }
    }
}

/// What the collision check remembers of the input behind a key: its
/// namespace, version and key (raw, or `for_call`'s).
type Origin = (String, u32, String);

/// Builds every key of `case` and checks it; whether its arguments were refused.
fn check(case: &Case, seen: &mut HashMap<String, Origin>) -> bool {
    let limit = clamp_len(case.max_len);
    let prefix = Prefix::new(&case.namespace, case.version, case.max_len);
    let again = Prefix::new(&case.namespace, case.version, case.max_len);

    // A key given to a `Cache`.
    let raw = prefix.build(&case.raw);
    assert_eq!(raw, again.build(&case.raw), "the same key twice");
    if case.version == 0 {
        assert_eq!(
            build(&case.namespace, &case.raw, case.max_len),
            raw.as_str()
        );
    }
    assert_backend_safe(&raw, limit);
    remember(seen, &raw, case, &case.raw);
    for (namespace, version, key) in neighbours(case) {
        let other = Prefix::new(&namespace, version, case.max_len).build(&key);
        assert_ne!(
            other, raw,
            "{namespace:?} v{version} {key:?} gives the same key"
        );
    }

    // The key of a call, as `#[cache]` builds it and as a `Cache` does.
    match for_call(&case.function, &case.args) {
        Ok(call) => {
            assert!(!case.args.refused(), "an argument to refuse gave {call:?}");
            assert_eq!(
                for_call(&case.function, &case.args.reversed()).expect("encodes"),
                call,
                "maps in another order"
            );
            let part = args_part(&case.args).expect("encodes");
            let mut encoded: SmallVec<[u8; 64]> = SmallVec::new();
            encode_args(&case.args, &mut encoded).expect("encodes");
            assert_eq!(&*encoded_args_part(&encoded), part, "the L1 key's bytes");
            let one_step = prefix.build_call(&case.function, &part);
            assert_eq!(one_step, prefix.build(&call), "one step, two steps");
            assert_eq!(one_step, again.build_call(&case.function, &part));
            assert_backend_safe(&one_step, limit);
            remember(seen, &one_step, case, &call);
            false
        }
        Err(Error::Codec(_)) => {
            assert!(case.args.refused(), "refused to encode");
            true
        }
        Err(other) => panic!("not a codec error: {other:?}"),
    }
}

/// Inputs other than `case` whose parts, written out, give the same text:
/// a `:` moved between namespace and key, or the version written into the
/// namespace. None may give `case`'s key.
fn neighbours(case: &Case) -> Vec<Origin> {
    let (namespace, version, key) = (&case.namespace, case.version, &case.raw);
    let mut neighbours = Vec::new();
    if let Some((head, tail)) = key.split_once(':') {
        neighbours.push((format!("{namespace}:{head}"), version, tail.to_string()));
    }
    if let Some((head, tail)) = namespace.rsplit_once(':') {
        neighbours.push((head.to_string(), version, format!("{tail}:{key}")));
    }
    if version != 0 {
        neighbours.push((format!("{namespace}@v{version}"), 0, key.clone()));
    }
    neighbours
}

/// Asserts that `key` and its lock key pass the backend key validation
/// under `limit` (the lock key has the room the `Cache` keeps for its mark).
fn assert_backend_safe(key: &str, limit: usize) {
    if let Err(e) = validate_key(key, limit) {
        panic!("{key:?} under {limit}: {e}");
    }
    let lock = lock_key(key);
    if let Err(e) = validate_key(&lock, limit + LOCK_MARK.len()) {
        panic!("lock key {lock:?} under {limit}: {e}");
    }
}

/// Records which input gave `built`, failing if another one did.
fn remember(seen: &mut HashMap<String, Origin>, built: &str, case: &Case, key: &str) {
    let origin = (case.namespace.clone(), case.version, key.to_string());
    if let Some(earlier) = seen.get(built) {
        assert_eq!(earlier, &origin, "two inputs give {built:?}");
    } else if seen.len() < REMEMBERED {
        seen.insert(built.to_string(), origin);
    }
}

#[test]
fn a_million_random_and_mutated_inputs_build_safe_stable_distinct_keys() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Earlier inputs, which mutations start from.
    let mut corpus: Vec<Vec<u8>> = vec![Vec::new()];
    let mut seen = HashMap::new();
    let mut failures = 0;
    let mut first_failure = None;
    let mut refused = 0;
    let started = Instant::now();
    let mut tried = 0;
    while tried < INPUTS && started.elapsed() < TIME_LIMIT {
        let input = if rng.below(2) == 0 {
            (0..rng.below(160)).map(|_| rng.next() as u8).collect()
        } else {
            let mut input = corpus[rng.below(corpus.len())].clone();
            let other = &corpus[rng.below(corpus.len())];
            for _ in 0..1 + rng.below(4) {
                rng.mutate(&mut input, other, &[0, 1, 3, 4, 250, 251, 254, 255]);
            }
            input
        };
        let case = Reader(&input).case();
        match catch_unwind(AssertUnwindSafe(|| check(&case, &mut seen))) {
            Ok(was_refused) => refused += usize::from(was_refused),
            Err(_) => {
                failures += 1;
                first_failure.get_or_insert_with(|| format!("input {input:?}, case {case:?}"));
            }
        }
        if corpus.len() < 4096 {
            corpus.push(input);
        } else {
            corpus[rng.below(4096)] = input;
        }
        tried += 1;
    }
    println!(
        "key builder: {tried} inputs ({refused} with arguments refused) in {:.1?}, \
         {} distinct keys remembered",
        started.elapsed(),
        seen.len()
    );
    assert_eq!(
        failures, 0,
        "inputs that panicked; the first: {first_failure:?}"
    );
}
