//! The format of one entry file: a 32-byte header, the key, the value.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `CKFE` |
//! | 4 | 1 | format version, `1` |
//! | 5 | 3 | reserved, zero |
//! | 8 | 8 | expiry: Unix time in milliseconds, little-endian; `0` never |
//! | 16 | 4 | key length in bytes, little-endian |
//! | 20 | 4 | CRC-32C of the key and the value, little-endian |
//! | 24 | 8 | value length in bytes, little-endian |
//! | 32 | key length | the key (UTF-8) |
//! | 32 + key length | value length | the value |
//!
//! The file's name is the hex of the first 16 bytes of the key's BLAKE3
//! hash, so no key text reaches a path; the key in the header tells a hash
//! collision (or a file copied from elsewhere) from the entry. A file whose
//! size is not exactly header + key + value is truncated or grown, and like
//! any other defect reads as a miss. The expiry is outside the checksum so
//! that `touch` rewrites it in place (8 bytes, one aligned write).

use std::fmt;

/// The bytes every entry file starts with.
pub(crate) const MAGIC: [u8; 4] = *b"CKFE";
/// The version of the format this crate writes and reads.
pub(crate) const VERSION: u8 = 1;
/// The header's length in bytes.
pub(crate) const HEADER_LEN: usize = 32;
/// Where the expiry sits in the header.
pub(crate) const EXPIRY_OFFSET: u64 = 8;

/// The header of an entry for `key` with a value of `value_len` bytes
/// whose checksum is `crc`.
pub(crate) fn header(key: &str, value_len: usize, expiry_ms: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[8..16].copy_from_slice(&expiry_ms.to_le_bytes());
    header[16..20].copy_from_slice(&(key.len() as u32).to_le_bytes());
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header[24..32].copy_from_slice(&(value_len as u64).to_le_bytes());
    header
}

/// The checksum of an entry: CRC-32C of the key, then the value.
pub(crate) fn checksum(key: &[u8], value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), value)
}

/// What a header says, once checked against the key it was read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Unix time in milliseconds the entry expires at; `0`: never.
    pub(crate) expiry_ms: u64,
    /// The CRC-32C of key and value.
    pub(crate) crc: u32,
    /// Length of the value in bytes.
    pub(crate) value_len: u64,
}

impl Header {
    /// The length of the whole file for `key`.
    pub(crate) fn file_len(&self, key: &str) -> u64 {
        (HEADER_LEN + key.len()) as u64 + self.value_len
    }

    /// Whether the entry has expired at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.expiry_ms != 0 && self.expiry_ms <= now_ms
    }
}

/// Why a file is not an entry for the key: each reads as a miss, and the
/// file is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Defect {
    /// Shorter than its header says, or than a header.
    Truncated,
    /// Longer than its header says.
    Overlong,
    /// Not a cachekit entry (wrong magic), or not a regular file.
    Foreign,
    /// Written by another version of the format.
    Version(u8),
    /// An entry for another key: a hash collision, or a copied file.
    OtherKey,
    /// Key or value do not match the checksum.
    Checksum,
    /// Larger than `max_value_size` allows.
    TooLarge,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::Truncated => f.write_str("truncated"),
            Defect::Overlong => f.write_str("longer than its header says"),
            Defect::Foreign => f.write_str("not a cachekit entry"),
            Defect::Version(v) => write!(f, "format version {v}, not {VERSION}"),
            Defect::OtherKey => f.write_str("the entry of another key"),
            Defect::Checksum => f.write_str("checksum mismatch"),
            Defect::TooLarge => f.write_str("larger than max_value_size"),
        }
    }
}

/// Reads the header at the start of `bytes` (which hold at least the
/// header and the key, when the file has them) and checks it against
/// `key` and against `file_len`, the length of the whole file.
fn parse_header(bytes: &[u8], key: &str, file_len: u64) -> Result<Header, Defect> {
    if bytes.len() < 4 || bytes[0..4] != MAGIC {
        return Err(if bytes.len() < 4 && MAGIC.starts_with(bytes) {
            Defect::Truncated
        } else {
            Defect::Foreign
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(Defect::Truncated);
    }
    if bytes[4] != VERSION {
        return Err(Defect::Version(bytes[4]));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let header = Header {
        expiry_ms: u64_at(8),
        crc: u32_at(20),
        value_len: u64_at(24),
    };
    let key_len = u32_at(16) as usize;
    if key_len != key.len() {
        return Err(Defect::OtherKey);
    }
    let expected = header.file_len(key);
    if file_len < expected || bytes.len() < HEADER_LEN + key_len {
        return Err(Defect::Truncated);
    }
    if file_len > expected {
        return Err(Defect::Overlong);
    }
    if &bytes[HEADER_LEN..HEADER_LEN + key_len] != key.as_bytes() {
        return Err(Defect::OtherKey);
    }
    Ok(header)
}

/// Checks a whole entry file (`bytes`) for `key`: its header, then the
/// checksum. The value is `bytes[HEADER_LEN + key.len()..]`.
pub(crate) fn parse(bytes: &[u8], key: &str) -> Result<Header, Defect> {
    let header = parse_header(bytes, key, bytes.len() as u64)?;
    let (stored_key, value) = bytes[HEADER_LEN..].split_at(key.len());
    if checksum(stored_key, value) != header.crc {
        return Err(Defect::Checksum);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &[u8], expiry_ms: u64) -> Vec<u8> {
        let crc = checksum(key.as_bytes(), value);
        let mut bytes = header(key, value.len(), expiry_ms, crc).to_vec();
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    #[test]
    fn an_entry_reads_back() {
        let bytes = entry("k", b"value", 42);
        let header = parse(&bytes, "k").unwrap();
        assert_eq!(header.expiry_ms, 42);
        assert_eq!(header.value_len, 5);
        assert_eq!(&bytes[HEADER_LEN + 1..], b"value");
    }

    #[test]
    fn every_truncation_is_a_defect() {
        let bytes = entry("key", b"some value", 0);
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len], "key").is_err(), "cut at {len}");
        }
    }

    #[test]
    fn every_flipped_bit_outside_the_expiry_is_a_defect() {
        let bytes = entry("key", b"value", 7);
        for at in (0..bytes.len()).filter(|at| !(8..16).contains(at)) {
            // Reserved bytes are not checked: a later version may use them.
            if (5..8).contains(&at) {
                continue;
            }
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                assert!(parse(&flipped, "key").is_err(), "byte {at} bit {bit}");
            }
        }
    }

    #[test]
    fn defects_are_named() {
        let good = entry("key", b"value", 0);
        assert_eq!(
            parse(b"not an entry at all, longer", "key"),
            Err(Defect::Foreign)
        );
        assert_eq!(parse(b"CK", "key"), Err(Defect::Truncated));
        assert_eq!(parse(&good, "kez"), Err(Defect::OtherKey));
        assert_eq!(parse(&good, "other"), Err(Defect::OtherKey));
        let mut grown = good.clone();
        grown.push(0);
        assert_eq!(parse(&grown, "key"), Err(Defect::Overlong));
        let mut version = good.clone();
        version[4] = 9;
        assert_eq!(parse(&version, "key"), Err(Defect::Version(9)));
        let mut value = good;
        *value.last_mut().unwrap() ^= 1;
        assert_eq!(parse(&value, "key"), Err(Defect::Checksum));
    }

    #[test]
    fn expiry_zero_is_never() {
        let header = parse(&entry("k", b"v", 0), "k").unwrap();
        assert!(!header.expired(u64::MAX));
        let header = parse(&entry("k", b"v", 10), "k").unwrap();
        assert!(!header.expired(9));
        assert!(header.expired(10));
    }
}
