//! [`ServerKind`]: which server program runs, and its command line.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Which server program to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `memcached`.
    Memcached,
    /// `redis-server`.
    Redis,
    /// `redis-server` as a node of a Redis Cluster (`--cluster-enabled yes`,
    /// its cluster bus on `port + 10000`, its node table in its scratch
    /// directory, so a restarted node rejoins with the same id and slots).
    /// [`ServerProcess::start`] of this kind starts one node that serves no
    /// slot yet; [`RedisCluster::start`] starts nodes and forms a cluster.
    ///
    /// [`ServerProcess::start`]: super::ServerProcess::start
    /// [`RedisCluster::start`]: super::RedisCluster::start
    RedisCluster,
}

impl ServerKind {
    /// The program started for this kind.
    pub(super) fn program(self) -> &'static str {
        match self {
            ServerKind::Memcached => "memcached",
            ServerKind::Redis | ServerKind::RedisCluster => "redis-server",
        }
    }

    /// Whether the server also listens on a cluster bus port (`port + 10000`),
    /// which must be free and reserved with its port.
    pub(super) fn has_cluster_bus(self) -> bool {
        self == ServerKind::RedisCluster
    }

    /// The message of the panic when the program is not on `PATH`.
    pub(super) fn not_installed_message(self) -> String {
        let (program, apt_package, brew_formula) = match self {
            ServerKind::Memcached => ("memcached", "memcached", "memcached"),
            ServerKind::Redis | ServerKind::RedisCluster => {
                ("redis-server", "redis-server", "redis")
            }
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
    pub(super) fn command(self, port: u16, scratch: &Path) -> Command {
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
            ServerKind::Redis | ServerKind::RedisCluster => {
                command
                    .arg("--port")
                    .arg(port.to_string())
                    .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
                    .arg(scratch);
            }
        }
        if self == ServerKind::RedisCluster {
            // A node fails its peers after 2 s of silence, so fault tests
            // see a stopped node marked failed quickly.
            command
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(scratch.join("nodes.conf"))
                .args(["--cluster-node-timeout", "2000"]);
        }
        command
    }
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
