//! `cargo xtask bench [memcached|macro|redis|file|l1]`: starts the servers a
//! benchmark needs pinned to one CPU, and runs its binaries pinned to
//! another, so that client and servers do not compete for a core (these
//! machines have two). The file and L1 benchmarks need no server: their
//! binaries run pinned to the client CPU all the same, so that their
//! figures come from one core like the others'. With no name, runs every benchmark,
//! each with its own servers.

mod memcached;
mod pin;
mod redis;
mod server;
mod tls;

use crate::cmd::{self, Result};
use crate::servers;
use pin::Pinning;
use server::ServerProcess;

/// A benchmark: its name, the servers it runs against, and the cargo
/// arguments of each of its binaries.
struct Bench {
    name: &'static str,
    servers: Servers,
    binaries: &'static [&'static [&'static str]],
}

/// The servers a benchmark gets, each kind passed in its own variable.
#[derive(Debug, Clone, Copy)]
enum Servers {
    /// None: the benchmark measures local resources (a directory, memory).
    None,
    /// Three memcached servers, in `CACHEKIT_BENCH_MEMCACHED`.
    Memcached,
    /// Those, and three more over TLS (see [`tls`]).
    MemcachedAndTls,
    /// One redis-server, in `CACHEKIT_BENCH_REDIS`.
    Redis,
}

/// Servers started for a benchmark: killed on drop; the variables that
/// tell the benchmark where they are, and their values.
type Started = (Vec<ServerProcess>, Vec<(&'static str, String)>);

impl Servers {
    /// Whether there are servers to install and start.
    fn any(self) -> bool {
        !matches!(self, Servers::None)
    }

    /// Starts the servers; returns them with the variable that tells the
    /// benchmark where they are.
    fn start(self, pinning: Pinning) -> Result<Started> {
        Ok(match self {
            Servers::None => (Vec::new(), Vec::new()),
            Servers::Memcached => {
                let (processes, value) = memcached::start(pinning)?;
                (processes, vec![("CACHEKIT_BENCH_MEMCACHED", value)])
            }
            Servers::MemcachedAndTls => {
                let (mut processes, value) = memcached::start(pinning)?;
                let mut vars = vec![("CACHEKIT_BENCH_MEMCACHED", value)];
                // Without TLS servers the plain rows still run; the
                // benchmark says the TLS rows are left out.
                match tls::start(pinning) {
                    Ok((tls, tls_value, ca)) => {
                        processes.extend(tls);
                        vars.push((tls::SERVERS_VAR, tls_value));
                        vars.push((tls::CA_VAR, ca.display().to_string()));
                    }
                    Err(error) => println!("note: no TLS servers: {error}"),
                }
                (processes, vars)
            }
            Servers::Redis => {
                let (processes, value) = redis::start(pinning)?;
                (processes, vec![("CACHEKIT_BENCH_REDIS", value)])
            }
        })
    }
}

/// Every benchmark, in the order `cargo xtask bench` runs them.
const BENCHES: &[Bench] = &[
    Bench {
        name: "memcached",
        servers: Servers::MemcachedAndTls,
        binaries: &[&["-p", "cachekit-memcached", "--bench", "memcached"]],
    },
    Bench {
        name: "macro",
        servers: Servers::Memcached,
        binaries: &[
            &[
                "-p",
                "cachekit",
                "--features",
                "memcached",
                "--bench",
                "macro",
            ],
            // Latency across an expiry, with and without a stale window.
            &[
                "-p",
                "cachekit",
                "--features",
                "memcached",
                "--bench",
                "expiry",
            ],
        ],
    },
    Bench {
        name: "redis",
        servers: Servers::Redis,
        binaries: &[
            &["-p", "cachekit-redis", "--bench", "redis"],
            // `#[cache]` lives in the facade: its Redis rows are a bench
            // of the root package.
            &[
                "-p",
                "cachekit",
                "--features",
                "redis",
                "--bench",
                "macro_redis",
            ],
        ],
    },
    Bench {
        name: "file",
        servers: Servers::None,
        binaries: &[&["-p", "cachekit-file", "--bench", "file"]],
    },
    // In-process caches only: no server; pinned to the client CPU like
    // the file benchmark.
    Bench {
        name: "l1",
        servers: Servers::None,
        binaries: &[&["-p", "cachekit", "--bench", "l1"]],
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
    if chosen.iter().any(|bench| bench.servers.any()) {
        cmd::step("servers installed", servers::ensure_installed)?;
    }
    let pinning = Pinning::detect();
    if !pinning.pinned() {
        println!("note: taskset or a second CPU is missing: client and servers are NOT pinned");
    }
    for bench in chosen {
        run_one(bench, pinning)?;
    }
    Ok(())
}

/// Builds the benchmark's binaries, starts its servers (if any), runs the
/// binaries one after the other against them, and stops the servers.
fn run_one(bench: &Bench, pinning: Pinning) -> Result {
    cmd::step(&format!("build the {} benchmark", bench.name), || {
        bench.binaries.iter().try_for_each(|args| {
            cmd::run(
                crate::project::cargo()
                    .arg("bench")
                    .args(*args)
                    .arg("--no-run"),
            )
        })
    })?;
    let (processes, address) = bench.servers.start(pinning)?;
    cmd::step(&format!("run the {} benchmark", bench.name), || {
        bench.binaries.iter().try_for_each(|args| {
            cmd::run(
                pinning
                    .client_cargo()
                    .args(["bench", "-q"])
                    .args(*args)
                    .envs(address.clone()),
            )
        })
    })?;
    println!("{}", pinning.describe(bench.servers.any()));
    drop(processes);
    Ok(())
}
