//! The memcached servers of the Memcached benchmarks: three, each with one
//! worker thread, on the server CPU.

use std::net::TcpStream;

use super::pin::Pinning;
use super::server::{ServerProcess, free_port};
use crate::cmd::Result;
use crate::servers;

/// How many servers the Memcached benchmarks get (and TLS ones more).
pub(super) const SERVERS: usize = 3;

/// Starts the servers; the benchmarks find them by the returned value of
/// `CACHEKIT_BENCH_MEMCACHED` (their addresses, comma-separated).
pub(super) fn start(pinning: Pinning) -> Result<(Vec<ServerProcess>, String)> {
    let servers: Vec<ServerProcess> = (0..SERVERS)
        .map(|_| start_one(pinning, &[]))
        .collect::<Result<_>>()?;
    let addresses: Vec<String> = servers.iter().map(ServerProcess::address).collect();
    Ok((servers, addresses.join(",")))
}

/// One server, with `extra` arguments (TLS's).
pub(super) fn start_one(pinning: Pinning, extra: &[String]) -> Result<ServerProcess> {
    let port = free_port()?;
    let mut command = pinning.server("memcached");
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
    command.args(extra);
    if servers::is_root() {
        command.args(["-u", "root"]);
    }
    ServerProcess::start("memcached", command, port, |port| {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}
