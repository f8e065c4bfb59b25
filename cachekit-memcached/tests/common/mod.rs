//! Helpers shared by the integration tests: real servers and a raw client.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use cachekit_core::backend::testkit::ServerProcess;
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};

pub mod tls;

/// `n` real memcached servers on free loopback ports.
pub fn servers(n: usize) -> Vec<ServerProcess> {
    (0..n).map(|_| ServerProcess::memcached()).collect()
}

/// A backend over `servers` with short timeouts for tests.
pub fn backend(
    servers: &[ServerProcess],
    tweak: impl FnOnce(&mut MemcachedBackendConfig),
) -> MemcachedBackend {
    let mut config = MemcachedBackendConfig {
        servers: servers.iter().map(ServerProcess::address).collect(),
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(500),
        ..Default::default()
    };
    tweak(&mut config);
    MemcachedBackend::new(config).expect("valid config")
}

/// Sends one raw command line and reads the answer's first line (and, for
/// `VA`, the data line).
pub fn raw(address: &str, command: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    if line.starts_with("VA ") {
        let mut data = String::new();
        reader.read_line(&mut data).unwrap();
        line.push_str(&data);
    }
    line.trim_end().to_string()
}

/// The number of items a server holds (`stats` → `curr_items`).
pub fn item_count(address: &str) -> u64 {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(b"stats\r\n").unwrap();
    let reader = BufReader::new(stream);
    for line in reader.lines().take(200) {
        let line = line.unwrap();
        if let Some(count) = line.strip_prefix("STAT curr_items ") {
            return count.trim().parse().unwrap();
        }
        if line == "END" {
            break;
        }
    }
    panic!("no curr_items in stats of {address}");
}

/// [`item_count`] of each of `servers`, in order.
pub fn item_counts(servers: &[ServerProcess]) -> Vec<u64> {
    servers.iter().map(|s| item_count(&s.address())).collect()
}

/// The value the load of the fault tests stores under `key`.
pub fn expected(key: &str) -> String {
    format!("value-of-{key}")
}
