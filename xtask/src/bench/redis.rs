//! The redis-server of the Redis benchmarks: one, in memory only (no RDB
//! snapshots, no append-only file), on the server CPU.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::pin::Pinning;
use super::server::{ServerProcess, free_port};
use crate::cmd::Result;

/// Starts the server; the benchmarks find it by the returned value of
/// `CACHEKIT_BENCH_REDIS` (`redis://127.0.0.1:<port>`).
pub(super) fn start(pinning: Pinning) -> Result<(Vec<ServerProcess>, String)> {
    let port = free_port()?;
    let mut command = pinning.server("redis-server");
    command.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]);
    let server = ServerProcess::start("redis-server", command, port, answers_ping)?;
    let url = format!("redis://{}", server.address());
    Ok((vec![server], url))
}

/// Whether the server on `port` answers `PING` with `+PONG` (it accepts
/// connections before it serves commands only while loading data, which
/// it has none of; the answer is the certain sign).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}
