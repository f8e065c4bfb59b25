//! The canonical MessagePack writer both SDKs share: one encoding per value,
//! so that equal arguments hash alike and equal values store alike.
//!
//! Shortest forms everywhere, unsigned forms for integers ≥ 0, map keys
//! sorted by their UTF-8 bytes at every level, no float32 and no ext. The
//! [`Profile`] decides what only arguments or only values do.

use super::datetime;
use super::value::{INT_MAX, INT_MIN};
use super::{InteropError, InteropValue, MAX_DEPTH};

/// What the bytes are for: the hash of a call's arguments, or a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// Arguments: integral floats collapse to ints (`2.0` hashes as `2`),
    /// sets are sorted arrays, datetimes are float seconds.
    Args,
    /// Stored values: floats stay float64, sets are refused, datetimes are
    /// ISO sentinel maps.
    Value,
}

/// Appends the canonical bytes of `value` under `profile` to `out`.
pub(crate) fn write(
    value: &InteropValue,
    profile: Profile,
    out: &mut Vec<u8>,
) -> Result<(), InteropError> {
    write_at(value, profile, out, 0)
}

fn write_at(
    value: &InteropValue,
    profile: Profile,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), InteropError> {
    match value {
        InteropValue::Nil => out.push(0xc0),
        InteropValue::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        InteropValue::Int(n) => write_int(*n, out)?,
        InteropValue::Float(f) => write_float(*f, profile, out)?,
        InteropValue::Str(s) => write_str(s, out)?,
        InteropValue::Bytes(b) => {
            write_len(b.len(), [0xc4, 0xc5, 0xc6], None, out, "bytes")?;
            out.extend_from_slice(b);
        }
        InteropValue::Array(items) => {
            let depth = nest(depth)?;
            write_len(items.len(), [0xdc, 0xdc, 0xdd], Some(0x90), out, "array")?;
            for item in items {
                write_at(item, profile, out, depth)?;
            }
        }
        InteropValue::Map(map) => {
            let depth = nest(depth)?;
            write_len(map.len(), [0xde, 0xde, 0xdf], Some(0x80), out, "map")?;
            // A `BTreeMap<String, _>` iterates in UTF-8 byte order.
            for (key, item) in map {
                write_str(key, out)?;
                write_at(item, profile, out, depth)?;
            }
        }
        InteropValue::Set(items) => {
            if profile == Profile::Value {
                return Err(InteropError::new(
                    "a set cannot be stored as an interop value (cachekit-py refuses sets \
                     on write); store a sorted list instead",
                ));
            }
            let depth = nest(depth)?;
            let mut encoded = Vec::with_capacity(items.len());
            for item in items {
                let mut bytes = Vec::new();
                write_at(item, profile, &mut bytes, depth)?;
                encoded.push(bytes);
            }
            encoded.sort_unstable();
            encoded.dedup();
            write_len(encoded.len(), [0xdc, 0xdc, 0xdd], Some(0x90), out, "set")?;
            for bytes in encoded {
                out.extend_from_slice(&bytes);
            }
        }
        InteropValue::DateTime { unix_micros } => match profile {
            // Python's float seconds: whole microseconds, then one float64 division.
            Profile::Args => write_float(*unix_micros as f64 / 1e6, profile, out)?,
            Profile::Value => {
                out.push(0x82);
                write_str(datetime::MARKER, out)?;
                out.push(0xc3);
                write_str(datetime::VALUE, out)?;
                write_str(&datetime::isoformat(*unix_micros)?, out)?;
            }
        },
        InteropValue::Uuid(bytes) => write_str(&hyphenated(bytes), out)?,
    }
    Ok(())
}

/// Appends the header of an array of `len` elements.
pub(crate) fn write_array_header(len: usize, out: &mut Vec<u8>) -> Result<(), InteropError> {
    write_len(len, [0xdc, 0xdc, 0xdd], Some(0x90), out, "array")
}

/// The depth inside one more container, or the error past [`MAX_DEPTH`].
fn nest(depth: usize) -> Result<usize, InteropError> {
    if depth >= MAX_DEPTH {
        return Err(InteropError::new(format!(
            "the value nests deeper than {MAX_DEPTH} arrays, maps and sets, which \
             cachekit-py refuses to read; flatten it"
        )));
    }
    Ok(depth + 1)
}

fn write_int(n: i128, out: &mut Vec<u8>) -> Result<(), InteropError> {
    if !(INT_MIN..=INT_MAX).contains(&n) {
        return InteropValue::int(n).map(drop);
    }
    if n >= 0 {
        let n = n as u64;
        if n <= 0x7f {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    } else {
        let n = n as i64;
        if n >= -32 {
            out.push(n as u8);
        } else if n >= i64::from(i8::MIN) {
            out.extend_from_slice(&[0xd0, n as u8]);
        } else if n >= i64::from(i16::MIN) {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        } else if n >= i64::from(i32::MIN) {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    Ok(())
}

/// 2^63 and 2^64 as floats: the bounds of the floats that collapse to ints.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

fn write_float(f: f64, profile: Profile, out: &mut Vec<u8>) -> Result<(), InteropError> {
    InteropValue::float(f)?;
    if profile == Profile::Args && f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_64).contains(&f) {
        // Exact: an integral float in range converts without rounding; −0.0 → 0.
        let n = if f < 0.0 {
            i128::from(f as i64)
        } else {
            i128::from(f as u64)
        };
        return write_int(n, out);
    }
    out.push(0xcb);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
    Ok(())
}

fn write_str(s: &str, out: &mut Vec<u8>) -> Result<(), InteropError> {
    if s.len() <= 31 {
        out.push(0xa0 | s.len() as u8);
    } else {
        write_len(s.len(), [0xd9, 0xda, 0xdb], None, out, "string")?;
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Writes the header of a length: the fix form `fix | len` when given and
/// `len` ≤ 15, else the 8-, 16- or 32-bit form of `markers` (arrays and maps
/// have no 8-bit form: their first marker repeats the 16-bit one).
fn write_len(
    len: usize,
    markers: [u8; 3],
    fix: Option<u8>,
    out: &mut Vec<u8>,
    what: &str,
) -> Result<(), InteropError> {
    match fix {
        Some(fix) if len <= 15 => out.push(fix | len as u8),
        _ if len <= 0xff && markers[0] != markers[1] => {
            out.extend_from_slice(&[markers[0], len as u8])
        }
        _ if len <= 0xffff => {
            out.push(markers[1]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            let len = u32::try_from(len).map_err(|_| {
                InteropError::new(format!(
                    "the {what} has {len} elements or bytes, more than MessagePack's 2^32-1"
                ))
            })?;
            out.push(markers[2]);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    Ok(())
}

/// The lowercase hyphenated text of a UUID (`6ba7b810-9dad-11d1-80b4-00c04fd430c8`).
pub(crate) fn hyphenated(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    text
}
