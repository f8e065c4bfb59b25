//! The error of the encryption layer: a kind to match on and a message
//! that says what to do. No message ever holds key material.

/// What went wrong in the encryption layer, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncryptionErrorKind {
    /// The master key is not hex, or has the wrong length.
    InvalidKey,
    /// The tenant (the deployment UUID) is not in the required form.
    InvalidTenant,
    /// More previous keys were given than a keyring keeps.
    TooManyPreviousKeys,
    /// A sealed value does not open under any configured key.
    Undecryptable,
}

/// An encryption failure: its [`kind`](EncryptionError::kind) and a message
/// that says what to do next. Messages never contain key bytes or key hex.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EncryptionError {
    kind: EncryptionErrorKind,
    message: String,
}

impl EncryptionError {
    /// What went wrong.
    pub fn kind(&self) -> EncryptionErrorKind {
        self.kind
    }

    /// An error of `kind` with `message`, which must hold no secret.
    pub(crate) fn new(kind: EncryptionErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
