//! Encryption at rest of cache entries, byte-compatible with cachekit-py
//! 0.24.1 (`@cache.secure` in interop mode).
//!
//! A [`MasterKey`] (hex, at least 32 bytes) and a tenant ([`tenant_of`])
//! give a [`Keyring`]: the AES-256 key derived from the current master key
//! and from up to three previous ones, for rotation. [`Keyring::seal`]
//! writes `nonce(12) ‖ ciphertext ‖ tag(16)` under AES-256-GCM with a fresh
//! random nonce, authenticated with an AAD that binds the value to its
//! tenant, cache key and format; [`Keyring::open`] tries the current key,
//! then each previous key in order.
//!
//! Key material lives only in storage wiped on drop: the master key's bytes,
//! each derived key, and each cipher's AES round keys and GHASH key. The
//! one exception is the HMAC state inside HKDF while a key is derived
//! (RustCrypto's `hmac` does not wipe it); it lives on the stack only during
//! [`Keyring::new`].

mod aad;
mod derive;
mod error;
mod keyring;
mod master_key;
mod nonce;
mod tenant;

pub use error::{EncryptionError, EncryptionErrorKind};
pub use keyring::{Keyring, MAX_PREVIOUS_KEYS};
pub use master_key::MasterKey;
pub use tenant::tenant_of;
