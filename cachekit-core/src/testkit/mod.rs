//! Test kit for backend crates (feature `testkit`): the backend conformance
//! kit, backends that inject faults, and real server processes.

mod conformance;
mod fault;
mod server;

pub use conformance::Conformance;
pub use fault::{Fault, FaultyBackend, PlainBackend};
/// The test harness the conformance kit runs on, for binaries that add
/// trials of their own to [`Conformance::trials`].
#[doc(no_inline)]
pub use libtest_mimic;
pub use server::{RedisCluster, ServerKind, ServerProcess, SilentServer};
