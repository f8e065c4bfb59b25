//! The error of interop encoding and decoding: what is wrong and how to fix it.

use std::fmt;

/// A value that interop mode cannot hash, write or read, with what is wrong
/// and how to fix it; naming the argument it is about, when there is one.
///
/// Interop mode fails loud: a value Python would refuse is never coerced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InteropError {
    /// The message, with the argument's name in front when known.
    reason: String,
    /// Whether the input is a cachekit-py auto-mode (`CK`) frame.
    python_frame: bool,
}

impl InteropError {
    /// An error saying `reason` (what is wrong and how to fix it).
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        InteropError {
            reason: reason.into(),
            python_frame: false,
        }
    }

    /// The error for stored bytes that are a cachekit-py auto-mode frame.
    pub(crate) fn python_frame() -> Self {
        InteropError {
            reason: "the stored value is a cachekit-py auto-mode (CK) frame, not an interop \
                     entry: the Python writer must use `interop=` (with the same namespace) \
                     so that both SDKs store plain MessagePack"
                .into(),
            python_frame: true,
        }
    }

    /// This error, about the argument `name`: the message starts with
    /// "argument `name`: ".
    pub fn for_argument(self, name: &str) -> Self {
        self.prefixed(format_args!("argument `{name}`"))
    }

    /// This error, about the argument at `index` of a call ("argument 0: ").
    pub(crate) fn for_index(self, index: usize) -> Self {
        self.prefixed(format_args!("argument {index}"))
    }

    fn prefixed(self, what: fmt::Arguments<'_>) -> Self {
        InteropError {
            reason: format!("{what}: {}", self.reason),
            python_frame: self.python_frame,
        }
    }

    /// What is wrong and how to fix it (the whole message).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether the stored bytes are a cachekit-py auto-mode (`CK`) frame
    /// rather than an interop entry: the Python side is misconfigured.
    pub fn is_python_frame(&self) -> bool {
        self.python_frame
    }
}

/// Lets [`InteropValue::from_serde`](super::InteropValue::from_serde) and
/// `Serialize` implementations report their own errors.
impl serde::ser::Error for InteropError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        InteropError::new(msg.to_string())
    }
}

/// Lets the `Deserialize` implementations of interop types report errors
/// through any deserializer that carries this error.
impl serde::de::Error for InteropError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        InteropError::new(msg.to_string())
    }
}
