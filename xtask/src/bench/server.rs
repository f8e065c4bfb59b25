//! A server process started for a benchmark: on a free loopback port,
//! waited for within a bound, killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::Result;

/// How long a server may take to answer after it is started.
const START_WAIT: Duration = Duration::from_secs(5);

/// A running server, killed (and reaped) on drop.
pub(super) struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    /// Starts `command` (the server `name`, told to listen on `port`) and
    /// waits until `ready(port)` holds, for at most [`START_WAIT`]; fails if
    /// the server exits first or is not ready by then.
    pub(super) fn start(
        name: &str,
        mut command: Command,
        port: u16,
        ready: fn(u16) -> bool,
    ) -> Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start {name}: {e}"))?;
        // From here on, dropping `server` kills the child.
        let mut server = ServerProcess { child, port };
        let deadline = Instant::now() + START_WAIT;
        while !ready(port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("{name} on port {port} exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} on port {port} did not answer within {} s",
                    START_WAIT.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The loopback address it listens on, `127.0.0.1:<port>`.
    pub(super) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free at the time of the call (the OS picks it).
pub(super) fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}
