//! Cache keys that are safe for every backend and stable across processes.
//!
//! A key is `<namespace>:<key>`. Both parts are kept as written when they are
//! short and made of safe characters, so keys stay readable in `redis-cli` or
//! a memcached dump; otherwise a part is replaced by `~` and the hex of a
//! 128-bit BLAKE3 hash of it. The result is always printable ASCII without
//! spaces or control characters and at most [`MAX_KEY_LEN`] bytes, so user
//! data can never inject a command into a text protocol.
//!
//! Distinct inputs give distinct keys: a kept namespace contains neither `:`
//! nor `~`, so the first `:` ends it; a kept key never starts with `~`, so it
//! cannot equal a hashed one. BLAKE3 rather than a faster non-cryptographic
//! hash because arguments are often user-controlled, and a crafted collision
//! would serve one caller's value to another.
//!
//! A cached function's key is `<function>:<arguments>` in its namespace. The
//! arguments are written in a documented encoding of their own, the same
//! whatever codec stores values ([`args`] gives the bytes of each type); the
//! arguments part is the hex of those bytes
//! when they are at most [`MAX_PLAIN_ARGS`] (most calls: an id, a short
//! name), else the hex of 128 bits of BLAKE3 over them.

pub mod args;
mod part;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayString;

use crate::{Error, Result};

pub(crate) use args::{ArgsError, encode as encode_args};
#[cfg(test)]
use part::args_part_of;
use part::call_key;
pub(crate) use part::encoded_args_part;
pub use part::{MAX_PLAIN_ARGS, args_part, for_call};

/// Longest key cachekit emits, in bytes (Memcached's limit).
pub const MAX_KEY_LEN: usize = 250;

/// Longest namespace kept as written; longer ones are hashed.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Length of a hashed part: `~` and 32 hex digits.
const HASHED_LEN: usize = 33;

/// Marks the namespace part of a lock key (`ns!lock:key`); data keys cannot contain it.
pub(crate) const LOCK_MARK: &str = "!lock";

/// Marks the namespace part of a tag's key (`ns!tag:tag`), as [`LOCK_MARK`] does.
const TAG_MARK: &str = "!tag";

/// Shortest backend key limit cachekit can serve: a hashed namespace, a
/// hashed key and the lock mark.
pub const MIN_BACKEND_KEY_LEN: usize = 2 * HASHED_LEN + 1 + LOCK_MARK.len();

/// Marks a hashed part; never kept in a namespace, never first in a kept key.
const HASH_MARK: char = '~';

/// The key for `key` in `namespace`, at most `max_len` bytes (clamped to
/// between a hashed namespace and key, 67 bytes, and [`MAX_KEY_LEN`]).
pub fn build(namespace: &str, key: &str, max_len: usize) -> String {
    Prefix::new(namespace, 0, max_len).build(key).to_string()
}

/// A built key, held inline: a key is built for every operation, and a heap
/// allocation (and its free) cost more than the key's bytes.
pub(crate) type Built = ArrayString<MAX_KEY_LEN>;

/// The namespace part of keys, as [`build`] makes it: made once for a cache
/// rather than checked (or hashed) again for every key.
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    /// The namespace as written (and `@v` and the version, if any), or `~`
    /// and a hash.
    part: String,
    /// The longest key, clamped as in [`build`].
    max_len: usize,
}

impl Prefix {
    /// The namespace part for `namespace` at `version` (0: none), in keys
    /// of at most `max_len` bytes. A version other than 0 gives other keys:
    /// `users@v2:42` for `users:42`, so that entries written under another
    /// version are never read.
    pub(crate) fn new(namespace: &str, version: u32, max_len: usize) -> Prefix {
        let max_len = clamp_len(max_len);
        let suffix = if version == 0 {
            String::new()
        } else {
            format!("@v{version}")
        };
        // Kept only if a hashed key still fits after it: every key then fits.
        // `@` is never in a kept namespace, so the suffix cannot be forged.
        let keep = !namespace.is_empty()
            && namespace.len() <= MAX_NAMESPACE_LEN
            && namespace.len() + suffix.len() + 1 + HASHED_LEN <= max_len
            && namespace.bytes().all(is_namespace_byte);
        let part = if keep {
            format!("{namespace}{suffix}")
        } else if version == 0 {
            hashed(namespace.as_bytes()).to_string()
        } else {
            // 0xff is never in UTF-8, so no namespace hashes the same.
            let mut input = namespace.as_bytes().to_vec();
            input.push(0xff);
            input.extend_from_slice(&version.to_le_bytes());
            hashed(&input).to_string()
        };
        Prefix { part, max_len }
    }

    /// The key for `key` in this namespace, as [`build`] makes it.
    pub(crate) fn build(&self, key: &str) -> Built {
        let keep_key = !key.is_empty()
            && !key.starts_with(HASH_MARK)
            && self.part.len() + 1 + key.len() <= self.max_len
            && all_key_bytes(key.as_bytes());
        if keep_key {
            self.join(&[key])
        } else {
            self.join(&[&hashed(key.as_bytes())])
        }
    }

    /// The key for the call of `function` whose arguments part (see
    /// [`args_part`]) is `args`: [`build`](Self::build) of [`for_call`]'s
    /// key, without making that key first.
    pub(crate) fn build_call(&self, function: &str, args: &str) -> Built {
        // `build` keeps `function:args` as written exactly when this holds
        // (the hex digits and `:` are key bytes).
        let keep = !function.starts_with(HASH_MARK)
            && self.part.len() + 1 + function.len() + 1 + args.len() <= self.max_len
            && all_key_bytes(function.as_bytes());
        if keep {
            self.join(&[function, ":", args])
        } else {
            self.build(&call_key(function, args))
        }
    }

    /// This namespace part, `:`, and `parts` (which fit).
    fn join(&self, parts: &[&str]) -> Built {
        let mut out = Built::new();
        out.push_str(&self.part);
        out.push(':');
        parts.iter().for_each(|part| out.push_str(part));
        out
    }
}

/// `max_len` clamped to between a hashed namespace and key, and [`MAX_KEY_LEN`].
fn clamp_len(max_len: usize) -> usize {
    max_len.clamp(2 * HASHED_LEN + 1, MAX_KEY_LEN)
}

/// The lock key for a built data key: the lock mark after its namespace
/// part, which no data key has, so a lock never overwrites a value.
pub(crate) fn lock_key(key: &str) -> String {
    marked(key, LOCK_MARK)
}

/// The key of a tag's generation for the tag built as a data key: the tag
/// mark after its namespace part (shorter than the lock mark, so it fits
/// wherever a lock key does).
pub(crate) fn tag_key(tag: &str) -> String {
    marked(tag, TAG_MARK)
}

/// A built key with `mark` after its namespace part.
fn marked(key: &str, mark: &str) -> String {
    let (namespace, rest) = key
        .split_once(':')
        .expect("built keys have a namespace part");
    format!("{namespace}{mark}:{rest}")
}

/// Checks a key given to a backend directly: non-empty, at most `max_len`
/// bytes, printable ASCII without spaces.
pub fn validate(key: &str, max_len: usize) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_key(key, "the key is empty"));
    }
    if key.len() > max_len {
        return Err(Error::invalid_key(
            key,
            "the key is longer than the backend allows",
        ));
    }
    if !all_key_bytes(key.as_bytes()) {
        return Err(Error::invalid_key(
            key,
            "the key contains a space, a control character or non-ASCII",
        ));
    }
    Ok(())
}

/// 128 bits of BLAKE3: the stable hash behind keys.
fn hash128(bytes: &[u8]) -> [u8; 16] {
    truncate(&blake3::hash(bytes))
}

/// The first 128 bits of a BLAKE3 hash.
fn truncate(full: &blake3::Hash) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&full.as_bytes()[..16]);
    out
}

/// A hashed part: `~` and the hex of the hash of `bytes`.
fn hashed(bytes: &[u8]) -> ArrayString<HASHED_LEN> {
    let mut out = ArrayString::new();
    out.push(HASH_MARK);
    out.push_str(&Hex::of(&hash128(bytes)));
    out
}

/// Up to 16 bytes in lowercase hex, made without the formatting machinery
/// (this runs on every cached call): each byte's two digits come from a
/// table, rather than one `push` (and capacity check) per digit.
pub(crate) struct Hex {
    digits: Digits,
    len: usize,
}

#[repr(align(8))] // so that `from_utf8` checks it a word at a time
struct Digits([u8; 32]);

impl Hex {
    /// The hex of `bytes`; only their first 16 are taken.
    fn of(bytes: &[u8]) -> Hex {
        let mut digits = Digits([0; 32]);
        let mut len = 0;
        for (pair, &b) in digits.0.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
            len += 2;
        }
        Hex { digits, len }
    }
}

impl std::ops::Deref for Hex {
    type Target = str;

    fn deref(&self) -> &str {
        std::str::from_utf8(&self.digits.0[..self.len]).expect("hex digits are ASCII")
    }
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

/// Printable ASCII other than space.
fn is_key_byte(b: u8) -> bool {
    b.wrapping_sub(0x21) < 0x7f - 0x21
}

/// Whether every byte is a key byte. Folds over all of them rather than
/// stopping at the first bad one, so that the compiler checks many bytes per
/// instruction (keys are checked on every operation, and are nearly always good).
fn all_key_bytes(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & is_key_byte(b))
}

fn is_namespace_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

/// A token unique across processes with overwhelming probability: 128 bits
/// from the OS-seeded `RandomState`, the process id, the time and a counter.
pub(crate) fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = (
        RandomState::new().hash_one(count),
        RandomState::new().hash_one(nanos),
    );
    let mut material = Vec::with_capacity(48);
    material.extend_from_slice(&seed.0.to_le_bytes());
    material.extend_from_slice(&seed.1.to_le_bytes());
    material.extend_from_slice(&std::process::id().to_le_bytes());
    material.extend_from_slice(&nanos.to_le_bytes());
    material.extend_from_slice(&count.to_le_bytes());
    Hex::of(&hash128(&material)).to_string()
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod test_value;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn assert_safe(key: &str) {
        assert!(
            key.len() <= MAX_KEY_LEN,
            "key too long ({}): {key}",
            key.len()
        );
        assert!(key.bytes().all(is_key_byte), "unsafe byte in {key:?}");
        validate(key, MAX_KEY_LEN).expect("built keys validate");
    }

    #[test]
    fn plain_parts_are_kept_readable() {
        assert_eq!(build("users", "42", MAX_KEY_LEN), "users:42");
        assert_eq!(
            build("app.users", "profile:7", MAX_KEY_LEN),
            "app.users:profile:7"
        );
    }

    #[test]
    fn hostile_inputs_come_out_safe_and_distinct() {
        let long = "x".repeat(1024);
        let namespaces = [
            "users",
            "with space",
            "crlf\r\nset evil 0 0 1\r\n",
            long.as_str(),
            "ünïcödé",
            "",
            "a:b",
            "~",
        ];
        let keys = [
            "42",
            "a b",
            "get x\r\n",
            long.as_str(),
            "ключ",
            "",
            "~abc",
            "b:c",
            "c",
        ];
        let mut seen = HashSet::new();
        for ns in namespaces {
            for key in keys {
                let built = build(ns, key, MAX_KEY_LEN);
                assert_safe(&built);
                assert!(
                    seen.insert(built.clone()),
                    "collision for ({ns:?}, {key:?}): {built}"
                );
            }
        }
    }

    #[test]
    fn separator_cannot_be_shifted_between_parts() {
        assert_ne!(
            build("a:b", "c", MAX_KEY_LEN),
            build("a", "b:c", MAX_KEY_LEN)
        );
    }

    #[test]
    fn hashed_key_cannot_be_forged_by_a_plain_one() {
        let hashed = build("ns", "has space", MAX_KEY_LEN);
        let forged_part = hashed.split_once(':').unwrap().1;
        assert_ne!(build("ns", forged_part, MAX_KEY_LEN), hashed);
    }

    #[test]
    fn respects_a_smaller_backend_limit() {
        let key = "k".repeat(200);
        let built = build("users", &key, 100);
        assert!(built.len() <= 100);
        assert_eq!(build("users", &key, MAX_KEY_LEN), format!("users:{key}"));
    }

    #[test]
    fn no_key_is_longer_than_the_limit_asked_for() {
        let namespaces = [
            "a",
            &"n".repeat(40),
            &"n".repeat(63),
            &"n".repeat(64),
            "not kept!",
        ];
        let keys = ["k", &"k".repeat(60), "has space", &"k".repeat(300)];
        for max_len in 67..=MAX_KEY_LEN {
            for namespace in namespaces {
                let prefix = Prefix::new(namespace, 0, max_len);
                for key in keys {
                    let built = prefix.build(key);
                    assert!(
                        built.len() <= max_len,
                        "{namespace:?} {key:?} {max_len}: {built}"
                    );
                    assert_safe(&built);
                    let call = prefix.build_call(key, "2a");
                    assert!(
                        call.len() <= max_len,
                        "{namespace:?} {key:?} {max_len}: {call}"
                    );
                }
            }
        }
        // A 64-byte namespace under a 90-byte limit: hashed, not kept.
        assert!(build(&"n".repeat(64), "has space", 90).len() <= 90);
    }

    #[test]
    fn a_version_gives_other_keys_that_fit() {
        let plain = Prefix::new("users", 0, MAX_KEY_LEN);
        let v2 = Prefix::new("users", 2, MAX_KEY_LEN);
        assert_eq!(plain.build("42").as_str(), "users:42");
        assert_eq!(v2.build("42").as_str(), "users@v2:42");
        assert_eq!(lock_key(&v2.build("42")), "users@v2!lock:42");
        let long = "n".repeat(64);
        for max_len in [67, 100, 101, 102, MAX_KEY_LEN] {
            let keys: HashSet<_> = (0..3)
                .map(|version| Prefix::new(&long, version, max_len).build("k").to_string())
                .collect();
            assert_eq!(keys.len(), 3, "{max_len}");
            assert!(keys.iter().all(|key| key.len() <= max_len), "{keys:?}");
        }
    }

    #[test]
    fn hashed_keys_are_stable_across_runs() {
        // Pinned against an independent BLAKE3 (Python `blake3`): a change
        // here changes every key in every deployed cache.
        assert_eq!(
            build("ns", "a b", MAX_KEY_LEN),
            "ns:~c95e5a48e784bd89e908893ff0a228fc"
        );
    }

    #[test]
    fn call_keys_built_in_one_step_equal_the_two_step_keys() {
        // `#[cache]` builds `namespace:function:args` at once; it must be the
        // key a `Cache` makes of `for_call`'s key, or entries written one way
        // would be missed the other.
        let long = "f".repeat(240);
        let functions = ["profile", "", "~tilde", "with space", "a:b", "ünï", &long];
        let namespaces = ["app.users", &"n".repeat(64), "needs hashing!"];
        let short = (42_u64, "x");
        let hashed = (42_u64, "x".repeat(40));
        for namespace in namespaces {
            for max_len in [0, 67, 100, 200, MAX_KEY_LEN, 1000] {
                let prefix = Prefix::new(namespace, 0, max_len);
                for function in functions {
                    for (two_step, args) in [
                        (for_call(function, &short), args_part_of(&short)),
                        (for_call(function, &hashed), args_part_of(&hashed)),
                    ] {
                        let two_step = prefix.build(&two_step.unwrap());
                        let one_step = prefix.build_call(function, &args.unwrap());
                        assert_eq!(one_step, two_step, "{namespace:?} {function:?} {max_len}");
                        assert_safe(&one_step);
                    }
                }
            }
        }
    }

    #[test]
    fn validate_refuses_unsafe_keys() {
        for bad in ["", "a b", "a\r\nb", "é", "a\x7fb", "\0", &"k".repeat(251)] {
            assert!(
                matches!(validate(bad, MAX_KEY_LEN), Err(Error::InvalidKey { .. })),
                "{bad:?} accepted"
            );
        }
        validate(&"k".repeat(250), MAX_KEY_LEN).unwrap();
        validate("!~", MAX_KEY_LEN).unwrap();
    }

    #[test]
    fn random_tokens_differ() {
        let tokens: HashSet<_> = (0..1000).map(|_| random_token()).collect();
        assert_eq!(tokens.len(), 1000);
    }
}
