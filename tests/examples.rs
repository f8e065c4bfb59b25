//! Runs the examples (the quickstart with nothing configured, the others
//! against real servers and directories started here) and checks what each
//! prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use cachekit_core::backend::testkit::ServerProcess;

mod support;

use support::{Running, clean_command, example_binary, lines, run_to_end};

/// The features each example is built with when `cargo test` did not build
/// it: one set for all, so that they share one build of the library.
const FEATURES: &str = "memcached,redis,file";

/// How long one run of an example may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A command for example `name` with none of this process's `CACHEKIT_`
/// variables, run in an empty directory so that no `cachekit.toml` is read.
fn example(name: &str, cwd: &std::path::Path) -> Command {
    let mut command = clean_command(&example_binary(name, FEATURES));
    command.current_dir(cwd);
    command
}

/// The stdout of a run that must have succeeded, as lines.
fn succeeded(output: &Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "the example failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One key's line of `memcached_fleet`: the server it is on, and whether
/// the read was a `hit` or a `load`.
type Placement = BTreeMap<String, (String, String)>;

/// Reads `memcached_fleet`'s lines up to `until`, and returns the placement
/// they print (`KEY on SERVER: OUTCOME`). Bounded by `deadline`.
fn phase(output: &Receiver<String>, until: &str, deadline: Instant) -> Placement {
    let mut placement = Placement::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = output
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {until:?} within {RUN_TIMEOUT:?}: {placement:?}"));
        if line == until {
            return placement;
        }
        if let Some((key, rest)) = line.split_once(" on ") {
            let (server, outcome) = rest.split_once(": ").expect("SERVER: OUTCOME");
            placement.insert(key.to_owned(), (server.to_owned(), outcome.to_owned()));
        }
    }
}

#[test]
fn memcached_fleet_moves_a_stopped_servers_keys_and_brings_them_back() {
    let mut servers = [
        ServerProcess::memcached(),
        ServerProcess::memcached(),
        ServerProcess::memcached(),
    ];
    let list: Vec<String> = servers.iter().map(ServerProcess::address).collect();
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut fleet = Running(
        example("memcached_fleet", cwd.path())
            .env("CACHEKIT_MEMCACHED_SERVERS", list.join(","))
            .env("CACHEKIT_MEMCACHED_DEAD_TIME", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts"),
    );
    let output = lines(fleet.0.stdout.take().expect("piped stdout"));
    let mut input = fleet.0.stdin.take().expect("piped stdin");
    let deadline = Instant::now() + RUN_TIMEOUT;

    let first = phase(&output, "stop one server, then press Enter", deadline);
    assert_eq!(first.len(), 12, "12 keys: {first:?}");
    assert!(
        first.values().all(|(_, outcome)| outcome == "load"),
        "{first:?}"
    );
    // The server holding the most keys (at least 4 of 12) is stopped.
    let stopped = (0..servers.len())
        .max_by_key(|&i| first.values().filter(|(s, _)| *s == list[i]).count())
        .expect("three servers");
    let stopped_name = list[stopped].clone();
    servers[stopped].stop();
    writeln!(input).expect("Enter");

    let second = phase(&output, "start it again, then press Enter", deadline);
    assert_eq!(second.len(), 12, "12 keys: {second:?}");
    for (key, (server, outcome)) in &second {
        let (before, _) = &first[key];
        if *before == stopped_name {
            assert_ne!(
                *server, stopped_name,
                "{key} moved off {stopped_name}: {second:?}"
            );
            assert_eq!(
                outcome, "load",
                "{key} is loaded on its new server: {second:?}"
            );
        } else {
            assert_eq!(server, before, "{key} stays where it was: {second:?}");
            assert_eq!(outcome, "hit", "{key} is still there: {second:?}");
        }
    }
    servers[stopped].restart();
    writeln!(input).expect("Enter");

    let third = phase(&output, "done", deadline);
    assert_eq!(third.len(), 12, "12 keys: {third:?}");
    for (key, (server, outcome)) in &third {
        let (before, _) = &first[key];
        assert_eq!(server, before, "{key} is back where it was: {third:?}");
        // The restarted server starts empty: its keys are loaded again.
        let expected = if *before == stopped_name {
            "load"
        } else {
            "hit"
        };
        assert_eq!(outcome, expected, "{key} on {server}: {third:?}");
    }
    let status = fleet.0.wait().expect("the example exits");
    assert!(status.success(), "the example exits cleanly: {status}");
}

#[test]
fn capability_lock_contends_on_redis_and_is_unsupported_on_memcached() {
    let (redis, memcached) = (ServerProcess::redis(), ServerProcess::memcached());
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut command = example("capability_lock", cwd.path());
    command
        .env("CACHEKIT_REDIS_URL", format!("redis://{}", redis.address()))
        .env("CACHEKIT_MEMCACHED_SERVERS", memcached.address());
    let lines = succeeded(&run_to_end(command, RUN_TIMEOUT));
    let at = |wanted: &str| {
        lines
            .iter()
            .position(|line| line.starts_with(wanted))
            .unwrap_or_else(|| panic!("no line {wanted:?} in {lines:#?}"))
    };
    // Task 2 is refused while task 1 holds the lock, and gets it after.
    let holds = at("redis: task 1 holds the lock");
    let refused = at("redis: task 2 refused: the lock on ");
    let released = at("redis: task 1 released the lock");
    let second_holds = at("redis: task 2 holds the lock");
    assert!(
        holds < refused && refused < released && released < second_holds,
        "{lines:#?}"
    );
    assert!(
        lines[at("memcached: lock: ")].contains("does not support locking (lock)"),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("memcached: 16 concurrent calls, loader ran 1 time(s)"),
        "{lines:#?}"
    );
}

#[test]
fn swap_backend_uses_the_backend_its_configuration_names() {
    let (redis, memcached) = (ServerProcess::redis(), ServerProcess::memcached());
    let cwd = tempfile::tempdir().expect("temp dir");
    let config = cwd.path().join("redis.toml");
    let toml = format!(
        "backend = \"redis\"\n\n[redis]\nurl = \"redis://{}\"\n",
        redis.address()
    );
    std::fs::write(&config, toml).expect("write the config file");
    let files = tempfile::tempdir().expect("temp dir");
    let servers = memcached.address();

    let runs: [(&str, &[(&str, &std::ffi::OsStr)]); 4] = [
        ("memory", &[("CACHEKIT_BACKEND", "memory".as_ref())]),
        (
            "memcached",
            &[
                ("CACHEKIT_BACKEND", "memcached".as_ref()),
                ("CACHEKIT_MEMCACHED_SERVERS", servers.as_ref()),
            ],
        ),
        ("redis", &[("CACHEKIT_CONFIG", config.as_os_str())]),
        (
            "file",
            &[("CACHEKIT_FILE_CACHE_DIR", files.path().as_os_str())],
        ),
    ];
    for (backend, vars) in runs {
        let mut command = example("swap_backend", cwd.path());
        command.envs(vars.iter().copied());
        let lines = succeeded(&run_to_end(command, RUN_TIMEOUT));
        assert_eq!(
            lines,
            [
                format!("backend: {backend}"),
                "miss: hello from the loader".to_owned(),
                "hit: hello from the loader".to_owned(),
            ],
            "with {vars:?}"
        );
    }

    let mut broken = example("swap_backend", cwd.path());
    broken.env("CACHEKIT_BACKEND", "nosuch");
    let output = run_to_end(broken, RUN_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "nothing ran: {output:?}");
    assert!(
        stderr.contains("invalid setting `backend` (from environment variable CACHEKIT_BACKEND)")
            && stderr.contains("\"nosuch\""),
        "the error names the setting and the value: {stderr}"
    );
}

#[test]
fn file_persistent_reads_the_first_runs_result_in_the_second() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |n: &str| {
        let mut command = example("file_persistent", dir.path());
        command.arg(n).env("CACHEKIT_FILE_CACHE_DIR", dir.path());
        succeeded(&run_to_end(command, RUN_TIMEOUT))
    };
    let outcome = |lines: &[String]| {
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(
            lines[0],
            format!("cache directory: {}", dir.path().display())
        );
        lines[1]
            .split(' ')
            .next()
            .map(str::to_owned)
            .unwrap_or_default()
    };

    let first = run("30");
    assert_eq!(
        outcome(&first),
        "miss",
        "the first run computes: {first:#?}"
    );
    assert_eq!(first[2], "fibonacci(30) = 832040");
    // A new process: only the directory carries the result over.
    let second = run("30");
    assert_eq!(
        outcome(&second),
        "hit",
        "the second run reads it: {second:#?}"
    );
    assert_eq!(second[2], "fibonacci(30) = 832040");
    // Another argument is another key.
    let other = run("31");
    assert_eq!(outcome(&other), "miss", "{other:#?}");
    assert_eq!(other[2], "fibonacci(31) = 1346269");
}

#[test]
fn quickstart_misses_then_hits_with_nothing_configured() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let lines = succeeded(&run_to_end(example("quickstart", cwd.path()), RUN_TIMEOUT));
    let outcomes: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(outcomes, ["miss", "hit", "loads"], "{lines:#?}");
    assert!(
        lines[0].ends_with("report for customer 42: 1,234 orders")
            && lines[1].ends_with("report for customer 42: 1,234 orders"),
        "{lines:#?}"
    );
    assert_eq!(lines[2], "loads: 1, hits: 1", "{lines:#?}");
}
