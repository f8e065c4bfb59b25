//! Test kit for backend crates (feature `testkit`): the backend conformance
//! suite, backends that inject faults, and real server processes.

mod conformance;
mod fault;
pub mod server;

pub use conformance::conformance;
pub use fault::{Fault, FaultyBackend, PlainBackend};
pub use server::{ServerKind, ServerProcess, SilentServer};
