//! Values on the wire: serde + bincode inside a small versioned envelope.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "CK"
//! 2       1     format version (4)
//! 3       1     flags: bit 0, a tag block follows the header; others 0
//! 4       8     expiry, Unix milliseconds, little endian (0: none)
//! 12      4     stale window, milliseconds, little endian: the entry is
//!               fresh until this long before its expiry (0: until expiry)
//! 16      4     load time, milliseconds, little endian (0: unknown)
//! 20      4     CRC-32C of bytes 2..20 and the payload, little endian
//! 24      ..    the tag block, if flagged:
//!         1       n, the number of tags (at most 32)
//!         8 * n   the generation of each tag when written, little endian
//! ..      ..    payload:
//!         8       shape fingerprint of the value, little endian (see `shape`)
//!         1       n, the number of marks
//!         4 * n   the fingerprint at each mark, little endian
//!         ..      the value in bincode's standard configuration
//! ```
//!
//! The expiry lets a process that reads an entry written elsewhere bound its
//! in-process copy by the entry's lifetime (an L1 copy never outlives the L2
//! entry). The stale window and the load time serve stale-while-revalidate
//! and early refresh (see [`Stamp`]) on every backend, memcached included,
//! whose TTLs cannot be read back. Version 3 entries (the same header
//! without those two fields, 16 bytes) are still read, as fresh until
//! expiry: processes of the previous release and this one can share a
//! cache while a deployment rolls. The shape fingerprint lets a reader tell an entry written by
//! another type (a changed return type, reordered struct fields) from one of
//! its own: such an entry is refused, never decoded into wrong data.
//!
//! Nothing a backend returns can crash the reader: bytes that are not a
//! valid envelope of this version, a payload that does not decode as the
//! requested type, or one whose shape differs, are an [`Error::Codec`], which
//! [`Cache`](crate::Cache) turns into a miss and a warning. Payloads are read
//! by a bounded reader (see `reader`): no declared length is allocated before
//! the bytes are there, and nesting is limited to [`MAX_DEPTH`] levels.

mod invalid;
mod reader;
mod shape;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};
use reader::{OTHER_TYPE, Reader};
pub use shape::MAX_DEPTH;
use shape::MAX_MARKS;

const MAGIC: &[u8; 2] = b"CK";
/// The envelope format version written by this release. Version 1 (before
/// 0.1.0 was released) had a CRC-32 (IEEE) in place of the CRC-32C; version
/// 2 had no shape fingerprint; version 3 had no stale window or load time.
pub const FORMAT_VERSION: u8 = 4;
/// The previous version, still read.
const PREVIOUS_VERSION: u8 = 3;
/// Size of the envelope header in bytes, before the payload.
pub const HEADER_LEN: usize = 24;
/// Size of a [`PREVIOUS_VERSION`] header.
const PREVIOUS_HEADER_LEN: usize = 16;
/// The longest stale window an envelope records (`u32::MAX` milliseconds,
/// 49.7 days); longer ones are shortened to it.
pub const MAX_STALE: Duration = Duration::from_millis(u32::MAX as u64);
/// The flag of an entry with a tag block.
const TAGGED: u8 = 1;
/// The most tags one entry records.
pub const MAX_TAGS: usize = 32;
/// Size of the shape fingerprint at the start of the payload.
const SHAPE_LEN: usize = 8;

/// What an envelope records of its entry's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    /// When the writer meant the entry to expire, if ever.
    pub expires_at: Option<SystemTime>,
    /// How long before `expires_at` the entry stops being fresh: from then
    /// on it is served stale while one refresh runs. Stored in whole
    /// milliseconds, at most [`MAX_STALE`] (writers keep to it: a longer
    /// window would be read back shorter, and the entry fresh for longer).
    pub stale_for: Duration,
    /// How long the value took to load (the delta of early refresh); zero
    /// when unknown. Stored as [`Stamp::stale_for`] is.
    pub load_time: Duration,
}

impl Stamp {
    /// A stamp of `expires_at` alone: fresh until then, load time unknown.
    pub fn expiring(expires_at: Option<SystemTime>) -> Self {
        Stamp {
            expires_at,
            ..Stamp::default()
        }
    }

    /// When the entry stops being fresh: `expires_at` less the stale
    /// window; `None` if it never expires.
    pub fn fresh_until(&self) -> Option<SystemTime> {
        let expires_at = self.expires_at?;
        Some(expires_at.checked_sub(self.stale_for).unwrap_or(UNIX_EPOCH))
    }
}

/// An envelope whose header and checksum were verified.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The payload: the shape fingerprint, then the bincode bytes.
    pub payload: Bytes,
    /// What the writer recorded of the entry's lifetime.
    pub stamp: Stamp,
    /// The generations of the entry's tags when it was written, in the
    /// order of its tags (see `Cache::invalidate_tag`); empty for none.
    pub tags: Vec<u64>,
}

/// Encodes `value` in an envelope that records `expires_at` (see [`encode_stamped`]).
pub fn encode<T: Serialize + ?Sized>(value: &T, expires_at: Option<SystemTime>) -> Result<Bytes> {
    encode_stamped(value, Stamp::expiring(expires_at))
}

/// Encodes `value` in an envelope that records `stamp` (see [`encode_tagged`]).
pub fn encode_stamped<T: Serialize + ?Sized>(value: &T, stamp: Stamp) -> Result<Bytes> {
    encode_tagged(value, stamp, &[])
}

/// Encodes `value` in an envelope that records `stamp` and the generations
/// of the entry's tags (at most [`MAX_TAGS`]).
///
/// Refused with [`Error::Codec`]: values nested deeper than [`MAX_DEPTH`],
/// sequences or maps without a known length, and values whose collections
/// hold more zero-sized elements than the encoding has bytes (`Vec<()>`),
/// which the bounded reader could not tell from a forged length.
pub fn encode_tagged<T: Serialize + ?Sized>(
    value: &T,
    stamp: Stamp,
    tags: &[u64],
) -> Result<Bytes> {
    if tags.len() > MAX_TAGS {
        return Err(Error::Codec(format!(
            "cannot encode the value: {} tags, more than the {MAX_TAGS} an entry records",
            tags.len()
        )));
    }
    // The shape first: it refuses too deep a value before bincode's
    // serializer recurses into it.
    let shape = shape::shape_of(value)
        .map_err(|e| Error::Codec(format!("cannot encode the value: {e}")))?;
    let mut out = BytesMut::with_capacity(HEADER_LEN + SHAPE_LEN + 64).writer();
    out.get_mut().put_slice(MAGIC);
    out.get_mut().put_u8(FORMAT_VERSION);
    out.get_mut()
        .put_u8(if tags.is_empty() { 0 } else { TAGGED });
    out.get_mut().put_u64_le(expiry_millis(stamp.expires_at));
    out.get_mut().put_u32_le(short_millis(stamp.stale_for));
    out.get_mut().put_u32_le(short_millis(stamp.load_time));
    out.get_mut().put_u32_le(0);
    if !tags.is_empty() {
        out.get_mut().put_u8(tags.len() as u8);
        tags.iter().for_each(|tag| out.get_mut().put_u64_le(*tag));
    }
    out.get_mut().put_u64_le(shape.finish());
    let marks = shape.recorded();
    out.get_mut().put_u8(marks.len() as u8);
    marks
        .iter()
        .for_each(|mark| out.get_mut().put_u32_le(*mark));
    let body_start = out.get_ref().len();
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .map_err(|e| Error::Codec(format!("cannot encode the value: {e}")))?;
    let mut buf = out.into_inner();
    let body = buf.len() - body_start;
    if shape.elements > body as u64 {
        return Err(Error::Codec(format!(
            "cannot encode the value: its collections hold {} elements in {body} bytes \
             (zero-sized elements, such as in `Vec<()>`, are not stored)",
            shape.elements
        )));
    }
    let crc = checksum(&buf[2..HEADER_LEN - 4], &buf[HEADER_LEN..]);
    buf[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(buf.freeze())
}

/// Verifies the envelope around `bytes` and returns its payload.
pub fn open(mut bytes: Bytes) -> Result<Opened> {
    if bytes.len() < 3 || &bytes[..2] != MAGIC {
        return Err(corrupt(if bytes.len() < 3 {
            format!("{} bytes is shorter than the envelope header", bytes.len())
        } else {
            "not a cachekit envelope (bad magic)".into()
        }));
    }
    let header_len = match bytes[2] {
        FORMAT_VERSION => HEADER_LEN,
        PREVIOUS_VERSION => PREVIOUS_HEADER_LEN,
        version => {
            return Err(corrupt(format!(
                "envelope format version {version} (this release reads {PREVIOUS_VERSION} and {FORMAT_VERSION})"
            )));
        }
    };
    if bytes.len() < header_len + SHAPE_LEN + 1 {
        return Err(corrupt(format!(
            "{} bytes is shorter than the envelope header",
            bytes.len()
        )));
    }
    let field = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let stored = field(header_len - 4);
    if stored != checksum(&bytes[2..header_len - 4], &bytes[header_len..]) {
        return Err(corrupt("checksum mismatch".into()));
    }
    let millis = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
    let expires_at = (millis != 0).then(|| {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(millis))
            .unwrap_or(UNIX_EPOCH)
    });
    let (stale_for, load_time) = match header_len {
        HEADER_LEN => (field(12), field(16)),
        _ => (0, 0),
    };
    let flags = if header_len == HEADER_LEN {
        bytes[3]
    } else {
        0
    };
    let mut tags = Vec::new();
    let mut skip = header_len;
    match flags {
        0 => {}
        TAGGED => {
            let count = usize::from(bytes[header_len]);
            let end = header_len + 1 + 8 * count;
            if count > MAX_TAGS || bytes.len() < end + SHAPE_LEN + 1 {
                return Err(corrupt(format!("{count} tags do not fit the entry")));
            }
            tags = bytes[header_len + 1..end]
                .chunks_exact(8)
                .map(|tag| u64::from_le_bytes(tag.try_into().expect("8 bytes")))
                .collect();
            skip = end;
        }
        flags => return Err(corrupt(format!("unknown envelope flags {flags:#04x}"))),
    }
    let stamp = Stamp {
        expires_at,
        stale_for: Duration::from_millis(stale_for.into()),
        load_time: Duration::from_millis(load_time.into()),
    };
    // Advanced rather than sliced: slicing clones, which makes a `Bytes`
    // still owned by one `Vec` (as a backend's copy is) allocate to share it.
    bytes.advance(skip);
    Ok(Opened {
        payload: bytes,
        stamp,
        tags,
    })
}

/// An untagged envelope this release encoded, with a tag block of `tags`
/// (at most [`MAX_TAGS`]) added: for a value encoded before its tags'
/// generations were read.
pub fn with_tags(untagged: &Bytes, tags: &[u64]) -> Bytes {
    debug_assert!(untagged[3] == 0 && tags.len() <= MAX_TAGS);
    let mut buf = BytesMut::with_capacity(untagged.len() + 1 + 8 * tags.len());
    buf.put_slice(&untagged[..HEADER_LEN]);
    buf[3] = TAGGED;
    buf.put_u8(tags.len() as u8);
    tags.iter().for_each(|tag| buf.put_u64_le(*tag));
    buf.put_slice(&untagged[HEADER_LEN..]);
    let crc = checksum(&buf[2..HEADER_LEN - 4], &buf[HEADER_LEN..]);
    buf[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    buf.freeze()
}

/// The payload of an envelope this release encoded (after its header and
/// tag block), for a copy in front of the backend.
pub fn payload_of(bytes: &Bytes) -> Bytes {
    match bytes[3] {
        TAGGED => bytes.slice(HEADER_LEN + 1 + 8 * usize::from(bytes[HEADER_LEN])..),
        _ => bytes.slice(HEADER_LEN..),
    }
}

/// Decodes a verified payload into a `T`: every byte must be used, and the
/// shape `T` reads must be the shape the writer wrote.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let short = || {
        corrupt(format!(
            "a payload of {} bytes has no shape fingerprint",
            payload.len()
        ))
    };
    let (shape, rest) = payload.split_first_chunk::<SHAPE_LEN>().ok_or_else(short)?;
    let (&count, rest) = rest.split_first().ok_or_else(short)?;
    let marks_len = usize::from(count) * 4;
    if usize::from(count) > MAX_MARKS || rest.len() < marks_len {
        return Err(corrupt(format!(
            "{count} shape marks do not fit the payload"
        )));
    }
    let (marks, body) = rest.split_at(marks_len);
    let mut reader = Reader::new(body, marks);
    let value = T::deserialize(&mut reader).map_err(|e| {
        corrupt(format!(
            "payload does not decode as the requested type: {e}"
        ))
    })?;
    if reader.remaining() != 0 {
        return Err(corrupt(format!(
            "payload has {} trailing bytes after the requested type",
            reader.remaining()
        )));
    }
    if reader.shape.finish() != u64::from_le_bytes(*shape) || !reader.shape.all_marks_reached() {
        return Err(corrupt(OTHER_TYPE.into()));
    }
    Ok(value)
}

/// Opens and decodes in one step.
pub fn decode<T: DeserializeOwned>(bytes: Bytes) -> Result<T> {
    decode_payload(&open(bytes)?.payload)
}

fn expiry_millis(expires_at: Option<SystemTime>) -> u64 {
    expires_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        })
}

/// `duration` in whole milliseconds, saturated to a `u32`.
fn short_millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// CRC-32C (Castagnoli): computed by the CPU's `crc32` instruction (SSE 4.2,
/// ARMv8), without the 16 KiB of tables a table-driven CRC-32 reads, which
/// are cold again after each network round trip (a software fallback
/// remains for other CPUs).
fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), payload)
}

fn corrupt(reason: String) -> Error {
    Error::Codec(format!("stored bytes are unreadable: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Profile {
        id: u64,
        name: String,
        tags: Vec<String>,
        score: Option<f64>,
    }

    fn profile() -> Profile {
        Profile {
            id: 7,
            name: "Ada".into(),
            tags: vec!["x".into(), "y".into()],
            score: Some(1.5),
        }
    }

    /// An envelope around `body` with a valid checksum and the shape of `T`'s
    /// `sample`, as a writer of `T` with a bug (or an attacker) would make it.
    fn forged<T: Serialize>(sample: &T, body: &[u8]) -> Bytes {
        let shape = shape::shape_of(sample).unwrap().finish();
        let mut buf = BytesMut::new();
        buf.put_slice(MAGIC);
        buf.put_u8(FORMAT_VERSION);
        buf.put_u8(0);
        buf.put_u64_le(0);
        buf.put_u64_le(0);
        buf.put_u32_le(0);
        buf.put_u64_le(shape);
        buf.put_u8(0);
        buf.put_slice(body);
        let crc = checksum(&buf[2..20], &buf[HEADER_LEN..]);
        buf[20..24].copy_from_slice(&crc.to_le_bytes());
        buf.freeze()
    }

    #[test]
    fn round_trip_keeps_value_and_expiry() {
        let expiry = UNIX_EPOCH + Duration::from_millis(1_900_000_000_123);
        let bytes = encode(&profile(), Some(expiry)).unwrap();
        let opened = open(bytes.clone()).unwrap();
        assert_eq!(opened.stamp, Stamp::expiring(Some(expiry)));
        assert_eq!(opened.stamp.fresh_until(), Some(expiry));
        assert_eq!(decode::<Profile>(bytes).unwrap(), profile());
        let forever = open(encode(&1u8, None).unwrap()).unwrap().stamp;
        assert_eq!((forever.expires_at, forever.fresh_until()), (None, None));
    }

    #[test]
    fn round_trip_keeps_the_stale_window_and_load_time() {
        let expiry = UNIX_EPOCH + Duration::from_millis(1_900_000_060_000);
        let stamp = Stamp {
            expires_at: Some(expiry),
            stale_for: Duration::from_secs(60),
            load_time: Duration::from_millis(250),
        };
        let opened = open(encode_stamped(&profile(), stamp).unwrap()).unwrap();
        assert_eq!(opened.stamp, stamp);
        assert_eq!(
            opened.stamp.fresh_until(),
            Some(UNIX_EPOCH + Duration::from_millis(1_900_000_000_000))
        );
        // Beyond what the header holds: saturated, never wrapped.
        let long = Stamp {
            stale_for: Duration::from_secs(u64::from(u32::MAX)),
            ..stamp
        };
        let opened = open(encode_stamped(&1u8, long).unwrap()).unwrap();
        assert_eq!(
            opened.stamp.stale_for,
            Duration::from_millis(u32::MAX.into())
        );
    }

    #[test]
    fn tags_round_trip_whether_encoded_with_the_value_or_added_after() {
        let stamp = Stamp::expiring(None);
        let tagged = encode_tagged(&profile(), stamp, &[7, u64::MAX]).unwrap();
        let added = with_tags(&encode_stamped(&profile(), stamp).unwrap(), &[7, u64::MAX]);
        assert_eq!(tagged, added);
        let opened = open(tagged.clone()).unwrap();
        assert_eq!(opened.tags, vec![7, u64::MAX]);
        assert_eq!(opened.payload, payload_of(&tagged));
        assert_eq!(decode::<Profile>(tagged).unwrap(), profile());
        assert!(encode_tagged(&1u8, stamp, &[0; MAX_TAGS + 1]).is_err());
        // A tag count beyond the entry is refused, not read past.
        let mut bad = encode_tagged(&1u8, stamp, &[1]).unwrap().to_vec();
        bad[HEADER_LEN] = 200;
        let crc = checksum(&bad[2..20], &bad[HEADER_LEN..]);
        bad[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(open(Bytes::from(bad)).is_err());
    }

    #[test]
    fn version_3_entries_are_read_as_fresh_until_expiry() {
        // Version 3's header, as the previous release writes it.
        let expiry = 1_900_000_000_123_u64;
        let payload = open(encode(&profile(), None).unwrap()).unwrap().payload;
        let mut buf = BytesMut::new();
        buf.put_slice(MAGIC);
        buf.put_u8(3);
        buf.put_u8(0);
        buf.put_u64_le(expiry);
        buf.put_u32_le(0);
        buf.put_slice(&payload);
        let crc = checksum(&buf[2..12], &buf[16..]);
        buf[12..16].copy_from_slice(&crc.to_le_bytes());
        let opened = open(buf.clone().freeze()).unwrap();
        let at = UNIX_EPOCH + Duration::from_millis(expiry);
        assert_eq!(opened.stamp, Stamp::expiring(Some(at)));
        assert_eq!(decode::<Profile>(buf.freeze()).unwrap(), profile());
    }

    #[test]
    fn the_checksum_is_crc32c_over_the_header_then_the_payload() {
        // CRC-32C's check value: other implementations must agree with it.
        assert_eq!(checksum(b"1234", b"56789"), 0xE306_9283);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = encode(&profile(), None).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.to_vec();
                bad[i] ^= 1 << bit;
                assert!(
                    decode::<Profile>(Bytes::from(bad)).is_err(),
                    "flip at byte {i} bit {bit} passed"
                );
            }
        }
    }

    #[test]
    fn truncated_envelopes_are_errors() {
        let bytes = encode(&profile(), None).unwrap();
        for len in 0..bytes.len() {
            assert!(
                matches!(decode::<Profile>(bytes.slice(..len)), Err(Error::Codec(_))),
                "len {len}"
            );
        }
    }

    #[test]
    fn random_bytes_are_errors_not_panics() {
        // xorshift: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..2000 {
            let len = (round % 97) as usize;
            let mut buf = Vec::with_capacity(len + HEADER_LEN);
            if round % 2 == 0 {
                buf.extend_from_slice(&[b'C', b'K', FORMAT_VERSION, 0]);
            }
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.push(state as u8);
            }
            assert!(decode::<Profile>(Bytes::from(buf)).is_err());
        }
    }

    #[test]
    fn other_versions_and_foreign_types_are_errors() {
        for version in [2, FORMAT_VERSION + 1] {
            let mut bytes = encode(&profile(), None).unwrap().to_vec();
            bytes[2] = version;
            assert!(decode::<Profile>(Bytes::from(bytes)).is_err());
        }
        let number = encode(&5u64, None).unwrap();
        assert!(decode::<Profile>(number).is_err());
        let string = encode("hello", None).unwrap();
        assert!(
            decode::<u8>(string).is_err(),
            "trailing bytes must not pass"
        );
    }

    #[test]
    fn declared_lengths_beyond_the_payload_are_errors_not_allocations() {
        // A `String` of 2^40 bytes, then of `u64::MAX`: bincode 2 allocates
        // these before reading (an abort, a "capacity overflow" panic).
        for len in [1_u64 << 40, u64::MAX] {
            let mut body = vec![253];
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(b"abc");
            let error = decode::<String>(forged(&String::new(), &body)).unwrap_err();
            assert!(error.to_string().contains("remain"), "{error}");
            let error = decode::<Vec<u64>>(forged(&Vec::<u64>::new(), &body)).unwrap_err();
            assert!(error.to_string().contains("cannot hold"), "{error}");
        }
    }

    #[test]
    fn a_number_read_as_a_string_is_refused() {
        // Written by `fn label(n) -> u64`, read after a deploy by `-> String`:
        // in bincode, the number's bytes are a valid string length.
        let written = encode(&1_700_000_000_000_u64, None).unwrap();
        let error = decode::<String>(written).unwrap_err();
        assert!(matches!(error, Error::Codec(_)), "{error}");
    }

    #[test]
    fn reordered_fields_are_refused_not_swapped() {
        #[derive(Serialize)]
        struct Before {
            id: u64,
            name: String,
            email: String,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct After {
            id: u64,
            email: String,
            name: String,
        }
        let written = encode(
            &Before {
                id: 1,
                name: "Ada".into(),
                email: "ada@example.com".into(),
            },
            None,
        )
        .unwrap();
        let error = decode::<After>(written).unwrap_err();
        assert!(error.to_string().contains("another type"), "{error}");
    }

    #[test]
    fn a_new_enum_variant_still_reads_entries_written_before() {
        // One enum before and after a deploy (serde names it `Status` both times).
        #[derive(Serialize)]
        #[serde(rename = "Status")]
        enum Old {
            A(u8),
            B,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(rename = "Status")]
        enum New {
            A(u8),
            B,
            C(String),
        }
        assert_eq!(
            decode::<New>(encode(&Old::A(3), None).unwrap()).unwrap(),
            New::A(3)
        );
        assert_eq!(
            decode::<New>(encode(&Old::B, None).unwrap()).unwrap(),
            New::B
        );
        #[derive(Debug, Deserialize)]
        #[serde(rename = "Status")]
        #[allow(dead_code)]
        enum Moved {
            B,
            A(u8),
        }
        assert!(decode::<Moved>(encode(&Old::B, None).unwrap()).is_err());
        // Swapped unit variants: the same bytes, another meaning.
        #[derive(Serialize)]
        #[serde(rename = "Light")]
        enum Written {
            Red,
            #[allow(dead_code)]
            Green,
        }
        #[derive(Debug, Deserialize)]
        #[serde(rename = "Light")]
        enum Read {
            Green,
            Red,
        }
        let error = decode::<Read>(encode(&Written::Red, None).unwrap()).unwrap_err();
        assert!(error.to_string().contains("another type"), "{error}");
        let _ = (Read::Green, Read::Red);
    }

    #[derive(Debug, Serialize, Deserialize)]
    enum Nest {
        Leaf,
        Node(Box<Nest>),
    }

    #[test]
    fn nesting_is_bounded_when_writing_and_reading() {
        let mut deep = Nest::Leaf;
        for _ in 0..=MAX_DEPTH {
            deep = Nest::Node(Box::new(deep));
        }
        let error = encode(&deep, None).unwrap_err();
        assert!(error.to_string().contains("deeper than"), "{error}");
        let mut fits = Nest::Leaf;
        for _ in 0..MAX_DEPTH {
            fits = Nest::Node(Box::new(fits));
        }
        decode::<Nest>(encode(&fits, None).unwrap()).unwrap();
        // 200,000 levels under a valid checksum: refused, on this thread's stack.
        let mut body = vec![1_u8; 200_000];
        body.push(0);
        let error = decode::<Nest>(forged(&Nest::Leaf, &body)).unwrap_err();
        assert!(error.to_string().contains("deeper than"), "{error}");
        for value in [deep, fits] {
            std::mem::forget(value); // a deep `Box` chain would drop recursively
        }
    }

    #[test]
    fn zero_sized_elements_are_not_stored() {
        let error = encode(&vec![(); 10], None).unwrap_err();
        assert!(error.to_string().contains("zero-sized"), "{error}");
        // A unit-only map or set with as many elements as bytes would pass
        // encoding; the reader's element budget then matches the writer's.
        decode::<Vec<()>>(encode(&Vec::<()>::new(), None).unwrap()).unwrap();
    }
}
