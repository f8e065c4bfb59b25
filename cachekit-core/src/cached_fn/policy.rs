//! Which results of a cached function are stored, by return type.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Which results of a function are stored: the attribute picks one from the
/// return type.
pub trait ReturnPolicy<R> {
    /// The part of the result that is stored.
    type Stored: Serialize + DeserializeOwned;
    /// The part to store, or the result itself when it is not stored.
    fn stored(result: R) -> std::result::Result<Self::Stored, R>;
    /// The result rebuilt from a stored part.
    fn result(stored: Self::Stored) -> R;
    /// Whether a stored part is a negative result, stored for the
    /// function's `none_ttl` or `err_ttl` when it has one.
    fn negative(_stored: &Self::Stored) -> bool {
        false
    }
}

/// Every result is stored (`T`, and `Option<T>` with `None` cached).
#[derive(Debug)]
pub enum CacheAll {}

/// Only `Ok` values are stored; errors reach this caller only.
#[derive(Debug)]
pub enum CacheOk {}

/// Every result of an `Option` function is stored, `None` for its own
/// TTL (`none_ttl`).
#[derive(Debug)]
pub enum CacheOption {}

/// Every result of a `Result` function is stored, `Err` for its own TTL
/// (`err_ttl`): the error type is stored too, so it is
/// `Serialize + DeserializeOwned`.
#[derive(Debug)]
pub enum CacheResult {}

/// Only `Some` values are stored (`cache_none = false`).
#[derive(Debug)]
pub enum CacheSome {}

impl<T: Serialize + DeserializeOwned> ReturnPolicy<T> for CacheAll {
    type Stored = T;
    fn stored(result: T) -> std::result::Result<T, T> {
        Ok(result)
    }
    fn result(stored: T) -> T {
        stored
    }
}

impl<T: Serialize + DeserializeOwned> ReturnPolicy<Option<T>> for CacheOption {
    type Stored = Option<T>;
    fn stored(result: Option<T>) -> std::result::Result<Option<T>, Option<T>> {
        Ok(result)
    }
    fn result(stored: Option<T>) -> Option<T> {
        stored
    }
    fn negative(stored: &Option<T>) -> bool {
        stored.is_none()
    }
}

impl<T: Serialize + DeserializeOwned, E> ReturnPolicy<std::result::Result<T, E>> for CacheOk {
    type Stored = T;
    fn stored(
        result: std::result::Result<T, E>,
    ) -> std::result::Result<T, std::result::Result<T, E>> {
        result.map_err(Err)
    }
    fn result(stored: T) -> std::result::Result<T, E> {
        Ok(stored)
    }
}

impl<T, E> ReturnPolicy<std::result::Result<T, E>> for CacheResult
where
    T: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
{
    type Stored = std::result::Result<T, E>;
    fn stored(result: Self::Stored) -> std::result::Result<Self::Stored, Self::Stored> {
        Ok(result)
    }
    fn result(stored: Self::Stored) -> Self::Stored {
        stored
    }
    fn negative(stored: &Self::Stored) -> bool {
        stored.is_err()
    }
}

impl<T: Serialize + DeserializeOwned> ReturnPolicy<Option<T>> for CacheSome {
    type Stored = T;
    fn stored(result: Option<T>) -> std::result::Result<T, Option<T>> {
        result.ok_or(None)
    }
    fn result(stored: T) -> Option<T> {
        Some(stored)
    }
}
