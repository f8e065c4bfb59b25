//! What a cache's entries look like in the backend: the value's format
//! (cachekit's own envelope, or interop's plain MessagePack) and, with
//! encryption on, the AES-256-GCM seal around it.
//!
//! L1 holds what is inside the seal: a copy is decrypted once, when it is
//! read from the backend or written, and L1 hits never decrypt.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, Opened, Stamp};
use crate::encryption::Keyring;
use crate::{Error, Result, interop};

/// The `format` component of a sealed native entry's associated data: it
/// binds the entry to cachekit's envelope, so that an interop entry (whose
/// component is `msgpack`, as in Python) never opens as one.
const NATIVE_FORMAT: &str = "cachekit-envelope";
/// The `format` component of a sealed interop entry, as cachekit-py writes it.
const INTEROP_FORMAT: &str = "msgpack";
/// What sealing adds: the 12-byte nonce and the 16-byte tag.
const SEAL_OVERHEAD: usize = 12 + 16;

/// How values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// serde + bincode in cachekit's versioned envelope (see [`codec`]):
    /// every feature (stale windows, tags), Rust readers only.
    Native,
    /// One canonical MessagePack document and nothing else, as cachekit-py
    /// writes in interop mode (see [`interop`]): readable by Python, but
    /// with no room for a stale window or tags.
    Interop,
}

/// A cache's format and, with encryption on, its keys.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) format: Format,
    pub(crate) seal: Option<Seal>,
}

/// Encryption of a cache's entries.
#[derive(Debug)]
pub(crate) struct Seal {
    pub(crate) keyring: Keyring,
    /// An entry that does not decrypt is an error, not a miss.
    pub(crate) fail_closed: bool,
}

/// An entry that did not decrypt, with whether that is an error.
#[derive(Debug)]
pub(crate) struct Undecryptable {
    pub(crate) fail_closed: bool,
}

impl Wire {
    /// The bytes of `value` as this format writes them, unsealed; with a
    /// stale window and tags' generations in a native envelope. An interop
    /// entry has no room for either: asking for one is an
    /// [`Error::Codec`], never an entry that drops it.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        stamp: Stamp,
        tags: &[u64],
    ) -> Result<Bytes> {
        match self.format {
            Format::Native => codec::encode_tagged(value, stamp, tags),
            Format::Interop if !tags.is_empty() => Err(Error::Codec(
                "an interop entry cannot carry tags: Python readers would ignore them; use a native cache for tagged entries".into(),
            )),
            Format::Interop if !stamp.stale_for.is_zero() => Err(Error::Codec(
                "an interop entry cannot record a stale window: use a native cache to serve stale values".into(),
            )),
            Format::Interop => Ok(Bytes::from(interop::to_msgpack(value)?)),
        }
    }

    /// The value's part of encoded `bytes`: what L1 keeps.
    pub(crate) fn payload_of(&self, bytes: &Bytes) -> Bytes {
        match self.format {
            Format::Native => codec::payload_of(bytes),
            Format::Interop => bytes.clone(),
        }
    }

    /// `bytes` as stored under `key`: sealed when encryption is on.
    pub(crate) fn seal(&self, key: &str, bytes: Bytes) -> Bytes {
        match &self.seal {
            Some(seal) => Bytes::from(seal.keyring.seal(key, self.aad_format(), &bytes)),
            None => bytes,
        }
    }

    /// The size of `len` bytes as stored: with the nonce and the tag when
    /// sealed.
    pub(crate) fn stored_len(&self, len: usize) -> usize {
        match self.seal {
            Some(_) => len + SEAL_OVERHEAD,
            None => len,
        }
    }

    /// The entry `stored` under `key`, unsealed and opened. `Ok(Err(..))`
    /// when it does not decrypt; `Err` when it is no valid entry of the
    /// format.
    pub(crate) fn open(
        &self,
        key: &str,
        stored: Bytes,
    ) -> std::result::Result<Result<Opened>, Undecryptable> {
        let bytes = match &self.seal {
            Some(seal) => match seal.keyring.open(key, self.aad_format(), &stored) {
                Ok(plain) => Bytes::from(plain),
                Err(_) => {
                    return Err(Undecryptable {
                        fail_closed: seal.fail_closed,
                    });
                }
            },
            None => stored,
        };
        Ok(match self.format {
            Format::Native => codec::open(bytes),
            // No envelope: nothing says when it expires (an L1 copy lives
            // `l1_ttl` at most), and the payload is checked as it decodes.
            Format::Interop => Ok(Opened {
                payload: bytes,
                stamp: Stamp::default(),
                tags: Vec::new(),
            }),
        })
    }

    /// Decodes a payload of this format.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        payload: &[u8],
    ) -> std::result::Result<T, DecodeError> {
        match self.format {
            Format::Native => codec::decode_payload(payload).map_err(DecodeError::Native),
            Format::Interop => interop::from_msgpack(payload).map_err(DecodeError::Interop),
        }
    }

    fn aad_format(&self) -> &'static str {
        match self.format {
            Format::Native => NATIVE_FORMAT,
            Format::Interop => INTEROP_FORMAT,
        }
    }
}

/// Why a payload did not decode.
#[derive(Debug)]
pub(crate) enum DecodeError {
    Native(Error),
    Interop(interop::InteropError),
}

impl DecodeError {
    /// Whether the payload is a cachekit-py auto-mode frame (`CK`), which
    /// a Python service writes when its decorator lacks `interop=`.
    pub(crate) fn is_python_frame(&self) -> bool {
        matches!(self, DecodeError::Interop(error) if error.is_python_frame())
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Native(error) => error.fmt(f),
            DecodeError::Interop(error) => error.fmt(f),
        }
    }
}
