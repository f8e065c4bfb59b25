//! Reading interop values: a header pre-walk that bounds the input, then
//! `rmp-serde` into the caller's type.
//!
//! The pre-walk checks that the bytes are exactly one well-formed
//! MessagePack document (any form: non-canonical widths, float32, ext,
//! non-string keys) whose strings are UTF-8, nested at most [`MAX_DEPTH`] deep, with every declared
//! length backed by the bytes left; so the decoder never allocates for a
//! length the input cannot hold, and never recurses past the bound. It walks
//! with a stack of counts, not by recursion.

use serde::de::DeserializeOwned;

use super::{InteropError, MAX_DEPTH};

/// The type bytes cachekit-py's auto mode frames start with.
const PYTHON_FRAME: &[u8] = b"CK";

/// Decodes one interop value from `bytes` into `T`.
///
/// Accepts any well-formed MessagePack document that `T` can be read from;
/// refuses trailing bytes, nesting deeper than [`MAX_DEPTH`], lengths the
/// input does not hold, and cachekit-py auto-mode frames (an error whose
/// [`is_python_frame`](InteropError::is_python_frame) is true).
pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, InteropError> {
    if bytes.starts_with(PYTHON_FRAME) {
        return Err(InteropError::python_frame());
    }
    prewalk(bytes)?;
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    // The pre-walk bounds nesting; rmp-serde counts ext as a level too, and
    // stops one short of its limit.
    deserializer.set_max_depth(MAX_DEPTH + 2);
    T::deserialize(&mut deserializer).map_err(|e| {
        InteropError::new(format!(
            "the stored interop value does not decode into `{}`: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// What one header announces.
enum Header {
    /// A value with this many bytes of data after its header.
    Data(u64),
    /// A string of this many bytes, which must be UTF-8.
    Str(u64),
    /// An array or map of this many elements (a map's keys and values count
    /// one each).
    Container(u64),
}

/// Checks that `bytes` are exactly one bounded document.
pub(crate) fn prewalk(bytes: &[u8]) -> Result<(), InteropError> {
    if bytes.is_empty() {
        return Err(InteropError::new(
            "the stored interop value is empty, not a MessagePack document",
        ));
    }
    // The elements still to read in each open container, innermost last.
    let mut open: Vec<u64> = Vec::new();
    let mut at = 0;
    loop {
        let left = |at: usize| (bytes.len() - at) as u64;
        let header = read_header(bytes, &mut at)?;
        match header {
            Header::Data(len) | Header::Str(len) if len > left(at) => {
                return Err(truncated(len, left(at)));
            }
            Header::Data(len) => at += len as usize,
            Header::Str(len) => {
                let end = at + len as usize;
                // rmp-serde would hand invalid UTF-8 on as bytes; Python refuses it.
                if std::str::from_utf8(&bytes[at..end]).is_err() {
                    return Err(InteropError::new(
                        "the stored interop value holds a string that is not UTF-8",
                    ));
                }
                at = end;
            }
            Header::Container(count) => {
                if open.len() >= MAX_DEPTH {
                    return Err(InteropError::new(format!(
                        "the stored interop value nests deeper than {MAX_DEPTH} levels"
                    )));
                }
                // Each element takes at least one byte.
                if count > left(at) {
                    return Err(truncated(count, left(at)));
                }
                if count > 0 {
                    open.push(count);
                    continue;
                }
            }
        }
        // A value ended: count it in its container, closing the full ones.
        loop {
            match open.last_mut() {
                None if at == bytes.len() => return Ok(()),
                None => {
                    return Err(InteropError::new(format!(
                        "the stored interop value has {} bytes after its one MessagePack \
                         document; an interop entry is exactly one document",
                        bytes.len() - at
                    )));
                }
                Some(count) => {
                    *count -= 1;
                    if *count > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

fn truncated(declared: u64, left: u64) -> InteropError {
    InteropError::new(format!(
        "the stored interop value declares {declared} bytes or elements where {left} bytes \
         are left: it is truncated or corrupt"
    ))
}

/// Reads the header at `at` (advancing past it).
fn read_header(bytes: &[u8], at: &mut usize) -> Result<Header, InteropError> {
    let marker = take(bytes, at, 1)?[0];
    let header = match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Header::Data(0),
        0x80..=0x8f => Header::Container(2 * u64::from(marker & 0x0f)),
        0x90..=0x9f => Header::Container(u64::from(marker & 0x0f)),
        0xa0..=0xbf => Header::Str(u64::from(marker & 0x1f)),
        0xc1 => {
            return Err(InteropError::new(
                "the stored interop value holds the byte 0xc1, which MessagePack never uses",
            ));
        }
        0xc4 => Header::Data(uint(bytes, at, 1)?),
        0xc5 => Header::Data(uint(bytes, at, 2)?),
        0xc6 => Header::Data(uint(bytes, at, 4)?),
        0xd9 => Header::Str(uint(bytes, at, 1)?),
        0xda => Header::Str(uint(bytes, at, 2)?),
        0xdb => Header::Str(uint(bytes, at, 4)?),
        // Ext: a length, then a type byte and the data.
        0xc7 => Header::Data(uint(bytes, at, 1)? + 1),
        0xc8 => Header::Data(uint(bytes, at, 2)? + 1),
        0xc9 => Header::Data(uint(bytes, at, 4)? + 1),
        0xca => Header::Data(4),
        0xcb => Header::Data(8),
        0xcc | 0xd0 => Header::Data(1),
        0xcd | 0xd1 => Header::Data(2),
        0xce | 0xd2 => Header::Data(4),
        0xcf | 0xd3 => Header::Data(8),
        // Fixext 1, 2, 4, 8, 16: a type byte and the data.
        0xd4..=0xd8 => Header::Data(1 + (1 << (marker - 0xd4))),
        0xdc => Header::Container(uint(bytes, at, 2)?),
        0xdd => Header::Container(uint(bytes, at, 4)?),
        0xde => Header::Container(2 * uint(bytes, at, 2)?),
        0xdf => Header::Container(2 * uint(bytes, at, 4)?),
    };
    Ok(header)
}

/// The `n` bytes at `at` (advancing past them).
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], InteropError> {
    let taken = bytes.get(*at..*at + n).ok_or_else(|| {
        InteropError::new("the stored interop value ends inside a MessagePack header")
    })?;
    *at += n;
    Ok(taken)
}

/// The big-endian unsigned integer of the `n` bytes at `at`.
fn uint(bytes: &[u8], at: &mut usize, n: usize) -> Result<u64, InteropError> {
    Ok(take(bytes, at, n)?
        .iter()
        .fold(0, |value, &b| value << 8 | u64::from(b)))
}
