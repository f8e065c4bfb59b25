//! cachekit: caching for Rust services with pluggable backends.
//!
//! Results live in process, in Memcached, in Redis or in a local directory,
//! chosen by cargo features and configuration instead of code changes:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachekit::Result<()> {
//! use std::time::Duration;
//!
//! // No backend named: the process default, then the environment
//! // (`CACHEKIT_BACKEND`, `CACHEKIT_MEMCACHED_SERVERS`, ...), else in-process memory.
//! let cache = cachekit::Cache::builder().namespace("docs").build()?;
//! let answer = cache
//!     .get_or_insert_with("answer", Some(Duration::from_secs(60)), || async { 6 * 7 })
//!     .await;
//! assert_eq!(answer, 42);
//! # Ok(())
//! # }
//! ```
//!
//! | feature | adds |
//! |---|---|
//! | `macros` (default) | the [`#[cache]`](macro@cache) attribute |
//! | `memcached` | [`backends::memcached`] |
//! | `redis` | [`backends::redis`] |
//! | `file` | [`backends::file`] |
//! | `full` | all of the above |

/// Caches a function's results (feature `macros`).
#[cfg(feature = "macros")]
pub use cachekit_macros::cache;

pub use cachekit_core::{
    Backend, Bytes, Cache, CacheBuilder, CacheStats, Capabilities, Capability, ConfigOrigin, Error,
    KeyTtl, L1Config, Lock, LockGuard, LockToken, MemoryBackend, ReliabilityConfig, Result, Touch,
    TtlInspect, async_trait, cached_fn, clear_default_backend, codec, config, key, resolve,
    set_default_backend,
};

/// The backends, each behind its cargo feature. Naming one whose feature is
/// off fails to compile with a note naming the feature
/// (`the item is gated behind the `memcached` feature`).
pub mod backends {
    /// The in-process backend, always available.
    pub use cachekit_core::MemoryBackend;

    /// Memcached (feature `memcached`).
    #[cfg(feature = "memcached")]
    #[doc(inline)]
    pub use cachekit_memcached as memcached;

    /// Redis (feature `redis`).
    #[cfg(feature = "redis")]
    #[doc(inline)]
    pub use cachekit_redis as redis;

    /// A local directory (feature `file`).
    #[cfg(feature = "file")]
    #[doc(inline)]
    pub use cachekit_file as file;
}

/// Paths the code `#[cache]` generates relies on; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use cachekit_core::cached_fn::{
        CacheAll, CacheOk, CacheSome, CachedFn, FnSpec, IntoBackend, WithL1, WithoutL1,
        check_l1_value,
    };
}

/// Backends whose feature is off are registered without a constructor, so
/// that selecting one by configuration is an error naming the feature.
mod disabled_backends {
    #[cfg(not(feature = "memcached"))]
    inventory::submit! {
        cachekit_core::resolve::BackendFactory {
            name: "memcached",
            feature: "memcached",
            selecting_vars: &["CACHEKIT_MEMCACHED_SERVERS"],
            build: None,
        }
    }

    #[cfg(not(feature = "redis"))]
    inventory::submit! {
        cachekit_core::resolve::BackendFactory {
            name: "redis",
            feature: "redis",
            selecting_vars: &["CACHEKIT_REDIS_URL", "REDIS_URL"],
            build: None,
        }
    }

    #[cfg(not(feature = "file"))]
    inventory::submit! {
        cachekit_core::resolve::BackendFactory {
            name: "file",
            feature: "file",
            selecting_vars: &["CACHEKIT_FILE_CACHE_DIR"],
            build: None,
        }
    }
}
