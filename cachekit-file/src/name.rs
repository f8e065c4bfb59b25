//! The file name of a key: the hex of the first 16 bytes of its BLAKE3
//! hash, so that no key text reaches a path.

use std::ffi::CStr;
use std::fmt;

/// Hex digits of a name: 16 bytes (128 bits) of BLAKE3, so two keys of
/// one cache share a name with a chance of about n² / 2¹²⁹; the key in
/// the header tells them apart even then.
const LEN: usize = 32;

/// The name of the file of one key, in `entries/` and in `locks/`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Name([u8; LEN]);

impl Name {
    /// The name of `key`'s file.
    pub(crate) fn of(key: &str) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hash = blake3::hash(key.as_bytes());
        let mut name = [0u8; LEN];
        for (i, byte) in hash.as_bytes()[..LEN / 2].iter().enumerate() {
            name[2 * i] = HEX[usize::from(byte >> 4)];
            name[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        Name(name)
    }

    /// `file_name` as a name, if it is one (32 lowercase hex digits).
    pub(crate) fn parse(file_name: &CStr) -> Option<Self> {
        let bytes = file_name.to_bytes();
        let name: [u8; LEN] = bytes.try_into().ok()?;
        name.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(Name(name))
    }

    /// The name as text.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hex_and_parse_back() {
        let name = Name::of("user:42");
        assert_eq!(name.as_str().len(), 32);
        let file_name = std::ffi::CString::new(name.as_str()).unwrap();
        assert_eq!(Name::parse(&file_name), Some(name));
        assert_ne!(Name::of("user:43"), name);
        assert_eq!(Name::parse(c".tmp"), None);
        assert_eq!(Name::parse(c"0123456789ABCDEF0123456789abcdef"), None);
    }
}
