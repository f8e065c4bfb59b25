//! The conformance kit against the in-memory backend, against a backend
//! without optional capabilities (the other side of every gated case), and
//! against a `FaultyBackend` without faults (it forwards every capability).

use std::process::ExitCode;
use std::sync::Arc;

use cachekit_core::MemoryBackend;
use cachekit_core::backend::testkit::{Conformance, FaultyBackend, PlainBackend};

fn main() -> ExitCode {
    Conformance::run_all([
        Conformance::in_process(|| Arc::new(MemoryBackend::new())),
        Conformance::in_process(|| Arc::new(PlainBackend(MemoryBackend::new()))),
        Conformance::in_process(|| Arc::new(FaultyBackend::new(MemoryBackend::new()))),
    ])
}
