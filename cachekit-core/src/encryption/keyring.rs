//! The keys of one tenant: the current one that seals, and the previous
//! ones that still open entries written before a rotation.

use std::fmt;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{AeadInPlace, Aes256Gcm, KeyInit};

use super::aad::aad_v3;
use super::derive::{ENCRYPTION_DOMAIN, derive_key, fingerprint};
use super::error::{EncryptionError, EncryptionErrorKind};
use super::master_key::MasterKey;
use super::nonce::{NONCE_LEN, fresh_nonce};

/// The most previous keys a keyring keeps, as cachekit-py does: each one
/// costs a failed trial decryption on every read of an entry it did not write.
#[doc(hidden)]
pub const MAX_PREVIOUS_KEYS: usize = 3;

/// Bytes of an AES-GCM tag.
const TAG_LEN: usize = 16;

/// The `compressed` component of an interop AAD: interop values are never
/// compressed, and cachekit-py writes the Python literal.
const NOT_COMPRESSED: &str = "False";

/// AES-256-GCM keys derived from a current master key and up to
/// [`MAX_PREVIOUS_KEYS`] previous ones, for one tenant. Each key is derived
/// once, here; the ciphers wipe their keys when they drop. `Debug` shows the
/// tenant and the number of previous keys only.
#[derive(Clone)]
#[doc(hidden)]
pub struct Keyring {
    tenant: String,
    /// The current key's cipher first, then the previous keys' in order.
    ciphers: Vec<Aes256Gcm>,
    fingerprint: [u8; 16],
}

impl Keyring {
    /// The keyring of `tenant` (see [`tenant_of`](super::tenant_of)) that
    /// seals with `current` and also opens with each of `previous`, tried
    /// in that order.
    pub fn new(
        current: &MasterKey,
        previous: &[MasterKey],
        tenant: &str,
    ) -> Result<Keyring, EncryptionError> {
        if previous.len() > MAX_PREVIOUS_KEYS {
            return Err(EncryptionError::new(
                EncryptionErrorKind::TooManyPreviousKeys,
                format!(
                    "{} previous master keys were given; at most {MAX_PREVIOUS_KEYS} are kept: \
                     drop the oldest, once the entries written under it have expired",
                    previous.len()
                ),
            ));
        }
        let current_key = derive_key(current.expose(), ENCRYPTION_DOMAIN, tenant)?;
        let fingerprint = fingerprint(&current_key);
        let mut ciphers = Vec::with_capacity(1 + previous.len());
        ciphers.push(Aes256Gcm::new(GenericArray::from_slice(&current_key[..])));
        for master in previous {
            let key = derive_key(master.expose(), ENCRYPTION_DOMAIN, tenant)?;
            ciphers.push(Aes256Gcm::new(GenericArray::from_slice(&key[..])));
        }
        Ok(Keyring {
            tenant: tenant.to_owned(),
            ciphers,
            fingerprint,
        })
    }

    /// The tenant the keys and every AAD are bound to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The current key's fingerprint, as cachekit-py writes it in frame
    /// headers: the first 16 bytes of SHA-256(`"key_fingerprint_v1"` ‖ key).
    pub fn fingerprint(&self) -> [u8; 16] {
        self.fingerprint
    }

    /// `plaintext` sealed under the current key for `cache_key`:
    /// `nonce(12) ‖ ciphertext ‖ tag(16)`, with a fresh random nonce.
    /// `format` names the plaintext's encoding (`"msgpack"` in interop mode)
    /// and is authenticated: the value opens only as that format.
    pub fn seal(&self, cache_key: &str, format: &str, plaintext: &[u8]) -> Vec<u8> {
        self.seal_under(cache_key, format, fresh_nonce(), plaintext)
    }

    /// [`Keyring::seal`] with the given nonce, for fixed test vectors only
    /// (the test kit's): a nonce used twice under one key reveals both
    /// plaintexts.
    #[doc(hidden)]
    #[cfg(any(test, feature = "testkit"))]
    pub fn seal_with_nonce(
        &self,
        cache_key: &str,
        format: &str,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Vec<u8> {
        self.seal_under(cache_key, format, nonce, plaintext)
    }

    fn seal_under(
        &self,
        cache_key: &str,
        format: &str,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let aad = self.interop_aad(cache_key, format);
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = self.ciphers[0]
            .encrypt_in_place_detached(
                GenericArray::from_slice(&nonce),
                &aad,
                &mut sealed[NONCE_LEN..],
            )
            .expect("AES-GCM seals any value under 64 GiB");
        sealed.extend_from_slice(&tag);
        sealed
    }

    /// The plaintext of `sealed`, written by [`Keyring::seal`] for the same
    /// `cache_key` and `format` under any key of this keyring.
    pub fn open(
        &self,
        cache_key: &str,
        format: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, EncryptionError> {
        self.open_with_index(cache_key, format, sealed)
            .map(|(plaintext, _)| plaintext)
    }

    /// [`Keyring::open`], also saying which key opened the value: 0 for the
    /// current key, `i` for `previous[i - 1]`. More than 0 means the entry
    /// predates a rotation, and rewriting it moves it to the current key.
    pub fn open_with_index(
        &self,
        cache_key: &str,
        format: &str,
        sealed: &[u8],
    ) -> Result<(Vec<u8>, usize), EncryptionError> {
        self.open_with_aad(&self.interop_aad(cache_key, format), sealed)
    }

    /// [`Keyring::open_with_index`] with the AAD built from `components`
    /// (as cachekit-py's auto mode, with five), for tests of other layouts.
    #[doc(hidden)]
    pub fn open_with_components(
        &self,
        components: &[&str],
        sealed: &[u8],
    ) -> Result<(Vec<u8>, usize), EncryptionError> {
        self.open_with_aad(&aad_v3(components), sealed)
    }

    /// The AAD of an interop entry: tenant, cache key, format, not compressed.
    fn interop_aad(&self, cache_key: &str, format: &str) -> Vec<u8> {
        aad_v3(&[&self.tenant, cache_key, format, NOT_COMPRESSED])
    }

    /// Opens `sealed` under `aad`, trying each key in order.
    fn open_with_aad(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<(Vec<u8>, usize), EncryptionError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(EncryptionError::new(
                EncryptionErrorKind::Undecryptable,
                format!(
                    "cannot decrypt: the value is {} bytes, shorter than the {} of a nonce and \
                     a tag, so it is not an encrypted entry; let it be rewritten",
                    sealed.len(),
                    NONCE_LEN + TAG_LEN
                ),
            ));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = GenericArray::from_slice(nonce);
        let tag = GenericArray::from_slice(tag);
        let mut buffer = Vec::with_capacity(ciphertext.len());
        for (index, cipher) in self.ciphers.iter().enumerate() {
            // Refilled for every key, so nothing rests on what a failed try
            // leaves in the buffer.
            buffer.clear();
            buffer.extend_from_slice(ciphertext);
            if cipher
                .decrypt_in_place_detached(nonce, aad, &mut buffer, tag)
                .is_ok()
            {
                return Ok((buffer, index));
            }
        }
        Err(EncryptionError::new(
            EncryptionErrorKind::Undecryptable,
            format!(
                "cannot decrypt: tampered, written under another key, or encrypted with a key \
                 not configured (tried the current key and {} previous); if the key was \
                 rotated, add the old one to the previous keys",
                self.ciphers.len() - 1
            ),
        ))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("tenant", &self.tenant)
            .field("previous_keys", &(self.ciphers.len() - 1))
            .finish()
    }
}
