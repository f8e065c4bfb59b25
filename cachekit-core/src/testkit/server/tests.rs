//! Tests of the test kit's servers: real processes answer, stop, restart
//! and release their ports; the silent server never answers.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
