//! Fresh nonces for AES-256-GCM.

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;

/// Bytes of an AES-GCM nonce (96 bits).
pub(crate) const NONCE_LEN: usize = 12;

/// A random 96-bit nonce from the operating system's generator.
///
/// The OS generator rather than `rand::rng()`: both are cryptographically
/// secure, but `rand`'s thread generator keeps its state in the process and
/// (in rand 0.9) is not reseeded on `fork`, so a forked child would repeat
/// its parent's nonces under the same key, which breaks GCM. The OS
/// generator has no state to copy; it costs one system call a seal. Random
/// nonces stay safe up to about 2^32 seals per key (NIST SP 800-38D), far
/// more than a key's life between rotations.
///
/// # Panics
///
/// If the OS generator fails, which it does not on supported platforms once
/// the system has booted.
pub(crate) fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ() {
        assert_ne!(fresh_nonce(), fresh_nonce());
    }
}
