//! Help for testing code that uses cachekit (no feature needed): running
//! every cached function against a backend of the test's choosing.

pub use crate::cached_fn::{ScopedBackend, scoped_backend};
