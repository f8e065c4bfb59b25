//! The conformance suite against the in-memory backend, and against a
//! backend without optional capabilities (the other side of every check).

use std::sync::Arc;

use cachekit_core::MemoryBackend;
use cachekit_core::backend::testkit::{PlainBackend, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_conforms() {
    conformance(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_without_optional_capabilities_conforms() {
    conformance(Arc::new(PlainBackend(MemoryBackend::new()))).await;
}
