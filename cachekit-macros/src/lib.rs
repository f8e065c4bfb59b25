//! The `#[cache]` attribute macro for cachekit.
//!
//! This crate is reserved for the `#[cache]` attribute. It is not implemented
//! yet; until it is, the facade's `macros` feature adds nothing. Use
//! `cachekit::Cache::get_or_insert_with` directly in the meantime.
