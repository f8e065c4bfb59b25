//! Memcached backend for cachekit: a shared, high-throughput, volatile cache
//! across processes, with keys spread over a fleet by rendezvous hashing.
//!
//! ```no_run
//! use std::time::Duration;
//! use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};
//!
//! # fn main() -> cachekit_core::Result<()> {
//! let backend = MemcachedBackend::new(MemcachedBackendConfig {
//!     servers: vec!["mc1:11211".into(), "mc2:11211".into(), "mc3:11211".into()],
//!     timeout: Duration::from_millis(500),
//!     key_prefix: "myapp:".into(),
//!     ..Default::default()
//! })?; // validates; connects lazily
//! # Ok(())
//! # }
//! ```
//!
//! Talks memcached's meta protocol (`mg`/`ms`/`md`/`mn`, memcached >= 1.6)
//! over its own pipelined connections: requests from many tasks share a few
//! connections per server, which the `memcache` crate's async client cannot do.

mod backend;
mod config;
mod connection;
mod pool;
mod protocol;
mod ring;
mod server;
mod tls;
mod watchdog;

pub use backend::{MAX_TTL, MemcachedBackend};
pub use config::{MemcachedBackendConfig, SETTINGS};

inventory::submit! {
    cachekit_core::backend::BackendFactory {
        name: MemcachedBackend::NAME,
        feature: "memcached",
        selecting_vars: &["CACHEKIT_MEMCACHED_SERVERS"],
        build: Some(|config| Ok(std::sync::Arc::new(MemcachedBackend::from_config(config)?))),
    }
}
