//! For backend authors: the [`Backend`] trait every storage tier
//! implements and its optional capabilities ([`TtlInspect`], [`Touch`],
//! [`Lock`]), the [`Capabilities`] a backend declares, the [`Error`]s it
//! returns and their constructors, what its health check answers
//! ([`Health`]), the settings metadata its configuration
//! declares ([`Setting`], read from a [`ConfigSource`]), key validation,
//! registration with configuration ([`BackendFactory`]), and, with the
//! `testkit` feature, the `testkit` module (conformance trials, fault
//! injection, real servers on loopback).
#![cfg_attr(feature = "testkit", doc = "\nSee [`testkit`].")]
//!
//! Users of cachekit need none of this beyond [`Backend`] itself, which the
//! crate root exports.

use std::any::TypeId;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::cache::ENCRYPTION_SETTINGS;
pub use crate::capability::{Capabilities, Capability};
pub use crate::config::{CORE_SETTINGS, ConfigSource, Setting, SettingKind, seconds};
pub use crate::error::{BoxError, Error, Result};
pub use crate::health::{DomainHealth, DomainState, Health};
pub use crate::invalidation::{Invalidation, InvalidationSender, Invalidations};
pub use crate::key::{MAX_KEY_LEN, validate as validate_key};
pub use crate::layer::RELIABILITY_SETTINGS;
pub use crate::redact::redact_url;
pub use crate::resolve::{BackendFactory, BuildBackend};
pub use crate::server_list::host_port;
pub use crate::stats::count_event;

/// Serde for a list of `host:port` servers in settings (see [`host_port`]).
pub mod server_list {
    pub use crate::server_list::{deserialize, serialize};
}
#[doc(no_inline)]
pub use async_trait::async_trait;
#[doc(no_inline)]
pub use bytes::Bytes;

/// The test kit for backend crates (feature `testkit`).
#[cfg(feature = "testkit")]
#[path = "testkit/mod.rs"]
pub mod testkit;

/// A place where cached bytes live: in process, Memcached, Redis, a directory.
///
/// Backends store opaque bytes under keys that [`Cache`](crate::Cache) has
/// already made safe (see [`key`](crate::key)); a backend given a key directly
/// still validates it and answers [`Error::InvalidKey`].
/// Optional operations are separate traits reached through the `as_*` hooks,
/// which must agree with [`Backend::capabilities`] (the conformance suite checks).
#[async_trait]
pub trait Backend: fmt::Debug + Send + Sync {
    /// Short lowercase name, as used by `CACHEKIT_BACKEND` (`memory`, `memcached`, ...).
    fn name(&self) -> &'static str;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// The value under `key`, or `None` on a miss.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Stores `value` under `key`, expiring after `ttl` (`None`: never).
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()>;

    /// Removes `key`; `true` if it was there.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Whether `key` is present, without transferring the value where the backend allows.
    async fn exists(&self, key: &str) -> Result<bool>;

    /// Checks the backend now, around the circuit breaker: `Ok` when it can
    /// serve, with how long the check took and, for a backend of several
    /// failure domains, the state of each ([`DomainHealth`]: up with its
    /// latency, down with the error, or ejected since when); `Err` when it
    /// cannot serve at all (every domain down). A memcached fleet with one
    /// server of three down answers `Ok`, that server listed down.
    ///
    /// A backend reports its own name and latency ([`Health::new`],
    /// [`Health::with_latency`]); the reliability layer over it sets the
    /// breaker's state and bounds the check by its deadline.
    async fn health(&self) -> Result<Health>;

    /// The values under `keys`, in order. The default asks one key at a time;
    /// network backends override it with one round trip per server.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }

    /// Stores every `(key, value)` of `entries`, expiring after `ttl`
    /// (`None`: never). The default stores one entry at a time, stopping at
    /// the first error; network backends override it with one round trip per
    /// server. Not atomic: on an error, some entries may be stored.
    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        for (key, value) in entries {
            self.set(key, value.clone(), ttl).await?;
        }
        Ok(())
    }

    /// The longest one attempt of an operation can take, when the backend
    /// enforces a timeout of its own (or never waits). The reliability
    /// layer adds no timer to an attempt this bound ends within its
    /// deadline (one timer per operation less on the hot path).
    fn operation_timeout(&self) -> Option<Duration> {
        None
    }

    /// Whether the backend retries failed operations itself (memcached
    /// does, to fail over to another server); the reliability layer then
    /// does not retry on top.
    fn retries_itself(&self) -> bool {
        false
    }

    /// How many failure domains the backend has: parts that fail on their
    /// own, such as the servers of a memcached fleet (default 1). Its
    /// errors say which one failed ([`Error::in_domain`](crate::Error::in_domain)),
    /// and the circuit breaker opens only when every domain fails: one bad
    /// server does not cut the keys of the healthy ones off.
    fn failure_domains(&self) -> usize {
        1
    }

    /// The failure domain that serves `key` now (default 0). The layer
    /// charges it with a failure of `key`'s operation that the backend's
    /// error does not place, such as the layer's own timeout.
    fn failure_domain(&self, key: &str) -> usize {
        let _ = key;
        0
    }

    /// The text the backend puts before every key it is given, verbatim
    /// (`key_prefix` of memcached and Redis; default `""`). Interop mode
    /// refuses a backend with one: other languages' clients would not see
    /// the prefix and would read other keys.
    fn key_prefix(&self) -> &str {
        ""
    }

    /// Which instance this is, when clones share one: a backend whose
    /// clones share their state (connections, the stored entries) returns
    /// [`Identity::of`] that state, so that every clone, however wrapped in
    /// an `Arc`, gets the same reliability layer. `None` (the default):
    /// each `Arc` is an instance of its own.
    fn identity(&self) -> Option<Identity> {
        None
    }

    /// Notices of entries changed by other clients of a shared backend,
    /// when the backend can tell (Redis with `l1_invalidation` on): each
    /// call is a new listener. Caches in front of the backend drop their
    /// in-process copies on them, so that a copy never outlives a change
    /// made elsewhere by more than the notice's trip. `None` (the default):
    /// the backend cannot tell, and copies live their `l1_ttl`.
    fn invalidations(&self) -> Option<Invalidations> {
        None
    }

    /// TTL inspection, when [`Capabilities::ttl_inspect`] is set.
    fn as_ttl_inspect(&self) -> Option<&dyn TtlInspect> {
        None
    }

    /// Touch, when [`Capabilities::touch`] is set.
    fn as_touch(&self) -> Option<&dyn Touch> {
        None
    }

    /// Locking, when [`Capabilities::lock`] is set.
    fn as_lock(&self) -> Option<&dyn Lock> {
        None
    }
}

/// The remaining lifetime of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// The key is not there.
    Missing,
    /// The key never expires.
    Forever,
    /// The key expires after this long.
    Expires(Duration),
}

/// Reading a key's remaining time to live.
#[async_trait]
pub trait TtlInspect: Send + Sync {
    /// The remaining lifetime of `key`.
    async fn ttl(&self, key: &str) -> Result<KeyTtl>;
}

/// Refreshing a key's time to live without rewriting its value.
#[async_trait]
pub trait Touch: Send + Sync {
    /// Sets the TTL of `key` to `ttl` (`None`: never expire); `false` if the key is not there.
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool>;
}

/// A lock with a lease: held until released or until the lease runs out.
#[async_trait]
pub trait Lock: Send + Sync {
    /// Takes the lock on `key` for `lease`; `None` if another holder has it.
    async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>>;

    /// Releases the lock on `key` if `token` still holds it; `true` if it did.
    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool>;

    /// Restarts the lease of the lock on `key` at `lease` from now, if
    /// `token` still holds it; `false` if it does not (released, or its
    /// lease ran out), and then nothing changes.
    async fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool>;
}

/// Proof of holding a lock; only its holder can release or extend it.
///
/// A backend may give each acquisition a fencing value
/// ([`LockToken::fence`]): a number that grows with every acquisition of
/// the lock, so that a store guarded by the lock can refuse writes from a
/// holder whose lease has run out (it carries a smaller fence than the
/// holder after it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockToken {
    token: String,
    fence: Option<u64>,
}

impl LockToken {
    /// A token from the backend's own representation.
    pub fn new(token: impl Into<String>) -> Self {
        LockToken {
            token: token.into(),
            fence: None,
        }
    }

    /// A fresh token, unique with overwhelming probability across processes.
    pub fn random() -> Self {
        Self::new(crate::key::random_token())
    }

    /// This token, carrying the fencing value `fence` of its acquisition.
    pub fn with_fence(mut self, fence: u64) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The token as a string.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The fencing value of this acquisition, if the backend gives one
    /// (Redis does): larger than that of every earlier acquisition of the
    /// same lock.
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }
}

/// What tells one backend instance from another: the address and type of
/// the state its clones share (see [`Backend::identity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    address: usize,
    state: TypeId,
}

impl Identity {
    /// The identity of the instance whose clones share `state`.
    pub fn of<T: ?Sized + 'static>(state: &Arc<T>) -> Self {
        Identity {
            address: Arc::as_ptr(state).cast::<()>().addr(),
            state: TypeId::of::<T>(),
        }
    }
}
