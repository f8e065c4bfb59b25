//! [`ServerProcess`]: starting, stopping and restarting a server program,
//! and waiting until it accepts connections.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::ServerKind;
use super::port::ReservedPort;
use super::scratch::ScratchDir;

/// How many free ports [`ServerProcess::start`] tries: another process may
/// take a port between the moment it is found free and the server binding it.
const START_ATTEMPTS: u32 = 5;

/// How many times [`ServerProcess::restart`] tries to bind the same port.
const RESTART_ATTEMPTS: u32 = 5;

/// The pause between two attempts of [`ServerProcess::restart`].
const RESTART_BACKOFF: Duration = Duration::from_millis(200);

/// How long a started server has to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopped server's port has to start refusing connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause between two checks while waiting for a server.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The timeout of one connection attempt while waiting for a server.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// How much of a failed server's output goes into the panic message (bytes).
const OUTPUT_TAIL: usize = 4096;

/// A real server process on a free 127.0.0.1 port, killed on drop.
///
/// The process's stdout and stderr go to a log file in a scratch directory
/// (removed on drop), so that they stay out of the test output but show up in
/// the panic message when the server fails to start.
#[derive(Debug)]
pub struct ServerProcess {
    /// Which program runs.
    kind: ServerKind,
    /// The port, reserved for this server until it is dropped.
    port: ReservedPort,
    /// Arguments added to the kind's command line, kept for restarts.
    args: Vec<OsString>,
    /// The process; `None` once stopped or exited.
    child: Option<Child>,
    /// Holds the log file (and redis's working directory).
    scratch: ScratchDir,
}

impl ServerProcess {
    /// Starts `memcached`; see [`ServerProcess::start`].
    pub fn memcached() -> ServerProcess {
        ServerProcess::start(ServerKind::Memcached)
    }

    /// Starts `redis-server`; see [`ServerProcess::start`].
    pub fn redis() -> ServerProcess {
        ServerProcess::start(ServerKind::Redis)
    }

    /// Starts the server on a free 127.0.0.1 port and waits until it accepts
    /// connections (up to 5 s per attempt, up to 5 ports).
    ///
    /// # Panics
    ///
    /// If the program is not installed (the message says how to install it),
    /// or if it cannot be started (the message includes its output).
    pub fn start(kind: ServerKind) -> ServerProcess {
        ServerProcess::start_with_args(kind, Vec::<OsString>::new())
    }

    /// Starts the server as [`start`](Self::start) does, with `args` added to
    /// its command line, also at each [`restart`](Self::restart): for
    /// memcached over TLS, `["-Z", "-o", "ssl_chain_cert=CERT,ssl_key=KEY"]`
    /// (and `ssl_ca_cert=CA,ssl_verify_mode=2` in `-o` to require client
    /// certificates). The server is ready once it accepts TCP connections.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start) does.
    pub fn start_with_args(
        kind: ServerKind,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> ServerProcess {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let scratch = ScratchDir::create(kind.program()).unwrap_or_else(|error| {
            panic!(
                "cannot start {}: cannot create a scratch directory in {}: {error}",
                kind.program(),
                std::env::temp_dir().display()
            )
        });
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = match ReservedPort::free(kind.has_cluster_bus()) {
                Ok(port) => port,
                Err(error) => {
                    failures.push(format!("attempt {attempt}: no free port: {error}"));
                    continue;
                }
            };
            match launch(kind, port.port, &scratch, &args) {
                Ok(child) => {
                    return ServerProcess {
                        kind,
                        port,
                        args,
                        child: Some(child),
                        scratch,
                    };
                }
                Err(LaunchError::NotInstalled) => panic!("{}", kind.not_installed_message()),
                Err(LaunchError::Failed(reason)) => {
                    failures.push(format!("attempt {attempt} (port {}): {reason}", port.port));
                }
            }
        }
        panic!(
            "cannot start {} on a free 127.0.0.1 port ({START_ATTEMPTS} attempts):\n{}",
            kind.program(),
            failures.join("\n")
        )
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The port the server listens on (the same across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port.port
    }

    /// The address the server listens on: `"127.0.0.1:PORT"`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port.port)
    }

    /// Whether the process is still alive (it is not after [`stop`](Self::stop)
    /// or if it exited on its own).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                self.child = None;
                false
            }
        }
    }

    /// Kills the server, waits for it to exit, then waits (up to 5 s) until
    /// its port refuses connections. If already stopped, only checks the port.
    ///
    /// # Panics
    ///
    /// If the port still accepts connections 5 s after the process exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child);
        }
        let port = self.port.port;
        if poll(STOP_TIMEOUT, || (!accepts(port)).then_some(())).is_none() {
            panic!(
                "{} on port {port} was killed, but the port still accepts connections after {STOP_TIMEOUT:?}",
                self.kind.program()
            );
        }
    }

    /// Freezes the server (`SIGSTOP`): it keeps its connections open and
    /// answers nothing, as a hung host would. Returns once every thread of
    /// the server has stopped, since `kill` only queues the signal and a busy
    /// host may let the server answer a few more requests before it lands.
    /// [`ServerProcess::thaw`] resumes it.
    ///
    /// # Panics
    ///
    /// If the server's threads have not all stopped 5 s after the signal.
    pub fn freeze(&mut self) {
        self.signal("STOP", true);
    }

    /// Resumes a server frozen by [`ServerProcess::freeze`] (`SIGCONT`) and
    /// returns once none of its threads is stopped.
    ///
    /// # Panics
    ///
    /// If a thread of the server is still stopped 5 s after the signal.
    pub fn thaw(&mut self) {
        self.signal("CONT", false);
    }

    fn signal(&mut self, signal: &str, stopped: bool) {
        let child = self.child.as_ref().expect("the server is running");
        let pid = child.id();
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("`kill` runs");
        assert!(status.success(), "kill -s {signal} failed");
        let settled = poll(STOP_TIMEOUT, || {
            (threads_stopped(pid) == Some(stopped)).then_some(())
        });
        assert!(
            settled.is_some(),
            "{} (pid {pid}) did not {} within {STOP_TIMEOUT:?} of SIG{signal}",
            self.kind.program(),
            if stopped { "stop" } else { "resume" },
        );
    }

    /// Stops the server if it runs, then starts it again on the same port and
    /// waits until it accepts connections. The new process starts empty.
    ///
    /// # Panics
    ///
    /// If the server cannot be started on that port again (5 attempts, 200 ms
    /// apart), or as [`stop`](Self::stop) does.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.port;
        let mut failures = Vec::new();
        for attempt in 1..=RESTART_ATTEMPTS {
            match launch(self.kind, port, &self.scratch, &self.args) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(LaunchError::NotInstalled) => panic!("{}", self.kind.not_installed_message()),
                Err(LaunchError::Failed(reason)) => {
                    failures.push(format!("attempt {attempt}: {reason}"));
                }
            }
            if attempt < RESTART_ATTEMPTS {
                thread::sleep(RESTART_BACKOFF);
            }
        }
        panic!(
            "cannot restart {} on port {port} ({RESTART_ATTEMPTS} attempts):\n{}",
            self.kind.program(),
            failures.join("\n")
        )
    }
}

impl Drop for ServerProcess {
    /// Kills the process and waits for it; the port reservation and the
    /// scratch directory are released after that, as the fields drop.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child);
        }
    }
}

/// Kills `child` and reaps it, ignoring errors (it may have exited already).
pub(super) fn kill_and_wait(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Why one attempt to start a server failed.
enum LaunchError {
    /// The program is not on `PATH`.
    NotInstalled,
    /// The program could not be spawned, exited early, or never accepted
    /// connections; the message says which, followed by its output.
    Failed(String),
}

/// Spawns `kind` on `port`, with `args` added, with its output in the
/// scratch log file, and waits until it accepts connections; kills it again
/// if it does not.
fn launch(
    kind: ServerKind,
    port: u16,
    scratch: &ScratchDir,
    args: &[OsString],
) -> Result<Child, LaunchError> {
    let log_path = scratch.path.join(format!("{}.log", kind.program()));
    let cannot_log = |error: io::Error| {
        LaunchError::Failed(format!("cannot create {}: {error}", log_path.display()))
    };
    let stdout = File::create(&log_path).map_err(cannot_log)?;
    let stderr = stdout.try_clone().map_err(cannot_log)?;
    let spawned = kind
        .command(port, &scratch.path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(LaunchError::NotInstalled);
        }
        Err(error) => {
            return Err(LaunchError::Failed(format!(
                "cannot run {}: {error}",
                kind.program()
            )));
        }
    };
    match wait_until_accepting(&mut child, port) {
        Ok(()) => Ok(child),
        Err(problem) => {
            kill_and_wait(&mut child);
            Err(LaunchError::Failed(format!(
                "{} {problem}{}",
                kind.program(),
                output_tail(&log_path)
            )))
        }
    }
}

/// Waits (up to 5 s) until something accepts connections on `port` while
/// `child` is alive; the error says what went wrong.
fn wait_until_accepting(child: &mut Child, port: u16) -> Result<(), String> {
    let alive = |child: &mut Child| match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(format!("exited early ({status})")),
        Err(error) => Err(format!("cannot be watched: {error}")),
    };
    let outcome = poll(READY_TIMEOUT, || match alive(child) {
        // Whatever accepted may be another process that took the port, in
        // which case ours is about to exit: check it is still alive.
        Ok(()) if accepts(port) => Some(alive(child)),
        Ok(()) => None,
        Err(problem) => Some(Err(problem)),
    });
    outcome.unwrap_or_else(|| {
        Err(format!(
            "did not accept connections on 127.0.0.1:{port} within {READY_TIMEOUT:?}"
        ))
    })
}

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Some`, for at most
/// `timeout` and at most `timeout / POLL_INTERVAL + 1` calls.
pub(super) fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let max_calls = timeout.as_millis() / POLL_INTERVAL.as_millis() + 1;
    for _ in 0..max_calls {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(POLL_INTERVAL);
    }
    None
}

/// `Some(true)` when every thread of `pid` is stopped (state `T` in
/// `/proc/<pid>/task/<tid>/stat`), `Some(false)` when none is, `None` while
/// the threads disagree or `/proc` cannot be read.
fn threads_stopped(pid: u32) -> Option<bool> {
    let mut states = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        // The state follows the command name, which is in parentheses and may
        // itself contain spaces or parentheses.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        states.push(state == "T");
    }
    let first = *states.first()?;
    states.iter().all(|&s| s == first).then_some(first)
}

/// Whether a connection to `127.0.0.1:port` succeeds.
fn accepts(port: u16) -> bool {
    let address = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_ok()
}

/// The end of the output in `log_path`, formatted for a panic message.
fn output_tail(log_path: &Path) -> String {
    let output = match fs::read(log_path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => {
            return format!(
                " (its output in {} is unreadable: {error})",
                log_path.display()
            );
        }
    };
    let output = output.trim();
    if output.is_empty() {
        return " (no output)".to_owned();
    }
    let start = output.len().saturating_sub(OUTPUT_TAIL);
    let start = (start..output.len())
        .find(|&index| output.is_char_boundary(index))
        .unwrap_or(0);
    format!("; its output:\n{}", &output[start..])
}
