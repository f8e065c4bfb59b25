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

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayString;
use serde::Serialize;

use crate::{Error, Result};

/// Longest key cachekit emits, in bytes (Memcached's limit).
pub const MAX_KEY_LEN: usize = 250;

/// Longest namespace kept as written; longer ones are hashed.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Length of a hashed part: `~` and 32 hex digits.
const HASHED_LEN: usize = 33;

/// Marks the namespace part of a lock key (`ns!lock:key`); data keys cannot contain it.
pub(crate) const LOCK_MARK: &str = "!lock";

/// Shortest backend key limit cachekit can serve: a hashed namespace, a
/// hashed key and the lock mark.
pub const MIN_BACKEND_KEY_LEN: usize = 2 * HASHED_LEN + 1 + LOCK_MARK.len();

/// Marks a hashed part; never kept in a namespace, never first in a kept key.
const HASH_MARK: char = '~';

/// The key for `key` in `namespace`, at most `max_len` bytes (clamped to
/// between a hashed namespace and key, and [`MAX_KEY_LEN`]).
pub fn build(namespace: &str, key: &str, max_len: usize) -> String {
    Prefix::new(namespace).build(key, max_len).to_string()
}

/// A built key, held inline: a key is built for every operation, and a heap
/// allocation (and its free) cost more than the key's bytes.
pub(crate) type Built = ArrayString<MAX_KEY_LEN>;

/// The namespace part of keys, as [`build`] makes it: made once for a cache
/// rather than checked (or hashed) again for every key.
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    /// The namespace as written, or `~` and its hash.
    part: String,
}

impl Prefix {
    /// The namespace part for `namespace`.
    pub(crate) fn new(namespace: &str) -> Prefix {
        let keep = !namespace.is_empty()
            && namespace.len() <= MAX_NAMESPACE_LEN
            && namespace.bytes().all(is_namespace_byte);
        let part = if keep {
            namespace.to_owned()
        } else {
            hashed(namespace.as_bytes()).to_string()
        };
        Prefix { part }
    }

    /// The key for `key` in this namespace, as [`build`] makes it.
    pub(crate) fn build(&self, key: &str, max_len: usize) -> Built {
        let max_len = clamp_len(max_len);
        let keep_key = !key.is_empty()
            && !key.starts_with(HASH_MARK)
            && self.part.len() + 1 + key.len() <= max_len
            && all_key_bytes(key.as_bytes());
        if keep_key {
            self.join(&[key])
        } else {
            self.join(&[&hashed(key.as_bytes())])
        }
    }

    /// The key for the call of `function` whose arguments have `digest`:
    /// [`build`](Self::build) of [`for_call`]'s key, without making that
    /// key first.
    pub(crate) fn build_call(&self, function: &str, digest: &[u8; 16], max_len: usize) -> Built {
        // `build` keeps `function:hex` as written exactly when this holds
        // (the hex digits and `:` are key bytes).
        let keep = !function.starts_with(HASH_MARK)
            && self.part.len() + 1 + function.len() + 1 + 2 * digest.len() <= clamp_len(max_len)
            && all_key_bytes(function.as_bytes());
        if keep {
            self.join(&[function, ":", &Hex::of(digest)])
        } else {
            self.build(&call_key(function, digest), max_len)
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
    let (namespace, rest) = key
        .split_once(':')
        .expect("built keys have a namespace part");
    format!("{namespace}{LOCK_MARK}:{rest}")
}

/// The hex hash of `args` serialized with bincode: the argument part of a
/// cached function's key. Stable across processes, machines and Rust versions
/// as long as the arguments serialize to the same bytes.
pub fn args_hash<T: Serialize + ?Sized>(args: &T) -> Result<String> {
    Ok(Hex::of(&args_digest(args)?).to_string())
}

/// 128 bits of BLAKE3 over the bincode bytes of `args` (the same as
/// [`hash128`] of those bytes), without allocating a buffer for them.
fn args_digest<T: Serialize + ?Sized>(args: &T) -> Result<[u8; 16]> {
    let mut writer = DigestWriter {
        buffer: [0; DigestWriter::BUFFER],
        len: 0,
        hasher: None,
    };
    bincode::serde::encode_into_writer(args, &mut writer, bincode::config::standard())
        .map_err(|e| Error::Codec(format!("cannot serialize the arguments for the key: {e}")))?;
    Ok(writer.finish())
}

/// Takes bincode's bytes into a stack buffer, and only when they outgrow it
/// into an incremental BLAKE3 hasher: the arguments of most calls are a few
/// bytes, which one-shot `blake3::hash` takes faster than a hasher fed
/// bincode's many small writes. The hasher is boxed because it is large
/// (about 2 KiB), and the writer would otherwise copy it around.
struct DigestWriter {
    buffer: [u8; Self::BUFFER],
    len: usize,
    hasher: Option<Box<blake3::Hasher>>,
}

impl DigestWriter {
    /// Bytes kept before hashing incrementally.
    const BUFFER: usize = 128;

    /// The digest of the bytes written. By reference: moving the writer
    /// would copy its buffer.
    fn finish(&mut self) -> [u8; 16] {
        let bytes = &self.buffer[..self.len];
        match self.hasher.take() {
            None => hash128(bytes),
            Some(mut hasher) => truncate(&hasher.update(bytes).finalize()),
        }
    }
}

impl bincode::enc::write::Writer for DigestWriter {
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        let end = self.len + bytes.len();
        if end <= Self::BUFFER {
            self.buffer[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            let hasher = self.hasher.get_or_insert_with(Box::default);
            hasher.update(&self.buffer[..self.len]).update(bytes);
            self.len = 0;
        }
        Ok(())
    }
}

/// The key of one call of `function` with `args`: the function's name and
/// the hash of its arguments (`users::profile:3f2a...`). Give it to a
/// [`Cache`](crate::Cache), which adds the namespace.
pub fn for_call<T: Serialize + ?Sized>(function: &str, args: &T) -> Result<String> {
    Ok(call_key(function, &args_digest(args)?))
}

fn call_key(function: &str, digest: &[u8; 16]) -> String {
    let mut out = String::with_capacity(function.len() + 33);
    out.push_str(function);
    out.push(':');
    out.push_str(&Hex::of(digest));
    out
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
pub(crate) fn hash128(bytes: &[u8]) -> [u8; 16] {
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

/// 128 bits in lowercase hex, made without the formatting machinery (this
/// runs on every cached call): each byte's two digits come from a table,
/// rather than one `push` (and capacity check) per digit.
#[repr(align(8))] // so that `from_utf8` checks it a word at a time
struct Hex([u8; 32]);

impl Hex {
    fn of(bytes: &[u8; 16]) -> Hex {
        let mut hex = Hex([0; 32]);
        for (pair, &b) in hex.0.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        hex
    }
}

impl std::ops::Deref for Hex {
    type Target = str;

    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
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
    fn keys_are_stable_across_runs() {
        // Pinned against an independent BLAKE3 (Python `blake3`) of the bincode
        // bytes: a change here changes every key in every deployed cache.
        assert_eq!(
            build("ns", "a b", MAX_KEY_LEN),
            "ns:~c95e5a48e784bd89e908893ff0a228fc"
        );
        assert_eq!(
            for_call("users::profile", &(42_u64, "x")).unwrap(),
            "users::profile:74be402fb474fe5674abfcb538bacf97"
        );
        assert_ne!(
            args_hash(&(42_u64, "x")).unwrap(),
            args_hash(&(43_u64, "x")).unwrap()
        );
    }

    #[test]
    fn argument_hashes_are_of_the_bincode_bytes_however_long() {
        // Around and past the writer's buffer, which changes how bytes are hashed.
        for len in [0, 1, 100, 125, 126, 127, 128, 129, 300, 5000] {
            let args = (7_u8, "a".repeat(len), vec![len as u64; len % 7]);
            let bytes = bincode::serde::encode_to_vec(&args, bincode::config::standard()).unwrap();
            let expected = Hex::of(&hash128(&bytes)).to_string();
            assert_eq!(args_hash(&args).unwrap(), expected, "{len}");
        }
    }

    #[test]
    fn call_keys_built_in_one_step_equal_the_two_step_keys() {
        // `#[cache]` builds `namespace:function:hash` at once; it must be the
        // key a `Cache` makes of `for_call`'s key, or entries written one way
        // would be missed the other.
        let long = "f".repeat(240);
        let functions = ["profile", "", "~tilde", "with space", "a:b", "ünï", &long];
        let namespaces = ["app.users", &"n".repeat(64), "needs hashing!"];
        let args = (42_u64, "x");
        let digest = args_digest(&args).unwrap();
        for namespace in namespaces {
            let prefix = Prefix::new(namespace);
            for function in functions {
                for max_len in [0, 67, 100, 200, MAX_KEY_LEN, 1000] {
                    let two_step = prefix.build(&for_call(function, &args).unwrap(), max_len);
                    let one_step = prefix.build_call(function, &digest, max_len);
                    assert_eq!(one_step, two_step, "{namespace:?} {function:?} {max_len}");
                    assert_safe(&one_step);
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
