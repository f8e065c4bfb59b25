//! Real `memcached` and `redis-server` processes on free loopback ports, and a
//! [`SilentServer`] that accepts connections and never answers, for the tests
//! of the backend crates.
//!
//! The server programs must be installed (`cargo xtask test` installs them).
//! A test that needs a missing one panics with the command that installs it:
//! tests are never skipped.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// How often the [`SilentServer`] thread checks for connections and for drop.
const ACCEPT_INTERVAL: Duration = Duration::from_millis(10);

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
    /// The process; `None` once stopped or exited.
    child: Option<Child>,
    /// Holds the log file (and redis's working directory).
    scratch: ScratchDir,
}

/// Which server program to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `memcached`.
    Memcached,
    /// `redis-server`.
    Redis,
}

impl ServerKind {
    /// The program started for this kind.
    fn program(self) -> &'static str {
        match self {
            ServerKind::Memcached => "memcached",
            ServerKind::Redis => "redis-server",
        }
    }

    /// The message of the panic when the program is not on `PATH`.
    fn not_installed_message(self) -> String {
        let (program, apt_package, brew_formula) = match self {
            ServerKind::Memcached => ("memcached", "memcached", "memcached"),
            ServerKind::Redis => ("redis-server", "redis-server", "redis"),
        };
        format!(
            "{program} is not installed (not found on PATH). Install it with \
             `sudo apt-get install -y {apt_package}` (Debian/Ubuntu) or \
             `brew install {brew_formula}` (macOS), or run `cargo xtask test`, \
             which installs it."
        )
    }

    /// The command line that runs this server on `127.0.0.1:port`, with
    /// `scratch` as its working directory for files.
    fn command(self, port: u16, scratch: &Path) -> Command {
        let mut command = Command::new(self.program());
        match self {
            ServerKind::Memcached => {
                command
                    .args(["-l", "127.0.0.1", "-p"])
                    .arg(port.to_string())
                    .args(["-U", "0", "-m", "64", "-c", "1024", "-t", "2"]);
                // memcached refuses to run as root unless told which user to be.
                if running_as_root() {
                    command.args(["-u", "root"]);
                }
            }
            ServerKind::Redis => {
                command
                    .arg("--port")
                    .arg(port.to_string())
                    .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
                    .arg(scratch);
            }
        }
        command
    }
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
        let scratch = ScratchDir::create(kind.program()).unwrap_or_else(|error| {
            panic!(
                "cannot start {}: cannot create a scratch directory in {}: {error}",
                kind.program(),
                std::env::temp_dir().display()
            )
        });
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = match ReservedPort::free() {
                Ok(port) => port,
                Err(error) => {
                    failures.push(format!("attempt {attempt}: no free port: {error}"));
                    continue;
                }
            };
            match launch(kind, port.0, &scratch) {
                Ok(child) => {
                    return ServerProcess {
                        kind,
                        port,
                        child: Some(child),
                        scratch,
                    };
                }
                Err(LaunchError::NotInstalled) => panic!("{}", kind.not_installed_message()),
                Err(LaunchError::Failed(reason)) => {
                    failures.push(format!("attempt {attempt} (port {}): {reason}", port.0));
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
        self.port.0
    }

    /// The address the server listens on: `"127.0.0.1:PORT"`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port.0)
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
        let port = self.port.0;
        if poll(STOP_TIMEOUT, || (!accepts(port)).then_some(())).is_none() {
            panic!(
                "{} on port {port} was killed, but the port still accepts connections after {STOP_TIMEOUT:?}",
                self.kind.program()
            );
        }
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
        let port = self.port.0;
        let mut failures = Vec::new();
        for attempt in 1..=RESTART_ATTEMPTS {
            match launch(self.kind, port, &self.scratch) {
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
fn kill_and_wait(child: &mut Child) {
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

/// Spawns `kind` on `port` with its output in the scratch log file, and waits
/// until it accepts connections; kills it again if it does not.
fn launch(kind: ServerKind, port: u16, scratch: &ScratchDir) -> Result<Child, LaunchError> {
    let log_path = scratch.path.join(format!("{}.log", kind.program()));
    let cannot_log = |error: io::Error| {
        LaunchError::Failed(format!("cannot create {}: {error}", log_path.display()))
    };
    let stdout = File::create(&log_path).map_err(cannot_log)?;
    let stderr = stdout.try_clone().map_err(cannot_log)?;
    let spawned = kind
        .command(port, &scratch.path)
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
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
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

/// Whether this process runs with effective uid 0, read once from
/// `/proc/self/status`, or else from `id -u`.
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        effective_uid_from_proc()
            .or_else(effective_uid_from_id)
            .is_some_and(|uid| uid == 0)
    })
}

/// The effective uid from the `Uid:` line of `/proc/self/status` (Linux):
/// `Uid: real effective saved filesystem`.
fn effective_uid_from_proc() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The effective uid printed by `id -u`.
fn effective_uid_from_id() -> Option<u32> {
    let output = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// The ports of this process's live [`ServerProcess`]es, so that two servers
/// never get the same port, even while one is stopped.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port reserved for one [`ServerProcess`], released on drop.
#[derive(Debug)]
struct ReservedPort(u16);

impl ReservedPort {
    /// A port the OS reports free on 127.0.0.1 and no other server of this
    /// process holds.
    fn free() -> io::Result<ReservedPort> {
        for _ in 0..20 {
            // The listener closes at the end of the statement; the server binds
            // the port a moment later (another process may take it first:
            // `start` retries).
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let mut reserved = RESERVED_PORTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if reserved.insert(port) {
                return Ok(ReservedPort(port));
            }
        }
        Err(io::Error::other(
            "the OS kept handing out ports that servers of this process hold",
        ))
    }
}

impl Drop for ReservedPort {
    /// Releases the port.
    fn drop(&mut self) {
        RESERVED_PORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// A directory of its own in the system temp directory, removed on drop.
#[derive(Debug)]
struct ScratchDir {
    /// The directory.
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new, empty directory named after `label`.
    fn create(label: &str) -> io::Result<ScratchDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let mut last_error = None;
        for _ in 0..10 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            let path = base.join(format!(
                "cachekit-testkit-{label}-{}-{}-{nanos}",
                process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no unique name found")))
    }
}

impl Drop for ScratchDir {
    /// Removes the directory and its files, ignoring errors.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers
/// (for timeout tests). Stops on drop.
///
/// Accepted connections are held open, unread, until the server is dropped;
/// then they and the listener close.
#[derive(Debug)]
pub struct SilentServer {
    /// The port listened on.
    port: u16,
    /// Tells the accepting thread to stop.
    stop: Arc<AtomicBool>,
    /// The thread that accepts and holds connections.
    acceptor: Option<JoinHandle<()>>,
}

impl SilentServer {
    /// Listens on a free 127.0.0.1 port.
    ///
    /// # Panics
    ///
    /// If no port can be bound or the accepting thread cannot be spawned.
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|error| panic!("SilentServer: cannot bind 127.0.0.1:0: {error}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("SilentServer: cannot read its port: {error}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|error| panic!("SilentServer: cannot make it non-blocking: {error}"));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = thread::Builder::new()
            .name(format!("silent-server-{port}"))
            .spawn({
                let stop = Arc::clone(&stop);
                move || hold_connections(&listener, &stop)
            })
            .unwrap_or_else(|error| panic!("SilentServer: cannot spawn its thread: {error}"));
        SilentServer {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The address listened on: `"127.0.0.1:PORT"`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilentServer {
    /// Stops the accepting thread, which closes the held connections and the
    /// listener.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts connections on the non-blocking `listener` and holds them, unread,
/// until `stop` is set (checked every [`ACCEPT_INTERVAL`]).
fn hold_connections(listener: &TcpListener, stop: &AtomicBool) {
    let mut held = Vec::new();
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((connection, _)) => held.push(connection),
            // Nothing to accept (or a transient error such as too many open
            // files): wait a little.
            Err(_) => thread::sleep(ACCEPT_INTERVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, ErrorKind, Read, Write};

    use super::*;

    /// Sends `request` to `address` and returns the first line of the answer.
    fn first_line_of_answer(address: &str, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        stream.write_all(request).expect("send the request");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("read the answer");
        line
    }

    /// Asserts that connecting to `address` is refused.
    fn assert_refused(address: &str) {
        match TcpStream::connect(address) {
            Ok(_) => panic!("{address} still accepts connections"),
            Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}"),
        }
    }

    #[test]
    fn memcached_answers_stops_and_restarts_on_the_same_port() {
        let mut server = ServerProcess::memcached();
        let port = server.port();
        let address = server.address();
        assert_eq!(server.kind(), ServerKind::Memcached);
        assert_eq!(address, format!("127.0.0.1:{port}"));
        assert!(server.is_running());
        let version = first_line_of_answer(&address, b"version\r\n");
        assert!(version.starts_with("VERSION "), "{version:?}");

        server.stop();
        assert!(!server.is_running());
        assert_refused(&address);
        server.stop(); // stopping twice is fine

        server.restart();
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        let version = first_line_of_answer(&address, b"version\r\n");
        assert!(version.starts_with("VERSION "), "{version:?}");
    }

    #[test]
    fn redis_answers_ping_and_restarts_on_the_same_port() {
        let mut server = ServerProcess::redis();
        let port = server.port();
        assert_eq!(server.kind(), ServerKind::Redis);
        assert_eq!(
            first_line_of_answer(&server.address(), b"PING\r\n"),
            "+PONG\r\n"
        );

        server.restart(); // restarting a running server stops it first
        assert_eq!(server.port(), port);
        assert_eq!(
            first_line_of_answer(&server.address(), b"PING\r\n"),
            "+PONG\r\n"
        );
    }

    #[test]
    fn dropping_a_server_kills_it() {
        let server = ServerProcess::start(ServerKind::Redis);
        let address = server.address();
        drop(server);
        assert_refused(&address);
    }

    #[test]
    fn servers_of_one_process_get_distinct_ports() {
        let servers: Vec<ServerProcess> = (0..3).map(|_| ServerProcess::memcached()).collect();
        let ports: BTreeSet<u16> = servers.iter().map(ServerProcess::port).collect();
        assert_eq!(ports.len(), servers.len());
    }

    #[test]
    fn silent_server_accepts_but_never_answers() {
        let server = SilentServer::start();
        assert_eq!(server.address(), format!("127.0.0.1:{}", server.port()));
        let mut stream = TcpStream::connect(server.address()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a read timeout");
        stream.write_all(b"PING\r\n").expect("send");
        let started = Instant::now();
        let error = stream
            .read(&mut [0; 16])
            .expect_err("a silent server answered");
        assert!(
            matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{error}"
        );
        assert!(started.elapsed() >= Duration::from_millis(150));

        let address = server.address();
        drop(server);
        assert_refused(&address);
    }

    #[test]
    fn missing_programs_are_reported_with_the_install_command() {
        assert_eq!(
            ServerKind::Memcached.not_installed_message(),
            "memcached is not installed (not found on PATH). Install it with \
             `sudo apt-get install -y memcached` (Debian/Ubuntu) or `brew install memcached` \
             (macOS), or run `cargo xtask test`, which installs it."
        );
        assert_eq!(
            ServerKind::Redis.not_installed_message(),
            "redis-server is not installed (not found on PATH). Install it with \
             `sudo apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis` \
             (macOS), or run `cargo xtask test`, which installs it."
        );
    }
}
