//! Tests of the test kit's servers: real processes answer, stop, restart
//! and release their ports; a Redis Cluster forms, routes keys and frees its
//! ports; the silent server never answers.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
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

/// memcached's `item_size_max` at `address` (`stats settings`).
fn item_size_max(address: &str) -> Option<u64> {
    let mut stream = TcpStream::connect(address).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    stream.write_all(b"stats settings\r\n").expect("send");
    let reader = BufReader::new(stream);
    for line in reader.lines().take(200) {
        let line = line.expect("read the answer");
        if let Some(size) = line.strip_prefix("STAT item_size_max ") {
            return size.trim().parse().ok();
        }
        if line == "END" {
            break;
        }
    }
    None
}

#[test]
fn extra_arguments_reach_the_server_and_survive_a_restart() {
    let mut server = ServerProcess::start_with_args(ServerKind::Memcached, ["-I", "2m"]);
    assert_eq!(item_size_max(&server.address()), Some(2 << 20));
    server.restart();
    assert_eq!(
        item_size_max(&server.address()),
        Some(2 << 20),
        "the arguments are kept for the restart"
    );
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
    assert_eq!(
        ServerKind::RedisCluster.not_installed_message(),
        ServerKind::Redis.not_installed_message()
    );
    assert_eq!(
        cluster::redis_cli_not_installed_message(),
        "redis-cli is not installed (not found on PATH); a Redis Cluster needs it to form. \
         Install it with `sudo apt-get install -y redis-tools` (Debian/Ubuntu) or \
         `brew install redis` (macOS), or run `cargo xtask test`, which installs it."
    );
}

/// Runs `redis-cli -h 127.0.0.1 -p PORT` with `args` (after `extra`, such as
/// `-c` for cluster mode) and returns its trimmed stdout.
fn redis_cli(port: u16, extra: &[&str], args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(extra)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Whether `cluster info` of the node on `port` says `cluster_state:ok` and
/// that it knows `nodes` nodes.
fn node_reports_ok(port: u16, nodes: usize) -> bool {
    let info = redis_cli(port, &[], &["cluster", "info"]);
    let lines: Vec<&str> = info.lines().map(str::trim).collect();
    lines.contains(&"cluster_state:ok")
        && lines.contains(&format!("cluster_known_nodes:{nodes}").as_str())
}

/// Asserts that `port` is free again: connecting is refused and it can be
/// bound, trying for up to 5 s (the kernel may take a moment to release it).
fn assert_port_freed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..100 {
        let refused = TcpStream::connect(("127.0.0.1", port))
            .is_err_and(|error| error.kind() == ErrorKind::ConnectionRefused);
        if refused && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("port {port} is still in use 5 s after the cluster was dropped");
}

#[test]
fn redis_cluster_of_three_masters_is_ok_on_every_node_and_routes_keys() {
    let cluster = RedisCluster::start(3);
    let addresses = cluster.addresses();
    let ports: Vec<u16> = cluster.nodes().iter().map(ServerProcess::port).collect();
    assert_eq!(addresses.len(), 3);
    for (address, port) in addresses.iter().zip(&ports) {
        assert_eq!(*address, format!("127.0.0.1:{port}"));
    }
    assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), 3, "{ports:?}");
    for node in cluster.nodes() {
        assert_eq!(node.kind(), ServerKind::RedisCluster);
        assert!(node_reports_ok(node.port(), 3), "{}", node.address());
    }

    // Twenty keys spread over the three masters' slots: written through the
    // first node and read through the last, each following redirections.
    let keys: Vec<String> = (0..20).map(|i| format!("cluster-key-{i}")).collect();
    for key in &keys {
        let value = format!("value-of-{key}");
        assert_eq!(redis_cli(ports[0], &["-c"], &["set", key, &value]), "OK");
        assert_eq!(redis_cli(ports[2], &["-c"], &["get", key]), value);
    }
    // Without `-c` the first node redirects the keys it does not serve: the
    // nodes form one cluster, not three servers.
    let moved = keys
        .iter()
        .filter(|key| redis_cli(ports[0], &[], &["get", key]).starts_with("MOVED "))
        .count();
    assert!(
        0 < moved && moved < keys.len(),
        "{moved} of {} moved",
        keys.len()
    );
}

#[test]
fn restarted_cluster_node_rejoins_and_serves_its_slots() {
    let mut cluster = RedisCluster::start(3);
    let port = cluster.nodes()[0].port();
    cluster.nodes_mut()[1].restart();
    cluster.wait_until_ok();
    for i in 0..10 {
        let key = format!("after-restart-{i}");
        assert_eq!(redis_cli(port, &["-c"], &["set", &key, "v"]), "OK");
        assert_eq!(redis_cli(port, &["-c"], &["get", &key]), "v");
    }
}

#[test]
fn dropping_a_redis_cluster_frees_its_ports_and_bus_ports() {
    let cluster = RedisCluster::start(3);
    let ports: Vec<u16> = cluster.nodes().iter().map(ServerProcess::port).collect();
    drop(cluster);
    for port in ports {
        assert_port_freed(port);
        assert_port_freed(port + 10_000);
    }
}

#[test]
fn cluster_node_listens_on_its_bus_port() {
    let node = ServerProcess::start(ServerKind::RedisCluster);
    let bus = node
        .port()
        .checked_add(10_000)
        .expect("a node's port leaves room for its bus port");
    let deadline = Instant::now() + Duration::from_secs(5);
    let listening = (0..100).any(|_| {
        let accepted = TcpStream::connect(("127.0.0.1", bus)).is_ok();
        if !accepted && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        accepted
    });
    assert!(listening, "nothing listens on the bus port {bus}");
    // A lone node serves no slot yet.
    let info = redis_cli(node.port(), &[], &["cluster", "info"]);
    assert_eq!(
        info.lines().next().map(str::trim),
        Some("cluster_state:fail")
    );
}

#[test]
#[should_panic(expected = "a Redis Cluster needs at least 3 masters")]
fn redis_cluster_of_fewer_than_three_masters_is_refused() {
    let _cluster = RedisCluster::start(2);
}

#[test]
fn cluster_bus_port_is_ten_thousand_above_and_must_be_free() {
    let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let taken = held.local_addr().expect("its address").port();
    assert!(taken > 10_000, "the OS handed out port {taken}");
    // A node whose bus port is taken is refused.
    assert_eq!(port::bus_pair(taken - 10_000), None);
    // A free port becomes the node's port, or its bus port when it is above
    // 55535; either way the pair is 10000 apart and under 65536.
    drop(held);
    if let Some((node, bus)) = port::bus_pair(taken) {
        assert_eq!(u32::from(bus), u32::from(node) + 10_000);
        assert!(node == taken || bus == taken, "{taken} -> {node}, {bus}");
        assert_eq!(node == taken, taken <= 55_535);
    }
}
