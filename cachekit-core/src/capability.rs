//! What a backend can do, declared once as a `const` and checked by the framework.

use std::fmt;
use std::time::Duration;

/// What a backend can do. Each backend declares one as a `const`; the
/// framework reads it to fall back or to return [`Error::Unsupported`](crate::Error::Unsupported),
/// and the conformance suite checks that the backend's hooks agree with it.
///
/// A plain struct rather than a bit set so that a declaration reads like a
/// table (the OpenDAL `Capability` style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Entries can expire after a time to live.
    pub ttl: bool,
    /// The remaining time to live of an entry can be read ([`TtlInspect`](crate::TtlInspect)).
    pub ttl_inspect: bool,
    /// The time to live of an entry can be refreshed without rewriting it ([`Touch`](crate::Touch)).
    pub touch: bool,
    /// The backend offers a lock with a lease ([`Lock`](crate::Lock)).
    pub lock: bool,
    /// Entries survive a restart of the backend.
    pub persistent: bool,
    /// Entries are visible to other processes.
    pub shared: bool,
    /// Longest time to live the backend keeps; longer ones are clamped to it. `None`: no limit.
    pub max_ttl: Option<Duration>,
    /// Largest value in bytes, envelope included. `None`: no limit.
    pub max_value_size: Option<usize>,
    /// Longest key in bytes.
    pub max_key_len: usize,
}

impl Capabilities {
    /// Nothing optional: no TTL, no inspection, no touch, no lock, volatile and
    /// process-local, no size limits, 250-byte keys. Start declarations from it.
    pub const NONE: Capabilities = Capabilities {
        ttl: false,
        ttl_inspect: false,
        touch: false,
        lock: false,
        persistent: false,
        shared: false,
        max_ttl: None,
        max_value_size: None,
        max_key_len: 250,
    };

    /// Whether the backend has `capability`.
    pub const fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::Ttl => self.ttl,
            Capability::TtlInspect => self.ttl_inspect,
            Capability::Touch => self.touch,
            Capability::Lock => self.lock,
        }
    }

    /// `ttl` clamped to `max_ttl`, with zero meaning "no expiry".
    pub fn clamp_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        match (ttl, self.max_ttl) {
            (None, _) => None,
            (Some(ttl), _) if ttl.is_zero() => None,
            (Some(ttl), Some(max)) => Some(ttl.min(max)),
            (Some(ttl), None) => Some(ttl),
        }
    }
}

/// An optional operation a backend may lack, named in [`Error::Unsupported`](crate::Error::Unsupported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Expiry after a time to live.
    Ttl,
    /// Reading an entry's remaining time to live.
    TtlInspect,
    /// Refreshing an entry's time to live.
    Touch,
    /// A lock with a lease.
    Lock,
}

impl Capability {
    /// The operation that needs the capability, for messages.
    pub const fn operation(self) -> &'static str {
        match self {
            Capability::Ttl => "expiry (ttl)",
            Capability::TtlInspect => "TTL inspection (ttl)",
            Capability::Touch => "refreshing a TTL (touch)",
            Capability::Lock => "locking (lock)",
        }
    }

    /// What to use instead, for messages.
    pub const fn alternative(self) -> &'static str {
        match self {
            Capability::Ttl => {
                "store without a TTL or use a backend with expiry (Redis, Memcached, file)"
            }
            Capability::TtlInspect => "use a backend with TTL inspection (Redis or file)",
            Capability::Touch => {
                "set the value again with the new TTL, or use Redis, Memcached or file"
            }
            Capability::Lock => {
                "use a backend with locking (Redis for several hosts); cached functions fall back to in-process single-flight"
            }
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.operation())
    }
}

/// What an operation does on a backend that lacks the capability it needs.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenMissing {
    /// It returns [`Error::Unsupported`](crate::Error::Unsupported).
    Unsupported,
    /// It falls back to what this says ("in-process single-flight").
    FallsBack(&'static str),
}

/// An operation that needs a capability, and what it does without it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityUse {
    /// The operation, as users call it.
    pub operation: &'static str,
    /// The capability it needs.
    pub needs: Capability,
    /// What it does on a backend without it.
    pub without: WhenMissing,
}

/// Every operation that needs a capability, and what it does without it.
/// `cargo xtask docs` writes docs/backends.md from this table, and
/// `tests/when_missing.rs` runs each row against a backend that lacks the
/// capability, so the table, the page and the code agree.
#[doc(hidden)]
pub const CAPABILITY_USES: &[CapabilityUse] = &[
    CapabilityUse {
        operation: "`#[cache]` functions, `Cache::get_or_insert_with` on a miss",
        needs: Capability::Lock,
        without: WhenMissing::FallsBack(
            "in-process single-flight (concurrent misses for one key run the loader once per process, not once per fleet)",
        ),
    },
    CapabilityUse {
        operation: "stale-while-revalidate and early refresh (`#[cache(stale = ...)]`, `Cache::get_or_revalidate`)",
        needs: Capability::Lock,
        without: WhenMissing::FallsBack(
            "one background refresh per process (each process sharing the backend refreshes a stale key once, not once per fleet)",
        ),
    },
    CapabilityUse {
        operation: "`Cache::lock`, `Cache::lock_wait`",
        needs: Capability::Lock,
        without: WhenMissing::Unsupported,
    },
    CapabilityUse {
        operation: "`Cache::ttl`",
        needs: Capability::TtlInspect,
        without: WhenMissing::Unsupported,
    },
    CapabilityUse {
        operation: "`Cache::touch`",
        needs: Capability::Touch,
        without: WhenMissing::Unsupported,
    },
    CapabilityUse {
        operation: "`Cache::set` with a TTL (or a default TTL)",
        needs: Capability::Ttl,
        without: WhenMissing::Unsupported,
    },
    CapabilityUse {
        operation: "`#[cache(ttl = ...)]` functions, `Cache::get_or_insert_with` with a TTL",
        needs: Capability::Ttl,
        without: WhenMissing::FallsBack(
            "running the loader uncached on every call, with a rate-limited warning (nothing is stored that would never expire)",
        ),
    },
];
