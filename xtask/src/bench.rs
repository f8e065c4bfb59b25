//! `cargo xtask bench [memcached|macro]`: starts three memcached servers
//! pinned to one CPU, and runs a benchmark binary pinned to another, so that
//! client and servers do not compete for a core (these machines have two).
//! With no name, runs every benchmark.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{self, Result};
use crate::{project, servers};

/// CPU for the servers and for the client, when `taskset` and two CPUs exist.
const SERVER_CPU: &str = "1";
const CLIENT_CPU: &str = "0";

/// A benchmark binary: its name, and the cargo arguments that select it.
struct Bench {
    name: &'static str,
    cargo_args: &'static [&'static str],
}

/// Every benchmark, in the order `cargo xtask bench` runs them.
const BENCHES: &[Bench] = &[
    Bench {
        name: "memcached",
        cargo_args: &["-p", "cachekit-memcached", "--bench", "memcached"],
    },
    Bench {
        name: "macro",
        cargo_args: &[
            "-p",
            "cachekit",
            "--features",
            "memcached",
            "--bench",
            "macro",
        ],
    },
];

/// Runs the benchmark named by `target`, or all of them for `None`.
pub(crate) fn run(target: Option<&str>) -> Result {
    let chosen: Vec<&Bench> = BENCHES
        .iter()
        .filter(|bench| target.is_none_or(|name| name == bench.name))
        .collect();
    if chosen.is_empty() {
        let known: Vec<&str> = BENCHES.iter().map(|bench| bench.name).collect();
        return Err(format!(
            "unknown benchmark `{}`; known: {}",
            target.unwrap_or_default(),
            known.join(", ")
        ));
    }
    cmd::step("memcached installed", servers::ensure_installed)?;
    for bench in chosen {
        run_one(bench)?;
    }
    Ok(())
}

fn run_one(bench: &Bench) -> Result {
    cmd::step(&format!("build the {} benchmark", bench.name), || {
        cmd::run(
            project::cargo()
                .arg("bench")
                .args(bench.cargo_args)
                .arg("--no-run"),
        )
    })?;
    let pinned =
        cmd::on_path("taskset") && thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if !pinned {
        println!("note: taskset or a second CPU is missing: client and servers are NOT pinned");
    }
    let servers: Vec<Memcached> = (0..3)
        .map(|_| Memcached::start(pinned))
        .collect::<Result<_>>()?;
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    cmd::step(&format!("run the {} benchmark", bench.name), || {
        let mut command = if pinned {
            let mut taskset = Command::new("taskset");
            taskset
                .args(["-c", CLIENT_CPU])
                .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            taskset.current_dir(project::workspace_root());
            taskset
        } else {
            project::cargo()
        };
        command
            .args(["bench", "-q"])
            .args(bench.cargo_args)
            .env("CACHEKIT_BENCH_MEMCACHED", addresses.join(","));
        cmd::run(&mut command)
    })?;
    println!(
        "machine: {} CPUs; client on CPU {CLIENT_CPU}, servers on CPU {SERVER_CPU} ({})",
        thread::available_parallelism().map_or(1, |n| n.get()),
        if pinned { "pinned" } else { "not pinned" }
    );
    drop(servers);
    Ok(())
}

/// A memcached process for the benchmark, killed on drop.
struct Memcached {
    child: Child,
    port: u16,
}

impl Memcached {
    fn start(pinned: bool) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut command = if pinned {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", SERVER_CPU, "memcached"]);
            taskset
        } else {
            Command::new("memcached")
        };
        command.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-t",
            "1",
            "-m",
            "256",
        ]);
        if servers::is_root() {
            command.args(["-u", "root"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start memcached: {e}"))?;
        let server = Memcached { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("memcached on port {port} did not start within 5 s"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
