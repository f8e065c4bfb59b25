//! Encryption at rest of cache entries, byte-compatible with cachekit-py
//! 0.24.1 (`@cache.secure` in interop mode).
//!
//! A [`MasterKey`] (hex, at least 32 bytes), given to
//! [`CacheBuilder::master_key`](crate::CacheBuilder::master_key) or set as
//! `CACHEKIT_MASTER_KEY`, and a tenant (the deployment's UUID, else
//! `default`) give the AES-256 key, derived with HKDF-SHA256, and up to
//! three previous ones, for rotation. An entry is stored as
//! `nonce(12) ‖ ciphertext ‖ tag(16)` under AES-256-GCM with a fresh random
//! nonce, authenticated with associated data that binds it to its tenant,
//! cache key and format; a read tries the current key, then each previous
//! key in order. docs/interop.md says how to turn it on and rotate keys.
//!
//! Key material held here is wiped on drop: the master key's bytes, each
//! derived key, and each cipher's AES round keys and GHASH key. The one
//! exception is the HMAC state inside HKDF while a key is derived
//! (RustCrypto's `hmac` does not wipe it); it lives on the stack only during
//! [`Keyring::new`]. A key given as configuration text also lives where
//! that text does (an environment variable stays in the process's
//! environment).

mod aad;
mod derive;
mod error;
mod keyring;
mod master_key;
mod nonce;
mod tenant;

pub use error::{EncryptionError, EncryptionErrorKind};
// The cache holds the keyring (hidden: reachable for this workspace's
// tests and tools, not an API).
pub use keyring::{Keyring, MAX_PREVIOUS_KEYS};
pub use master_key::MasterKey;
pub use tenant::tenant_of;
