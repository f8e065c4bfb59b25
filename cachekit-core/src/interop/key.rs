//! Interop keys (interop/v1): `{namespace}:{operation}:{args_hash}`, with
//! `args_hash` the lowercase hex of unkeyed Blake2b-256 over the canonical
//! bytes of the call's argument array, as cachekit-py builds them.

use std::fmt::Write as _;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

use super::write::{Profile, write, write_array_header};
use super::{InteropArg, InteropError, InteropValue};

/// Longest namespace or operation, in bytes.
const MAX_SEGMENT_LEN: usize = 64;

/// Namespaces the CachekitIO server reserves.
const RESERVED_NAMESPACES: [&str; 2] = ["ns", "nsapi"];

/// The canonical (args-profile) bytes of the argument array `args`, which
/// [`args_hash`] hashes: always an array, `90` for no arguments. For tests
/// and debugging against other SDKs' vectors.
#[doc(hidden)]
pub fn canonical_args(args: &[InteropValue]) -> Result<Vec<u8>, InteropError> {
    canonical_named(args.iter().map(|arg| (arg, None)))
}

/// [`canonical_args`] of arguments with what names each one in errors:
/// its name, or (given none) its index.
fn canonical_named<'a>(
    args: impl ExactSizeIterator<Item = (&'a InteropValue, Option<&'a str>)>,
) -> Result<Vec<u8>, InteropError> {
    let mut out = Vec::with_capacity(64);
    write_array_header(args.len(), &mut out)?;
    for (i, (arg, name)) in args.enumerate() {
        write(arg, Profile::Args, &mut out).map_err(|e| match name {
            Some(name) => e.for_argument(name),
            None => e.for_index(i),
        })?;
    }
    Ok(out)
}

/// The `args_hash` of a call whose `count` arguments are `encoded`, each
/// already written in the args profile one after the other (as
/// `#[cache(interop = ...)]` adds them): the array header is prefixed
/// here, so the hash is [`args_hash`]'s.
pub(crate) fn hash_encoded_args(count: u32, encoded: &[u8]) -> String {
    let mut canonical = Vec::with_capacity(5 + encoded.len());
    // A count of at most `u32::MAX` always has a header.
    let _ = write_array_header(count as usize, &mut canonical);
    canonical.extend_from_slice(encoded);
    hash_hex(&canonical)
}

/// The lowercase hex of Blake2b-256 over `canonical`.
fn hash_hex(canonical: &[u8]) -> String {
    let digest = Blake2b::<U32>::digest(canonical);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The `args_hash` of a call with `args`: 64 lowercase hex digits; an
/// error, naming the argument by its index, for a value that cannot be
/// written (an `Int` out of range, a NaN `Float`, nesting past
/// [`MAX_DEPTH`](super::MAX_DEPTH)).
pub fn args_hash(args: &[InteropValue]) -> Result<String, InteropError> {
    canonical_args(args).map(|bytes| hash_hex(&bytes))
}

/// Checks a namespace or operation (`what` says which, for the message):
/// `^[a-z0-9][a-z0-9._-]{0,63}$`, no `..`, and a namespace is neither `ns`
/// nor `nsapi`. Invalid segments are refused, never normalized.
pub fn validate_segment(what: &str, segment: &str) -> Result<(), InteropError> {
    let refuse = |why: &str| {
        Err(InteropError::new(format!(
            "the interop {what} {segment:?} {why}; both SDKs must use the same segment, \
             so it is refused rather than changed"
        )))
    };
    let bytes = segment.as_bytes();
    let Some(first) = bytes.first() else {
        return refuse("is empty: use 1 to 64 of a-z, 0-9, `.`, `_`, `-`");
    };
    if bytes.len() > MAX_SEGMENT_LEN {
        return refuse("is longer than 64 bytes");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return refuse("must start with a-z or 0-9");
    }
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b);
    if !bytes.iter().all(allowed) {
        return refuse("may hold only a-z, 0-9, `.`, `_` and `-`");
    }
    if segment.contains("..") {
        return refuse("must not contain `..`");
    }
    if what == "namespace" && RESERVED_NAMESPACES.contains(&segment) {
        return refuse("is reserved by the CachekitIO server: choose another namespace");
    }
    Ok(())
}

/// The interop key of a call of `operation` with `args`, without its
/// namespace: `{operation}:{args_hash}`. An argument that is not an interop
/// value gives an error naming it by index ("argument 0: ...").
pub fn call_key(operation: &str, args: &[&dyn InteropArg]) -> Result<String, InteropError> {
    validate_segment("operation", operation)?;
    let values = args
        .iter()
        .enumerate()
        .map(|(i, arg)| arg.to_interop().map_err(|e| e.for_index(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let canonical = canonical_args(&values)?;
    Ok(format!("{operation}:{}", hash_hex(&canonical)))
}

/// [`call_key`] with named arguments, whose errors name the argument
/// ("argument `user_id`: ..."); what `#[cache(interop)]` calls.
#[doc(hidden)]
pub fn call_key_named(
    operation: &str,
    args: &[(&str, &dyn InteropArg)],
) -> Result<String, InteropError> {
    validate_segment("operation", operation)?;
    let values = args
        .iter()
        .map(|(name, arg)| arg.to_interop().map_err(|e| e.for_argument(name)))
        .collect::<Result<Vec<_>, _>>()?;
    let names = args.iter().map(|(name, _)| Some(*name));
    let canonical = canonical_named(values.iter().zip(names))?;
    Ok(format!("{operation}:{}", hash_hex(&canonical)))
}
