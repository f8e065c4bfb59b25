//! Interop mode: cache keys and values byte-compatible with the Python
//! package cachekit 0.24.1 (`interop=` in Python), so that a Rust service
//! and a Python one share entries.
//!
//! A key is `{namespace}:{operation}:{args_hash}`: the namespace and the
//! operation are checked by [`validate_segment`], the hash is Blake2b-256
//! over the canonical MessagePack of the call's arguments ([`call_key`],
//! [`args_hash`]). A value is one plain canonical MessagePack document
//! ([`to_msgpack`], [`from_msgpack`]). Both encodings are of the
//! [`InteropValue`] data model; Rust values reach it through
//! [`InteropArg`] (arguments) or serde (values).
//!
//! This is the pure codec: no I/O, no cache.

mod arg;
pub mod datetime;
mod error;
mod key;
mod read;
mod ser;
pub mod set;
mod value;
mod write;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use arg::InteropArg;
pub use error::InteropError;
pub(crate) use key::hash_encoded_args;
pub use key::{args_hash, call_key, call_key_named, canonical_args, validate_segment};
pub use read::from_msgpack;
pub use value::InteropValue;
pub(crate) use write::{Profile, write};

/// Deepest nesting of arrays, maps and sets that interop values may have,
/// as cachekit-py reads them (a document of 1024 nested arrays is read,
/// 1025 is refused).
pub const MAX_DEPTH: usize = 1024;

/// The stored bytes of an interop value: `value` through
/// [`InteropValue::from_serde`], in canonical MessagePack (sorted map keys,
/// shortest forms, floats as float64), byte-identical to what cachekit-py
/// writes for the same Python value. Sets are refused, as Python refuses them.
pub fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, InteropError> {
    let value = InteropValue::from_serde(value)?;
    let mut out = Vec::new();
    write::write(&value, write::Profile::Value, &mut out)?;
    Ok(out)
}
