//! `#[cache]` over the file backend keeps its results across processes: a
//! process run twice on one cache directory computes a result once, in
//! the first run, and the second run (a restart) reads it from disk
//! without running the function. One test for an `async fn`, one for a
//! plain `fn`.
//!
//! The backend is chosen as a user would: by the environment, in child
//! processes (this test binary run again with [`CHILD_MODE`] set) whose
//! `CACHEKIT_*` variables are only the test's, in a temp directory: the
//! `async fn`'s by `CACHEKIT_FILE_CACHE_DIR` alone, the plain `fn`'s by
//! `CACHEKIT_BACKEND=file` too. Nothing reaches the user's cache directory:
//! `XDG_CACHE_HOME` points into the temp directory, and is checked unused.
//! Each real run of a cached body appends a line to the file named by
//! [`RUNS_LOG`], which outlives the processes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use cachekit::cache;

/// Set in a child process to what it calls: `async` or `plain`.
const CHILD_MODE: &str = "CACHEKIT_TEST_CHILD_MODE";
/// Set in a child process to the file each real run of a body appends to.
const RUNS_LOG: &str = "CACHEKIT_TEST_RUNS_LOG";

/// Notes a real run of the body `name` in the runs log.
fn record(name: &str) {
    let path = std::env::var_os(RUNS_LOG).expect("a child has its runs log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the runs log");
    log.write_all(format!("{name} {}\n", std::process::id()).as_bytes())
        .expect("the runs log");
}

/// Kept in L1 too: within a run, the second call is an L1 hit.
#[cache(namespace = "restart")]
async fn profile(user_id: u64) -> String {
    record("profile");
    format!(
        "profile of {user_id}, computed by process {}",
        std::process::id()
    )
}

/// Not kept in L1: within a run, the second call reads the file.
#[cache(namespace = "restart", l1 = false)]
fn squares(n: u64) -> (Vec<u64>, u32) {
    record("squares");
    ((0..n).map(|i| i * i).collect(), std::process::id())
}

/// An `async fn` run twice in each of two processes on one directory: the
/// body runs once, in the first; the second process gets the first's
/// value from the file backend.
#[test]
fn async_cached_fn_survives_a_restart() {
    const TEST: &str = "async_cached_fn_survives_a_restart";
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        if mode == "async" {
            child_async();
        }
        return;
    }
    let dir = tempfile::tempdir().expect("a temp directory");
    let first = run_child(TEST, "async", dir.path(), &[]);
    let ran = [format!("profile {}", first.pid)];
    assert_eq!(body_runs(dir.path()), ran, "the body ran once");
    assert!(
        first.value.ends_with(&format!("process {}", first.pid)),
        "the first run computed it: {first:?}"
    );
    assert_eq!(
        first.stats, "l1_hits=1 l2_hits=0 loads=1 errors=0",
        "then an L1 hit"
    );
    assert_eq!(entry_files(dir.path()), 1, "the entry is a file");

    let second = run_child(TEST, "async", dir.path(), &[]);
    assert_eq!(
        body_runs(dir.path()),
        ran,
        "the restarted process did not run the body"
    );
    assert_eq!(
        second.value, first.value,
        "the restarted process got the first's value"
    );
    assert_eq!(
        second.stats, "l1_hits=1 l2_hits=1 loads=0 errors=0",
        "a file hit, then an L1 hit"
    );
    assert_default_dir_unused(dir.path());
    println!("first run: {first:?}\nsecond run: {second:?}");
}

/// A plain `fn` (L1 off) run twice in each of two processes on one
/// directory: the body runs once, in the first; every other call, in
/// either process, reads the file.
#[test]
fn plain_cached_fn_survives_a_restart() {
    const TEST: &str = "plain_cached_fn_survives_a_restart";
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        if mode == "plain" {
            child_plain();
        }
        return;
    }
    let dir = tempfile::tempdir().expect("a temp directory");
    let backend = [("CACHEKIT_BACKEND", "file")];
    let first = run_child(TEST, "plain", dir.path(), &backend);
    let ran = [format!("squares {}", first.pid)];
    assert_eq!(body_runs(dir.path()), ran, "the body ran once");
    assert_eq!(
        first.value,
        format!("([0, 1, 4, 9, 16], {})", first.pid),
        "the first run computed it"
    );
    assert_eq!(
        first.stats, "l1_hits=0 l2_hits=1 loads=1 errors=0",
        "then a file hit"
    );
    assert_eq!(entry_files(dir.path()), 1, "the entry is a file");

    let second = run_child(TEST, "plain", dir.path(), &backend);
    assert_eq!(
        body_runs(dir.path()),
        ran,
        "the restarted process did not run the body"
    );
    assert_eq!(
        second.value, first.value,
        "the restarted process got the first's value"
    );
    assert_eq!(
        second.stats, "l1_hits=0 l2_hits=2 loads=0 errors=0",
        "two file hits"
    );
    assert_default_dir_unused(dir.path());
    println!("first run: {first:?}\nsecond run: {second:?}");
}

/// The async child: calls `profile(7)` twice, prints the value and stats.
fn child_async() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let value = profile(7).await;
        assert_eq!(profile(7).await, value, "the second call agrees");
        report(&value, &profile_stats());
    });
}

/// The plain child: calls `squares(5)` twice, prints the value and stats.
fn child_plain() {
    let value = squares(5);
    assert_eq!(squares(5), value, "the second call agrees");
    report(&format!("{value:?}"), &squares_stats());
}

fn report(value: &str, stats: &cachekit::CacheStats) {
    println!();
    println!("CHILD VALUE {value}");
    println!(
        "CHILD STATS l1_hits={} l2_hits={} loads={} errors={}",
        stats.l1_hits, stats.l2_hits, stats.loads, stats.errors
    );
}

/// What a child saw.
#[derive(Debug)]
struct Answer {
    pid: u32,
    value: String,
    stats: String,
}

/// Runs this test as a child in `mode` on the cache in `dir`, with only the
/// test's `CACHEKIT_*` variables (the file backend's directory, and `vars`).
fn run_child(test: &str, mode: &str, dir: &Path, vars: &[(&str, &str)]) -> Answer {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CACHEKIT_") {
            command.env_remove(name);
        }
    }
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .current_dir(dir)
        .env(CHILD_MODE, mode)
        .env(RUNS_LOG, dir.join("runs"))
        .env("XDG_CACHE_HOME", dir.join("xdg"))
        .env("CACHEKIT_FILE_CACHE_DIR", dir.join("cache"))
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("the test binary runs as a child");
    let pid = child.id();
    let output = child.wait_with_output().expect("the child ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} from the child: {stdout}"))
            .to_owned()
    };
    Answer {
        pid,
        value: line("CHILD VALUE "),
        stats: line("CHILD STATS "),
    }
}

/// The bodies that ran, in order, across every child so far: `<name> <pid>`.
fn body_runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many entry files the cache directory holds.
fn entry_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("cache").join("entries"))
        .expect("the file backend's entries")
        .filter(|item| {
            let name = item.as_ref().expect("an entry").file_name();
            !name.to_string_lossy().starts_with('.')
        })
        .count()
}

/// The user's cache directory (here the temp one `XDG_CACHE_HOME` names)
/// was never created.
fn assert_default_dir_unused(dir: &Path) {
    assert!(
        !dir.join("xdg").exists(),
        "something used the default cache directory"
    );
}
