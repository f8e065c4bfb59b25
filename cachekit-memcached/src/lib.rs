//! Memcached backend for cachekit.
//!
//! This crate is reserved for `MemcachedBackend` and `MemcachedBackendConfig`
//! (consistent hashing over a fleet, per-server pools, the 30-day TTL clamp and
//! the 1 MiB item limit). It is not implemented yet; until it is, the facade's
//! `memcached` feature adds nothing.
