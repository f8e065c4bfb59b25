//! What `backend = ...` in `#[cache]` may give.

use std::sync::Arc;

use crate::{Backend, Error, Result};

/// What the backend named in the attribute may be: a backend, an `Arc` of
/// one, or a `Result` of either (an `Err` makes the function run uncached,
/// logged).
pub trait IntoBackend {
    /// The backend, shared.
    fn into_backend(self) -> Result<Arc<dyn Backend>>;
}

impl<B: Backend + 'static> IntoBackend for B {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(self))
    }
}

impl<B: Backend + 'static> IntoBackend for Arc<B> {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        Ok(self)
    }
}

impl IntoBackend for Arc<dyn Backend> {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        Ok(self)
    }
}

impl<B: IntoBackend, E: Into<Error>> IntoBackend for std::result::Result<B, E> {
    fn into_backend(self) -> Result<Arc<dyn Backend>> {
        self.map_err(Into::into)?.into_backend()
    }
}
