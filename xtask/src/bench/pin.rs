//! Pinning: the servers on one CPU and the benchmark binary on another
//! (with `taskset`), so that client and servers do not compete for a core
//! (these machines have two).

use std::process::Command;
use std::thread;

use crate::{cmd, project};

/// CPU for the servers, when `taskset` and two CPUs exist.
pub(super) const SERVER_CPU: &str = "1";
/// CPU for the benchmark binary, when `taskset` and two CPUs exist.
pub(super) const CLIENT_CPU: &str = "0";

/// Whether processes are pinned on this machine.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pinning {
    pinned: bool,
}

impl Pinning {
    /// Pins when `taskset` is on `PATH` and the machine has two CPUs or more.
    pub(super) fn detect() -> Self {
        Pinning {
            pinned: cmd::on_path("taskset") && cpus() >= 2,
        }
    }

    /// Whether client and servers are pinned.
    pub(super) fn pinned(self) -> bool {
        self.pinned
    }

    /// `program`, on the server CPU when pinned.
    pub(super) fn server(self, program: &str) -> Command {
        if self.pinned {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", SERVER_CPU, program]);
            taskset
        } else {
            Command::new(program)
        }
    }

    /// `cargo`, run from the workspace root, on the client CPU when pinned.
    pub(super) fn client_cargo(self) -> Command {
        if self.pinned {
            let mut taskset = Command::new("taskset");
            taskset
                .args(["-c", CLIENT_CPU])
                .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            taskset.current_dir(project::workspace_root());
            taskset
        } else {
            project::cargo()
        }
    }

    /// One line on the machine and the pinning, printed after each run;
    /// the server CPU is named only for a benchmark with `servers`.
    pub(super) fn describe(self, servers: bool) -> String {
        let servers = if servers {
            format!(", servers on CPU {SERVER_CPU}")
        } else {
            String::new()
        };
        format!(
            "machine: {} CPUs; client on CPU {CLIENT_CPU}{servers} ({})",
            cpus(),
            if self.pinned { "pinned" } else { "not pinned" }
        )
    }
}

/// The CPUs this process may use.
fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}
