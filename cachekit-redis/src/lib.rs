//! Redis backend for cachekit: a shared, persistent cache on one Redis
//! server or a Redis Cluster, with TTL inspection, touch, and locks with a
//! lease and a fencing value.
//!
//! ```no_run
//! use std::time::Duration;
//! use cachekit_redis::{RedisBackend, RedisBackendConfig};
//!
//! # fn main() -> cachekit_core::Result<()> {
//! let backend = RedisBackend::new(
//!     RedisBackendConfig::default()
//!         .url("redis://:s3cret@cache:6379/0")
//!         .timeout(Duration::from_millis(500))
//!         .key_prefix("myapp:"),
//! )?; // validates; connects on first use
//!
//! // Or from CACHEKIT_REDIS_URL (else REDIS_URL) and the other
//! // CACHEKIT_REDIS_* variables, over cachekit.toml's [redis] section:
//! let backend = RedisBackend::from_env()?;
//! # Ok(())
//! # }
//! ```
//!
//! The client is the `redis` crate: one multiplexed connection that
//! reconnects by itself (`ConnectionManager`), or with `cluster_nodes` its
//! async cluster client, which routes keys by slot. `rediss://` URLs use
//! TLS through rustls (no OpenSSL).

mod backend;
mod config;
mod connection;
mod lock;
mod slot;
mod tracking;

pub use backend::{MAX_VALUE_SIZE, RedisBackend};
pub use config::{RedisBackendConfig, SETTINGS};

// `REDIS_URL` sets the URL but does not select the backend: many services
// (and their frameworks) set it for their own Redis client, and such a
// service would find its cache moved from process memory to that Redis
// without having asked. `CACHEKIT_BACKEND=redis` or a `CACHEKIT_REDIS_*`
// selecting variable says so explicitly.
inventory::submit! {
    cachekit_core::backend::BackendFactory {
        name: RedisBackend::NAME,
        feature: "redis",
        selecting_vars: &["CACHEKIT_REDIS_URL", "CACHEKIT_REDIS_CLUSTER_NODES"],
        build: Some(|config| Ok(std::sync::Arc::new(RedisBackend::from_config(config)?))),
    }
}
