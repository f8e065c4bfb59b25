//! [`RedisCluster`]: Redis Cluster nodes on loopback, joined into one
//! cluster of masters that serves every hash slot.

use std::fs::{self, File};
use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{kill_and_wait, poll};
use super::scratch::ScratchDir;
use super::{ServerKind, ServerProcess};

/// How long `redis-cli --cluster create` may run before it is killed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long every node has to report `cluster_state:ok`.
const OK_TIMEOUT: Duration = Duration::from_secs(20);

/// The pause between two rounds of `cluster info` while waiting for the
/// cluster; each round runs one `redis-cli` per node.
const OK_INTERVAL: Duration = Duration::from_millis(100);

/// How long one `redis-cli ... cluster info` may run before it is killed.
const INFO_TIMEOUT: Duration = Duration::from_secs(5);

/// The program that forms the cluster and asks nodes for their state.
const REDIS_CLI: &str = "redis-cli";

/// A Redis Cluster on 127.0.0.1: `masters` nodes of
/// [`ServerKind::RedisCluster`], no replicas, the 16384 hash slots split
/// between them. Dropping it kills every node (each [`ServerProcess`] kills
/// its process on drop) and releases their ports.
///
/// A fault test reaches each node's [`ServerProcess`] through
/// [`RedisCluster::nodes_mut`] to stop, restart, freeze or thaw it. A
/// restarted node keeps its node id and slots (its node table is in its
/// scratch directory) but not its keys, and rejoins the cluster;
/// [`RedisCluster::wait_until_ok`] waits for that.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, in the order of [`RedisCluster::addresses`].
    nodes: Vec<ServerProcess>,
    /// Holds the output of the `redis-cli` runs.
    scratch: ScratchDir,
}

impl RedisCluster {
    /// The fewest masters a cluster can have: `redis-cli --cluster create`
    /// refuses fewer.
    pub const MIN_MASTERS: usize = 3;

    /// Starts `masters` nodes on free 127.0.0.1 ports (each with its cluster
    /// bus port, `port + 10000`, free too), joins them with
    /// `redis-cli --cluster create ... --cluster-replicas 0` (killed after
    /// 30 s), then waits (up to 20 s) until every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// If `masters` is under [`RedisCluster::MIN_MASTERS`]; if `redis-server`
    /// or `redis-cli` is not installed (the message says how to install it);
    /// if a node cannot be started, or the cluster cannot be formed (the
    /// message includes `redis-cli`'s output or each node's `cluster info`).
    pub fn start(masters: usize) -> RedisCluster {
        assert!(
            masters >= Self::MIN_MASTERS,
            "a Redis Cluster needs at least {} masters (`redis-cli --cluster create` \
             refuses fewer), not {masters}",
            Self::MIN_MASTERS
        );
        let scratch = ScratchDir::create("redis-cluster").unwrap_or_else(|error| {
            panic!(
                "cannot start a Redis Cluster: cannot create a scratch directory in {}: {error}",
                std::env::temp_dir().display()
            )
        });
        let nodes = (0..masters)
            .map(|_| ServerProcess::start(ServerKind::RedisCluster))
            .collect();
        // From here on, a panic drops `cluster`, which kills the nodes.
        let cluster = RedisCluster { nodes, scratch };
        cluster.create();
        cluster.wait_until_ok();
        cluster
    }

    /// The nodes' addresses (`"127.0.0.1:PORT"`), in the order of
    /// [`RedisCluster::nodes`]. A cluster client needs only one of them.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(ServerProcess::address).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[ServerProcess] {
        &self.nodes
    }

    /// The nodes, to stop, restart, freeze or thaw one.
    pub fn nodes_mut(&mut self) -> &mut [ServerProcess] {
        &mut self.nodes
    }

    /// The nodes, which keep running as a cluster until they are dropped.
    pub fn into_nodes(self) -> Vec<ServerProcess> {
        self.nodes
    }

    /// Waits (up to 20 s) until every node reports `cluster_state:ok` and
    /// knows every other node, as after [`RedisCluster::start`] or after a
    /// stopped node is restarted.
    ///
    /// # Panics
    ///
    /// If some node does not, by then (the message has each node's last
    /// answer), for instance because it is stopped or frozen.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + OK_TIMEOUT;
        let rounds = OK_TIMEOUT.as_millis() / OK_INTERVAL.as_millis() + 1;
        let mut answers = Vec::new();
        for _ in 0..rounds {
            answers = self
                .nodes
                .iter()
                .map(|node| self.cluster_info(node.port()))
                .collect();
            let expected = self.nodes.len();
            if answers.iter().all(|answer| cluster_is_ok(answer, expected)) {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(OK_INTERVAL);
        }
        let report: Vec<String> = self
            .addresses()
            .iter()
            .zip(&answers)
            .map(|(address, answer)| match answer {
                Ok(info) => format!("{address}:\n{}", info.trim()),
                Err(problem) => format!("{address}: {problem}"),
            })
            .collect();
        panic!(
            "the Redis Cluster of {} nodes did not report cluster_state:ok on every node \
             within {OK_TIMEOUT:?}; each node's `cluster info`:\n{}",
            self.nodes.len(),
            report.join("\n")
        )
    }

    /// Joins the running nodes into one cluster, every node a master.
    fn create(&self) {
        let addresses = self.addresses();
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(addresses.iter().cloned());
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(str::to_owned));
        if let Err(problem) = self.redis_cli(&args, CREATE_TIMEOUT) {
            panic!(
                "cannot form a Redis Cluster of {}: `redis-cli {}` {problem}",
                addresses.join(" "),
                args.join(" ")
            );
        }
    }

    /// The answer of the node on `port` to `cluster info`, or why there is
    /// none.
    fn cluster_info(&self, port: u16) -> Result<String, String> {
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "cluster",
            "info",
        ];
        self.redis_cli(&args.map(str::to_owned), INFO_TIMEOUT)
    }

    /// Runs `redis-cli` with `args`, its output in a file of the scratch
    /// directory, and kills it if it runs longer than `limit`. Its output
    /// when it succeeds; else what went wrong, with its output.
    ///
    /// # Panics
    ///
    /// If `redis-cli` is not installed, saying how to install it.
    fn redis_cli(&self, args: &[String], limit: Duration) -> Result<String, String> {
        // Each run has a file of its own: `wait_until_ok` may run on several
        // threads sharing the cluster.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = self.scratch.path.join(format!(
            "redis-cli-{}.out",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let cannot_log = |error: io::Error| format!("cannot create {}: {error}", path.display());
        let stdout = File::create(&path).map_err(cannot_log)?;
        let stderr = stdout.try_clone().map_err(cannot_log)?;
        let spawned = Command::new(REDIS_CLI)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                panic!("{}", redis_cli_not_installed_message())
            }
            Err(error) => return Err(format!("cannot be run: {error}")),
        };
        let exited = poll(limit, || child.try_wait().transpose());
        let output = || {
            let output = fs::read(&path).unwrap_or_default();
            let _ = fs::remove_file(&path);
            String::from_utf8_lossy(&output).into_owned()
        };
        match exited {
            Some(Ok(status)) if status.success() => Ok(output()),
            Some(Ok(status)) => Err(format!("exited with {status}; its output:\n{}", output())),
            Some(Err(error)) => {
                kill_and_wait(&mut child);
                Err(format!(
                    "cannot be watched: {error}; its output:\n{}",
                    output()
                ))
            }
            None => {
                kill_and_wait(&mut child);
                Err(format!(
                    "did not finish within {limit:?} and was killed; its output:\n{}",
                    output()
                ))
            }
        }
    }
}

/// Whether `answer`, a node's `cluster info`, says the cluster is ok and
/// the node knows all `nodes` nodes.
fn cluster_is_ok(answer: &Result<String, String>, nodes: usize) -> bool {
    let Ok(info) = answer else {
        return false;
    };
    let known = format!("cluster_known_nodes:{nodes}");
    let lines = || info.lines().map(str::trim);
    lines().any(|line| line == "cluster_state:ok") && lines().any(|line| line == known)
}

/// The message of the panic when `redis-cli` is not on `PATH`.
pub(super) fn redis_cli_not_installed_message() -> String {
    format!(
        "{REDIS_CLI} is not installed (not found on PATH); a Redis Cluster needs it to form. \
         Install it with `sudo apt-get install -y redis-tools` (Debian/Ubuntu) or \
         `brew install redis` (macOS), or run `cargo xtask test`, which installs it."
    )
}
