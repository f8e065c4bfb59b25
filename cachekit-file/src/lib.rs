//! Local-directory backend for cachekit.
//!
//! This crate is reserved for `FileBackend` and `FileBackendConfig`. It is not
//! implemented yet; until it is, the facade's `file` feature adds nothing.
