//! The cachekit framework: the [`Backend`] trait and its optional
//! capabilities, the codec, safe keys, the in-process L1 tier, single-flight,
//! backend resolution, configuration and the [`Cache`] handle.
//!
//! Users depend on the `cachekit` facade crate, which re-exports this one and
//! adds the backends selected by its cargo features.

mod backend;
mod blocking;
mod cache;
pub mod cached_fn;
mod capability;
pub mod codec;
pub mod config;
mod error;
mod flight;
pub mod key;
mod l1;
pub mod layer;
mod lock_guard;
mod memory;
pub mod resolve;
mod stats;
mod store;
pub mod testing;
#[cfg(feature = "testkit")]
pub mod testkit;
mod throttle;

pub use backend::{Backend, Identity, KeyTtl, Lock, LockToken, Touch, TtlInspect};
pub use cache::{Cache, CacheBuilder};
pub use cached_fn::init;
pub use capability::{Capabilities, Capability};
pub use error::{BoxError, ConfigOrigin, Error, Result};
pub use l1::L1Config;
pub use layer::ReliabilityConfig;
pub use lock_guard::LockGuard;
pub use memory::MemoryBackend;
pub use resolve::{clear_default_backend, set_default_backend};
pub use stats::CacheStats;

/// Re-exported for backend crates, so they implement [`Backend`] against the
/// same versions of these crates as the core.
pub use async_trait::async_trait;
pub use bytes::Bytes;
