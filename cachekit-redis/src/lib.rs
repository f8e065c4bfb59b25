//! Redis backend for cachekit.
//!
//! This crate is reserved for `RedisBackend` and `RedisBackendConfig`. It is not
//! implemented yet; until it is, the facade's `redis` feature adds nothing.
