//! Why a value cannot be written or read: one message type for the shape
//! walk (a serde `Serializer`) and the reader (a serde `Deserializer`),
//! which serde asks each to build from a message.

use std::fmt;

use serde::{de, ser};

/// A value that cannot be written, or bytes that cannot be read, and why.
#[derive(Debug)]
pub(super) struct Invalid(pub(super) String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl ser::Error for Invalid {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Invalid(msg.to_string())
    }
}

impl de::Error for Invalid {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Invalid(msg.to_string())
    }
}
