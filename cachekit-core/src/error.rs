//! The one error type of cachekit, with kinds a caller can match on.

use std::fmt;
use std::time::Duration;

use crate::capability::Capability;

/// Result alias for cachekit operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in cachekit. Each message says what to do next.
///
/// Cached functions (`Cache::get_or_insert_with`) never return these for
/// backend trouble: they run the function uncached instead. Explicit calls
/// (`get`, `set`, `lock`, ...) do return them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend lacks a capability the operation needs.
    #[error("the {backend} backend does not support {}: {}", .capability.operation(), .capability.alternative())]
    Unsupported {
        /// Name of the backend, as in `Backend::name`.
        backend: &'static str,
        /// The missing capability.
        capability: Capability,
    },

    /// A configuration value is missing or malformed.
    #[error("invalid setting `{setting}` (from {origin}): {reason}")]
    Config {
        /// The setting, as in the config file (`memcached.timeout`).
        setting: String,
        /// Where its value came from.
        origin: ConfigOrigin,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The backend cannot be reached or refused the operation.
    #[error("the {backend} backend is unavailable: {reason}")]
    Unavailable {
        /// Name of the backend.
        backend: &'static str,
        /// What failed.
        reason: String,
    },

    /// The backend did not answer in time.
    #[error("the {backend} backend did not answer {operation} within {after:?}")]
    Timeout {
        /// Name of the backend.
        backend: &'static str,
        /// The operation that timed out (`get`, `set`, ...).
        operation: &'static str,
        /// The timeout that expired.
        after: Duration,
    },

    /// The encoded value exceeds the backend's size limit; nothing was sent.
    #[error(
        "value of {size} bytes exceeds the backend limit of {limit} bytes; store a smaller value or raise the limit"
    )]
    ValueTooLarge {
        /// Encoded size of the value in bytes.
        size: usize,
        /// The backend's limit in bytes.
        limit: usize,
    },

    /// The key cannot be sent to the backend as it is.
    #[error("invalid key {key:?}: {reason}; go through `Cache`, which hashes unsafe keys")]
    InvalidKey {
        /// The key, shortened to at most 64 characters for the message.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A value could not be encoded, or stored bytes could not be decoded.
    #[error("codec error: {0}")]
    Codec(String),

    /// Another holder has the lock.
    #[error("the lock on {key:?} is held by another holder; retry after its lease expires")]
    LockContended {
        /// The locked key.
        key: String,
    },
}

impl Error {
    /// Builds an [`Error::InvalidKey`], shortening long keys for the message.
    pub fn invalid_key(key: &str, reason: &'static str) -> Self {
        let key = match key.char_indices().nth(64) {
            Some((cut, _)) => format!("{}...", &key[..cut]),
            None => key.to_owned(),
        };
        Error::InvalidKey { key, reason }
    }

    /// Whether the error says the backend is down or slow (as opposed to bad input).
    pub fn is_backend_failure(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }
}

/// Where a configuration value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigOrigin {
    /// The built-in default.
    Default,
    /// A config file.
    File(std::path::PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A value set in code (a builder or a config struct).
    Code,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::Default => f.write_str("the default"),
            ConfigOrigin::File(path) => write!(f, "file {}", path.display()),
            ConfigOrigin::Env(var) => write!(f, "environment variable {var}"),
            ConfigOrigin::Code => f.write_str("code"),
        }
    }
}
