//! Entries shared with Python services, against the real thing: the
//! cachekit-py 0.24.1 package (`tests/interop/python_side.py`, run by the
//! interpreter in `CACHEKIT_INTEROP_PYTHON`, which `cargo xtask test`
//! prepares) and `#[cache(interop = ...)]` functions of this file, over a
//! fleet of three real memcached servers, plain and encrypted.
//!
//! - Python writes through its decorators; Rust computes the same keys,
//!   places them on the same servers, writes byte-identical values, and its
//!   functions read Python's entries as hits with the same values.
//! - Rust writes through its functions on a fresh fleet; Python's
//!   decorators read every entry as a hit, with the values Python itself
//!   reads from its own entries.
//!
//! The Rust side runs in child processes (this binary run again), whose
//! environment holds the master key, as a service's would.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::interop::{self, InteropArg};
use cachekit::{Backend, cache};
use cachekit_core::backend::testkit::{ServerKind, ServerProcess};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The interpreter of a venv with cachekit==0.24.1 and pymemcache.
const PYTHON_VAR: &str = "CACHEKIT_INTEROP_PYTHON";
/// Set in a child: what to do (`keys`, `read` or `write`).
const CHILD_MODE: &str = "CACHEKIT_TEST_INTEROP_MODE";
/// Set in a child: the fleet, `host:port` comma-separated.
const CHILD_SERVERS: &str = "CACHEKIT_TEST_INTEROP_SERVERS";
/// The master key both sides encrypt under (tenant `default`).
const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static FLEET: OnceLock<Arc<dyn Backend>> = OnceLock::new();
static RAN: AtomicUsize = AtomicUsize::new(0);

fn fleet() -> Arc<dyn Backend> {
    FLEET.get().expect("set before the first call").clone()
}

fn memcached(servers: &str) -> MemcachedBackend {
    let config = MemcachedBackendConfig {
        servers: servers.split(',').map(str::to_owned).collect(),
        ..Default::default()
    };
    MemcachedBackend::new(config).expect("a memcached backend")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    age: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Mixed {
    list: Vec<i64>,
    float: f64,
    bytes: Bytes,
    none: Option<i64>,
    flag: bool,
    text: String,
}

/// A datetime value, as Python's sentinel map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct When(#[serde(with = "cachekit::interop::datetime")] SystemTime);

/// Python's `[1, "two", 3.5, None, [True, b"\x01"]]`.
type OneArg = (i64, String, f64, Option<i64>, (bool, Bytes));

const GREETED: &str = "héllo 日本語 🎉";

fn one_arg() -> OneArg {
    (
        1,
        "two".into(),
        3.5,
        None,
        (true, Bytes::from_static(b"\x01")),
    )
}

fn new_year() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

fn user() -> User {
    RAN.fetch_add(1, Ordering::SeqCst);
    User {
        name: "alice".into(),
        age: 30,
    }
}

fn mixed() -> Mixed {
    RAN.fetch_add(1, Ordering::SeqCst);
    Mixed {
        list: vec![1, 2, 3],
        float: 1.5,
        bytes: Bytes::from_static(b"\x00\x01\xff"),
        none: None,
        flag: true,
        text: GREETED.into(),
    }
}

fn summed(a: i64, b: i64) -> Vec<i64> {
    RAN.fetch_add(1, Ordering::SeqCst);
    vec![a, b, a + b]
}

fn sorted(s: &BTreeSet<i64>) -> Vec<i64> {
    RAN.fetch_add(1, Ordering::SeqCst);
    s.iter().copied().collect()
}

fn later(ts: SystemTime) -> When {
    RAN.fetch_add(1, Ordering::SeqCst);
    When(ts + Duration::from_secs(86_400 + 12 * 3600 + 30 * 60))
}

fn greeting(name: &str) -> String {
    RAN.fetch_add(1, Ordering::SeqCst);
    format!("hi {name}")
}

/// Calls a function, pushing to `out` its key (as the hand-written API
/// computes it), its value as JSON, and whether its body ran.
macro_rules! call {
    ($out:ident, $namespace:expr, $op:literal, $call:expr, [$($arg:expr),*]) => {{
        let before = RAN.load(Ordering::SeqCst);
        let value = serde_json::to_value($call.await).unwrap();
        let ran = RAN.load(Ordering::SeqCst) > before;
        let args: &[&dyn InteropArg] = &[$(&$arg),*];
        let key = format!("{}:{}", $namespace, interop::call_key($op, args).unwrap());
        $out.push((key, value, ran));
    }};
}

/// The functions of one side (plain or encrypted): the same operations as
/// Python's, in namespaces `users` and `vec` (or `susers` and `svec`).
macro_rules! functions {
    ($module:ident, $users:tt, $vec:tt, $($encrypt:ident)?) => {
        mod $module {
            use super::*;

            #[cache(interop = "get_user", namespace = $users, ttl = 300, l1 = false, backend = fleet() $(, $encrypt)?)]
            pub(super) async fn get_user(user_id: i64) -> User {
                let _ = user_id;
                user()
            }

            #[cache(interop = "one", namespace = $vec, ttl = 300, l1 = false, backend = fleet() $(, $encrypt)?)]
            pub(super) async fn one(x: OneArg) -> Mixed {
                let _ = x;
                mixed()
            }

            #[cache(interop = "two", namespace = $vec, ttl = 300, l1 = false, backend = fleet() $(, $encrypt)?)]
            pub(super) async fn two(a: i64, b: i64) -> Vec<i64> {
                summed(a, b)
            }

            #[cache(interop = "tags", namespace = $vec, ttl = 300, l1 = false, backend = fleet() $(, $encrypt)?)]
            pub(super) async fn tags(s: BTreeSet<i64>) -> Vec<i64> {
                sorted(&s)
            }

            #[cache(interop = "when", namespace = $vec, ttl = 300, l1 = false, backend = fleet() $(, $encrypt)?)]
            pub(super) async fn when(ts: SystemTime) -> When {
                later(ts)
            }

            #[cache(interop = "greet", namespace = $vec, ttl = 300, l1 = false, backend = fleet() $(, $encrypt)?)]
            pub(super) async fn greet(name: String) -> String {
                greeting(&name)
            }

            /// Every call Python makes, in its order: (key, value as JSON,
            /// whether the body ran).
            pub(super) async fn calls() -> Vec<(String, Value, bool)> {
                let mut out = Vec::new();
                for id in std::iter::once(42).chain(1..24) {
                    call!(out, $users, "get_user", get_user(id), [id]);
                }
                call!(out, $vec, "one", one(one_arg()), [one_arg()]);
                call!(out, $vec, "two", two(1, 5), [1i64, 5i64]);
                let set = BTreeSet::from([3, 1, 2]);
                call!(out, $vec, "tags", tags(set.clone()), [set]);
                call!(out, $vec, "when", when(new_year()), [new_year()]);
                call!(out, $vec, "greet", greet(GREETED.into()), [GREETED.to_owned()]);
                out
            }
        }
    };
}

functions!(plain, "users", "vec",);
functions!(secure, "susers", "svec", encrypt);

/// The child's side: every call of both sides, one JSON line each, with
/// the key, the server the fleet places it on and the Rust encoding of
/// the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_calls_the_functions() {
    let (Ok(mode), Ok(servers)) = (std::env::var(CHILD_MODE), std::env::var(CHILD_SERVERS)) else {
        return; // not a child: nothing to do
    };
    let backend = memcached(&servers);
    let placing = backend.clone();
    assert!(FLEET.set(Arc::new(backend)).is_ok(), "set once");
    let mut calls = plain::calls().await;
    calls.extend(secure::calls().await);
    for (key, value, ran) in calls {
        let line = json!({
            "mode": mode,
            "key": key,
            "server": placing.server_for(&key),
            "value": value,
            "ran": ran,
        });
        println!("RUST {line}");
    }
}

/// Runs this binary as a child in `mode` over `servers`: its JSON lines.
fn rust_side(mode: &str, servers: &str) -> Vec<Value> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_calls_the_functions", "--nocapture"])
        .env(CHILD_MODE, mode)
        .env(CHILD_SERVERS, servers)
        .env("CACHEKIT_MASTER_KEY", MASTER_KEY)
        // Only the functions marked `encrypt` encrypt.
        .env("CACHEKIT_ENCRYPTION", "false")
        .env_remove("CACHEKIT_DEPLOYMENT_UUID")
        .output()
        .expect("the test binary runs");
    lines(&output, "RUST ", &format!("the Rust side ({mode})"))
}

/// Runs the Python side in `mode` over `servers`, encrypted if `secure`:
/// its JSON lines, and whether it succeeded.
fn python_side(python: &str, mode: &str, servers: &str, secure: bool) -> (Vec<Value>, bool) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_side.py");
    let mut command = Command::new(python);
    command.args([script, "--servers", servers]);
    if secure {
        command.args(["--master-key", MASTER_KEY]);
    }
    let output = command
        .arg(mode)
        .env_remove("CACHEKIT_DEPLOYMENT_UUID")
        .env_remove("CACHEKIT_MASTER_KEY")
        .output()
        .expect("python runs");
    let ok = output.status.success();
    (lines(&output, "", &format!("python {mode}")), ok)
}

/// The JSON lines of `output` that start with `prefix`.
fn lines(output: &Output, prefix: &str, what: &str) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let found: Vec<Value> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert!(
        !found.is_empty(),
        "{what} printed nothing: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    found
}

fn fleet_of_three() -> (Vec<ServerProcess>, String) {
    let servers: Vec<ServerProcess> = (0..3)
        .map(|_| ServerProcess::start(ServerKind::Memcached))
        .collect();
    let list = servers
        .iter()
        .map(ServerProcess::address)
        .collect::<Vec<_>>()
        .join(",");
    (servers, list)
}

#[test]
fn python_and_rust_share_entries_over_a_memcached_fleet() {
    if std::env::var(CHILD_MODE).is_ok() {
        return;
    }
    let python = std::env::var(PYTHON_VAR).unwrap_or_else(|_| {
        panic!(
            "{PYTHON_VAR} is unset: this test needs a Python with cachekit==0.24.1 and pymemcache; `cargo xtask test` prepares one and sets it"
        )
    });

    // Python writes; Rust agrees on keys, servers and bytes, and reads hits.
    let (_first, servers) = fleet_of_three();
    let (mut written, ok) = python_side(&python, "write", &servers, false);
    assert!(ok, "python write (plain): {written:?}");
    let (secure_written, ok) = python_side(&python, "write", &servers, true);
    assert!(ok, "python write (encrypted): {secure_written:?}");
    let plain_count = written.len();
    written.extend(secure_written);
    let read = rust_side("read", &servers);
    assert_eq!(read.len(), written.len(), "one Rust call per Python call");
    for (index, (py, rs)) in written.iter().zip(&read).enumerate() {
        assert_eq!(rs["key"], py["key"], "call {index}: the same key");
        assert_eq!(
            rs["server"], py["server"],
            "call {index} ({}): the same server",
            py["key"]
        );
        assert_eq!(
            rs["ran"], false,
            "call {index} ({}): a hit on Python's entry",
            py["key"]
        );
    }
    // Byte-identical values: Rust's encoding of what it read is what Python stored.
    let servers_used: BTreeSet<String> =
        written.iter().map(|py| py["server"].to_string()).collect();
    assert_eq!(servers_used.len(), 3, "the keys spread over the fleet");
    let baseline_values: BTreeMap<String, Value> = {
        let (python_read, ok) = python_side(&python, "read", &servers, false);
        assert!(ok, "python reads its own entries: {python_read:?}");
        let (secure_read, ok) = python_side(&python, "read", &servers, true);
        assert!(
            ok,
            "python reads its own encrypted entries: {secure_read:?}"
        );
        python_read
            .into_iter()
            .chain(secure_read)
            .map(|line| {
                (
                    line["key"].as_str().unwrap().to_owned(),
                    line["value"].clone(),
                )
            })
            .collect()
    };
    for py in &written[..plain_count] {
        let key = py["key"].as_str().unwrap();
        let stored = hex_of(&raw_get(&servers, key));
        assert_eq!(
            Some(stored.as_str()),
            py["value_hex"].as_str(),
            "{key}: unchanged by Rust's reads"
        );
    }

    // Rust writes on a fresh fleet; Python's decorators read hits.
    let (_second, servers) = fleet_of_three();
    let wrote = rust_side("write", &servers);
    assert!(
        wrote.iter().all(|line| line["ran"] == true),
        "every Rust call is a miss on an empty fleet: {wrote:?}"
    );
    for (index, (py, rs)) in written.iter().zip(&wrote).enumerate() {
        let key = py["key"].as_str().unwrap();
        assert_eq!(rs["key"], py["key"], "call {index}");
        if index < plain_count {
            let stored = hex_of(&raw_get(&servers, key));
            assert_eq!(
                Some(stored.as_str()),
                py["value_hex"].as_str(),
                "{key}: Rust writes Python's bytes"
            );
        }
    }
    for secure in [false, true] {
        let (python_read, ok) = python_side(&python, "read", &servers, secure);
        assert!(
            ok,
            "python reads every Rust entry as a hit (encrypted: {secure}): {python_read:?}"
        );
        for line in &python_read {
            let key = line["key"].as_str().unwrap();
            assert_eq!(line["hit"], true, "{key}");
            assert_eq!(
                Some(&line["value"]),
                baseline_values.get(key),
                "{key}: the value Python reads from its own entry"
            );
        }
    }
}

/// The bytes stored under `key` on whichever server of `servers` has it.
fn raw_get(servers: &str, key: &str) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for server in servers.split(',') {
            let backend = memcached(server);
            if let Some(bytes) = backend.get(key).await.expect("a get") {
                return bytes.to_vec();
            }
        }
        panic!("no server holds {key}")
    })
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
