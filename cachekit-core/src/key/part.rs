//! The arguments part of a cached function's key: the hex of the
//! arguments' [key encoding](super::args) when it is at most
//! [`MAX_PLAIN_ARGS`] bytes (most calls: an id, a short name), else the hex of
//! 128 bits of BLAKE3 over it. The two cannot be confused (at most 30 hex
//! digits against exactly 32), and the first is collision-free and costs no
//! hashing.

use serde::Serialize;

use super::args::{self, Sink};
use super::{Hex, hash128, truncate};
use crate::{Error, Result};

/// Longest key encoding of a cached function's arguments written into its
/// key as hex rather than hashed.
pub const MAX_PLAIN_ARGS: usize = 15;

/// The arguments part of a cached function's key for `args` (the tuple of
/// its arguments, in order): the hex of their key encoding, or of its hash
/// (see the [module](super) documentation). Stable across processes,
/// machines, Rust versions and value codecs: the encoding is cachekit's own.
pub fn args_part<T: Serialize + ?Sized>(args: &T) -> Result<String> {
    Ok(args_part_of(args)?.to_string())
}

/// The arguments part for arguments already in their key encoding.
pub(crate) fn encoded_args_part(encoded: &[u8]) -> Hex {
    if encoded.len() <= MAX_PLAIN_ARGS {
        Hex::of(encoded)
    } else {
        Hex::of(&hash128(encoded))
    }
}

/// [`args_part`], without allocating a buffer for the encoded bytes.
pub(super) fn args_part_of<T: Serialize + ?Sized>(args: &T) -> Result<Hex> {
    let mut writer = ArgsWriter {
        buffer: [0; ArgsWriter::BUFFER],
        len: 0,
        hasher: None,
    };
    args::encode(args, &mut writer)
        .map_err(|e| Error::Codec(format!("cannot serialize the arguments for the key: {e}")))?;
    Ok(writer.finish())
}

/// The key of one call of `function` with `args`: the function's name and
/// the arguments part ([`args_part`]), as `#[cache]` makes it:
/// `profile:2a` for `profile(42_u64)`, `profile:3f2a...` (32 hex digits) for
/// longer arguments. Give it to a [`Cache`](crate::Cache), which adds the
/// namespace.
pub fn for_call<T: Serialize + ?Sized>(function: &str, args: &T) -> Result<String> {
    Ok(call_key(function, &args_part_of(args)?))
}

/// `function:args`.
pub(super) fn call_key(function: &str, args: &str) -> String {
    let mut out = String::with_capacity(function.len() + 1 + args.len());
    out.push_str(function);
    out.push(':');
    out.push_str(args);
    out
}

/// Takes the encoded bytes into a stack buffer, and only when they outgrow it
/// into an incremental BLAKE3 hasher: the arguments of most calls are a few
/// bytes, which one-shot `blake3::hash` takes faster than a hasher fed
/// the encoder's many small writes. The hasher is boxed because it is large
/// (about 2 KiB), and the writer would otherwise copy it around.
struct ArgsWriter {
    buffer: [u8; Self::BUFFER],
    len: usize,
    hasher: Option<Box<blake3::Hasher>>,
}

impl ArgsWriter {
    /// Bytes kept before hashing incrementally.
    const BUFFER: usize = 128;

    /// The arguments part of the bytes written. By reference: moving the
    /// writer would copy its buffer.
    fn finish(&mut self) -> Hex {
        let bytes = &self.buffer[..self.len];
        match self.hasher.take() {
            None => encoded_args_part(bytes),
            Some(mut hasher) => Hex::of(&truncate(&hasher.update(bytes).finalize())),
        }
    }
}

impl Sink for ArgsWriter {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= Self::BUFFER {
            self.buffer[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            let hasher = self.hasher.get_or_insert_with(Box::default);
            hasher.update(&self.buffer[..self.len]).update(bytes);
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bincode_of<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    #[test]
    fn keys_are_stable_across_runs() {
        // Pinned against an independent BLAKE3 (Python `blake3`) of the
        // encoded bytes: a change here changes every key in every deployed cache.
        assert_eq!(
            &*Hex::of(&hash128(&bincode_of(&(42_u64, "x")))),
            "74be402fb474fe5674abfcb538bacf97"
        );
        // Short arguments are their encoded bytes in hex: 42, then "x" (length 1).
        assert_eq!(
            for_call("users::profile", &(42_u64, "x")).unwrap(),
            "users::profile:2a0178"
        );
        assert_ne!(
            args_part(&(42_u64, "x")).unwrap(),
            args_part(&(43_u64, "x")).unwrap()
        );
    }

    #[test]
    fn argument_parts_are_the_encoded_bytes_in_hex_when_short_else_their_hash() {
        // A `Vec<u8>` of n bytes encodes to n + 1: around the plain limit.
        for n in 0..20 {
            let args = (vec![0xab_u8; n],);
            let bytes = bincode_of(&args);
            let part = args_part(&args).unwrap();
            if bytes.len() <= MAX_PLAIN_ARGS {
                assert_eq!(
                    part,
                    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                );
            } else {
                assert_eq!(part, Hex::of(&hash128(&bytes)).to_string(), "{n}");
            }
            // A plain part is at most 30 digits, a hashed one exactly 32.
            assert_eq!(part.len() == 32, bytes.len() > MAX_PLAIN_ARGS, "{n}");
        }
        // Around and past the writer's buffer, which changes how bytes are hashed.
        for len in [0, 1, 100, 125, 126, 127, 128, 129, 300, 5000] {
            let args = (7_u8, "a".repeat(len), vec![len as u64; len % 7]);
            let expected = encoded_args_part(&bincode_of(&args)).to_string();
            assert_eq!(args_part(&args).unwrap(), expected, "{len}");
        }
    }

    #[test]
    fn arguments_that_cannot_be_serialized_are_an_error() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no key for this"))
            }
        }
        let error = for_call("f", &(1_u8, Refuses)).unwrap_err();
        assert!(
            matches!(&error, Error::Codec(message) if message.contains("no key for this")),
            "{error:?}"
        );
    }
}
