//! The one error type of cachekit, with kinds a caller can match on.

use std::fmt;
use std::time::Duration;

use crate::capability::Capability;

/// Result alias for cachekit operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause of a backend failure, as kept in [`Error::Unavailable`]: the
/// client's own error (an `io::Error`, a protocol error), or a message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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

    /// The backend cannot be reached or refused the operation. Temporary.
    #[error("the {backend} backend is unavailable: {source}")]
    Unavailable {
        /// Name of the backend.
        backend: &'static str,
        /// Which of the backend's failure domains failed (a memcached
        /// server, by its place in the server list), when the failure is
        /// confined to one; see [`Backend::failure_domains`](crate::Backend::failure_domains).
        domain: Option<usize>,
        /// What failed: the client's error, kept for `source()`.
        #[source]
        source: BoxError,
    },

    /// The backend answered the operation with an error that trying again
    /// will not fix: a key of another type, a failing script, a command the
    /// server refuses. Not temporary: it neither counts as a backend failure
    /// nor is retried.
    #[error("the {backend} backend rejected the operation: {source}")]
    Rejected {
        /// Name of the backend.
        backend: &'static str,
        /// The server's answer: the client's error, kept for `source()`.
        #[source]
        source: BoxError,
    },

    /// The backend did not answer in time. Temporary.
    #[error("the {backend} backend did not answer {operation} within {after:?}")]
    Timeout {
        /// Name of the backend.
        backend: &'static str,
        /// The operation that timed out (`get`, `set`, ...).
        operation: &'static str,
        /// The timeout that expired.
        after: Duration,
        /// Which of the backend's failure domains did not answer, when the
        /// failure is confined to one (as in [`Error::Unavailable`]).
        domain: Option<usize>,
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

    /// An entry read with encryption on did not decrypt, and the cache is
    /// `fail_closed` (otherwise such an entry is a miss).
    #[error(
        "the entry {key:?} does not decrypt: it was tampered with, written unencrypted, or encrypted under a master key that is not configured (add that key to `previous_master_keys`)"
    )]
    Undecryptable {
        /// The backend key of the entry.
        key: String,
    },

    /// An argument or value is not interop data, or an interop name breaks
    /// the segment rules (see [`interop`](crate::interop)).
    #[error(transparent)]
    Interop(#[from] crate::interop::InteropError),

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

    /// An [`Error::Unavailable`] of `backend`, caused by `source` (the
    /// client's error, or a message), confined to no failure domain.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            backend,
            domain: None,
            source: source.into(),
        }
    }

    /// An [`Error::Rejected`] of `backend`, caused by `source` (the
    /// server's error, or a message).
    pub fn rejected(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Rejected {
            backend,
            source: source.into(),
        }
    }

    /// An [`Error::Timeout`] of `backend`'s `operation` after `after`,
    /// confined to no failure domain.
    pub fn timeout(backend: &'static str, operation: &'static str, after: Duration) -> Self {
        Error::Timeout {
            backend,
            operation,
            after,
            domain: None,
        }
    }

    /// This error, confined to failure domain `domain` (an
    /// [`Error::Unavailable`] or [`Error::Timeout`]; others are unchanged).
    pub fn in_domain(mut self, domain: usize) -> Self {
        if let Error::Unavailable { domain: at, .. } | Error::Timeout { domain: at, .. } = &mut self
        {
            *at = Some(domain);
        }
        self
    }

    /// Whether the error may pass if the operation is tried again: the
    /// backend was down or slow ([`Error::Unavailable`], [`Error::Timeout`]),
    /// as opposed to bad input or configuration. Only these count as the
    /// backend's failures (the circuit breaker) and are retried.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }

    /// The error's kind in one word: `unavailable`, `circuit_open` (an
    /// `Unavailable` from an open breaker), `timeout`, `rejected`,
    /// `invalid_key`, `value_too_large`, `codec`, `config`, `unsupported`,
    /// `lock_contended`, `undecryptable` or `interop`; the `kind` label of
    /// the error metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unavailable { source, .. } if source.is::<crate::CircuitOpen>() => {
                "circuit_open"
            }
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::Rejected { .. } => "rejected",
            Error::InvalidKey { .. } => "invalid_key",
            Error::ValueTooLarge { .. } => "value_too_large",
            Error::Codec(_) => "codec",
            Error::Config { .. } => "config",
            Error::Unsupported { .. } => "unsupported",
            Error::LockContended { .. } => "lock_contended",
            Error::Undecryptable { .. } => "undecryptable",
            Error::Interop(_) => "interop",
        }
    }

    /// The failure domain a temporary error is confined to, if any.
    pub fn domain(&self) -> Option<usize> {
        match self {
            Error::Unavailable { domain, .. } | Error::Timeout { domain, .. } => *domain,
            _ => None,
        }
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
