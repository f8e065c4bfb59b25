//! The cachekit framework under the `cachekit` facade: the [`Cache`]
//! handle and its builder, the in-process [`MemoryBackend`], configuration,
//! the reliability layer and the runtime of `#[cache]`.
//!
//! Users depend on the `cachekit` facade crate, which re-exports the user
//! API below and adds the backends selected by its cargo features. Backend
//! authors implement [`Backend`] with what the [`backend`] module gathers.

pub mod backend;
mod blocking;
mod cache;
mod cached_fn;
mod capability;
mod codec;
mod coherence;
mod config;
pub mod encryption;
mod error;
mod flight;
mod health;
pub mod interop;
mod invalidation;
pub mod key;
mod l1;
mod layer;
mod lock_guard;
mod memory;
mod redact;
mod resolve;
mod server_list;
mod stats;
mod store;
#[cfg(test)]
mod test_rng;
pub mod testing;
mod throttle;
mod trace;

pub use backend::{Backend, KeyTtl, LockToken};
pub(crate) use backend::{Identity, Lock, Touch, TtlInspect};
pub use cache::{Cache, CacheBuilder, Revalidate};
pub use cached_fn::init;
pub use capability::{Capabilities, Capability};
pub use config::ConfigSource;
pub use error::{ConfigOrigin, Error, Result};
pub use health::{BackendHealth, DomainHealth, DomainState, Health, HealthReport, health};
pub use l1::L1Config;
pub use layer::{BreakerState, CircuitOpen, ReliabilityConfig, ReliabilityLayer};
pub use lock_guard::LockGuard;
pub use memory::MemoryBackend;
pub use resolve::{clear_default_backend, set_default_backend};
pub use stats::{BackendStats, CacheStats, EventStats, L1Stats, NamedStats, Stats, stats};

/// What the code `#[cache]` generates, and this workspace's own tests and
/// tools, reach inside the core; not an API.
#[doc(hidden)]
pub mod __private {
    pub use crate::cache::EncryptionSettings;
    pub use crate::cached_fn::{
        BatchMap, CacheAll, CacheOk, CacheOption, CacheResult, CacheSome, CachedFn, FnSpec,
        IntoBackend, WithL1, WithoutL1, check_l1_value,
    };
    pub use crate::capability::{CAPABILITY_USES, CapabilityUse, WhenMissing};
    pub use crate::config::CoreSettings;
    pub use crate::resolve::{ResolvedFrom, factories, resolve_with};

    /// The stored entry's envelope, for tests that forge entries.
    pub mod codec {
        pub use crate::codec::*;
    }
}
