//! The master key that every encryption key is derived from.

use std::fmt;

use zeroize::Zeroizing;

use super::error::{EncryptionError, EncryptionErrorKind};

/// The fewest bytes a master key may have (256 bits), as cachekit-py requires.
const MIN_KEY_BYTES: usize = 32;

/// A master key: the secret the AES-256 keys of a [`Keyring`](super::Keyring)
/// are derived from. Its bytes are wiped from memory when it drops (clones
/// too), and `Debug` shows `MasterKey(<redacted>)`; it has no `Display`.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<Vec<u8>>,
}

impl MasterKey {
    /// The key whose hex is `hex` (as in `CACHEKIT_MASTER_KEY`), with
    /// surrounding whitespace ignored; it must decode to at least 32 bytes.
    pub fn from_hex(hex: &str) -> Result<MasterKey, EncryptionError> {
        let hex = hex.trim();
        if hex.len() % 2 != 0 {
            return Err(invalid(format!(
                "the master key has {} hex characters, an odd number: give the key as hex, \
                 two characters a byte (64 or more characters)",
                hex.len()
            )));
        }
        // Decoded straight into wiped storage: no unwiped copy, even of a
        // key that fails half way.
        let mut bytes = Zeroizing::new(vec![0u8; hex.len() / 2]);
        if hex::decode_to_slice(hex, &mut bytes[..]).is_err() {
            // `hex`'s own message names the bad character: not repeated here.
            return Err(invalid(
                "the master key is not hex: it has a character other than 0-9, a-f and A-F; \
                 give the key as hex (64 or more characters)",
            ));
        }
        check_length(bytes.len())?;
        Ok(MasterKey { bytes })
    }

    /// The key of exactly 32 raw bytes (`bytes` is copied; the caller keeps
    /// and wipes its own). 64 bytes are refused too: they are most likely
    /// hex, for [`MasterKey::from_hex`].
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, EncryptionError> {
        if bytes.len() != MIN_KEY_BYTES {
            let hint = if bytes.len() == 2 * MIN_KEY_BYTES {
                " (64 bytes look like hex text: use MasterKey::from_hex)"
            } else {
                ""
            };
            return Err(invalid(format!(
                "a raw master key is {} bytes; exactly {MIN_KEY_BYTES} are needed{hint}",
                bytes.len()
            )));
        }
        Ok(MasterKey {
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The key's bytes, for key derivation only.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Refuses a decoded key shorter than [`MIN_KEY_BYTES`].
fn check_length(len: usize) -> Result<(), EncryptionError> {
    if len < MIN_KEY_BYTES {
        return Err(invalid(format!(
            "the master key is {len} bytes; at least {MIN_KEY_BYTES} are needed \
             ({} hex characters): generate one with `openssl rand -hex 32`",
            2 * MIN_KEY_BYTES
        )));
    }
    Ok(())
}

/// An [`EncryptionErrorKind::InvalidKey`] error.
fn invalid(message: impl Into<String>) -> EncryptionError {
    EncryptionError::new(EncryptionErrorKind::InvalidKey, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn hex_decodes_with_whitespace_trimmed() {
        let key = MasterKey::from_hex(&format!("  {HEX}\n")).unwrap();
        assert_eq!(hex::encode(key.expose()), HEX);
        let upper = MasterKey::from_hex(&HEX.to_uppercase()).unwrap();
        assert_eq!(upper.expose(), key.expose());
    }

    #[test]
    fn longer_keys_are_kept_whole() {
        let key = MasterKey::from_hex(&format!("{HEX}{HEX}")).unwrap();
        assert_eq!(key.expose().len(), 64);
    }

    #[test]
    fn short_keys_say_the_length_and_the_minimum_but_not_the_key() {
        let short = &HEX[..62];
        let error = MasterKey::from_hex(short).unwrap_err();
        assert_eq!(error.kind(), EncryptionErrorKind::InvalidKey);
        let message = error.to_string();
        assert!(message.contains("31 bytes"), "{message}");
        assert!(message.contains("at least 32"), "{message}");
        assert!(!message.contains(&short[..8]), "{message}");
    }

    #[test]
    fn non_hex_and_odd_lengths_are_refused_without_echo() {
        let bad = format!("{}zz", &HEX[..62]);
        let message = MasterKey::from_hex(&bad).unwrap_err().to_string();
        assert!(
            !message.contains("zz") && !message.contains("0011"),
            "{message}"
        );
        let odd = MasterKey::from_hex(&HEX[..63]).unwrap_err();
        assert_eq!(odd.kind(), EncryptionErrorKind::InvalidKey);
    }

    #[test]
    fn raw_keys_are_exactly_32_bytes() {
        assert!(MasterKey::from_bytes(&[7; 32]).is_ok());
        for len in [0, 16, 31, 33, 64] {
            let error = MasterKey::from_bytes(&vec![7; len]).unwrap_err();
            assert_eq!(error.kind(), EncryptionErrorKind::InvalidKey, "{len}");
        }
        let hexlike = MasterKey::from_bytes(HEX.as_bytes()).unwrap_err();
        assert!(hexlike.to_string().contains("from_hex"), "{hexlike}");
    }

    #[test]
    fn debug_shows_nothing_of_the_key() {
        let key = MasterKey::from_hex(HEX).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
        assert_eq!(format!("{:?}", key.clone()), "MasterKey(<redacted>)");
    }
}
