//! Key derivation as cachekit-py's `derive_domain_key`: HKDF-SHA256 from the
//! master key, bound to a domain and a tenant, and the key fingerprint.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::error::{EncryptionError, EncryptionErrorKind};

/// The domain of the AES-256-GCM key (cachekit-py also derives
/// `"authentication"` and `"cache_keys"`, which nothing on the wire uses).
pub(crate) const ENCRYPTION_DOMAIN: &str = "encryption";

/// The 32-byte key of `domain` for `tenant`: HKDF-SHA256 with the master
/// key as IKM, `domain` as info, and the salt
/// `"cachekit_v1_" ‖ u8 len(domain) ‖ domain ‖ u16-BE len(tenant) ‖ tenant`.
/// A tenant longer than 65,535 bytes, which the salt cannot frame, is refused.
pub(crate) fn derive_key(
    master: &[u8],
    domain: &str,
    tenant: &str,
) -> Result<Zeroizing<[u8; 32]>, EncryptionError> {
    let tenant_len = u16::try_from(tenant.len()).map_err(|_| {
        EncryptionError::new(
            EncryptionErrorKind::InvalidTenant,
            format!(
                "the tenant is {} bytes; at most {} fit the key derivation: use the \
                 deployment UUID",
                tenant.len(),
                u16::MAX
            ),
        )
    })?;
    // Domains are this module's constants, all far under 256 bytes.
    let domain_len = u8::try_from(domain.len()).expect("a derivation domain is under 256 bytes");
    let mut salt = Vec::with_capacity(12 + 1 + domain.len() + 2 + tenant.len());
    salt.extend_from_slice(b"cachekit_v1_");
    salt.push(domain_len);
    salt.extend_from_slice(domain.as_bytes());
    salt.extend_from_slice(&tenant_len.to_be_bytes());
    salt.extend_from_slice(tenant.as_bytes());

    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), master)
        .expand(domain.as_bytes(), &mut key[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Ok(key)
}

/// The fingerprint of a derived key, as in cachekit-py's frame headers:
/// the first 16 bytes of SHA-256(`"key_fingerprint_v1"` ‖ key).
pub(crate) fn fingerprint(derived: &[u8; 32]) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"key_fingerprint_v1")
        .chain_update(derived)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interop_vector_derives_and_fingerprints() {
        let master =
            hex::decode("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
                .unwrap();
        let key = derive_key(&master, ENCRYPTION_DOMAIN, "default").unwrap();
        assert_eq!(
            hex::encode(*key),
            "10c75a191fcd7daae2ef517cef1103469f563a7117fc92be1b44de7031494e89"
        );
        assert_eq!(
            hex::encode(fingerprint(&key)),
            "7ef7f241ea0cbcacd9e64a900c715995"
        );
    }

    #[test]
    fn the_tenant_changes_the_key() {
        let master = [0x61; 32];
        let one = derive_key(&master, ENCRYPTION_DOMAIN, "default").unwrap();
        let two = derive_key(&master, ENCRYPTION_DOMAIN, "cross-sdk-test").unwrap();
        assert_ne!(*one, *two);
        assert_eq!(
            hex::encode(fingerprint(&two)),
            "96179a9bc881aa7ca83f04b78a66afd3"
        );
    }

    #[test]
    fn tenants_the_salt_cannot_frame_are_refused() {
        let tenant = "t".repeat(usize::from(u16::MAX) + 1);
        let error = derive_key(&[0; 32], ENCRYPTION_DOMAIN, &tenant).unwrap_err();
        assert_eq!(error.kind(), EncryptionErrorKind::InvalidTenant);
    }
}
