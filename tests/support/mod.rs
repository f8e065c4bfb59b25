//! What the tests of the examples share: finding an example's binary,
//! running it with only the configuration a test gives it, and a free port.
//!
//! Each test file that runs an example declares `mod support;`; a file uses
//! only part of it, hence the `dead_code` allowance.

#![allow(dead_code)]

pub(crate) mod http;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary of example `name`: the one `cargo test` built next to this
/// test's directory, or, when targets were named (`--test NAME`, which
/// builds no examples), one this test builds now with `features` in a target
/// directory of its own (so as not to wait on the lock of the one cargo
/// holds while it runs the tests).
pub(crate) fn example_binary(name: &str, features: &str) -> PathBuf {
    prebuilt_or_build(name, name, &["--features", features], "examples-for-tests")
}

/// The binary `examples/FILE` next to this test's directory if it is there
/// (built by `cargo test`, or by `cargo xtask test` under a name of its
/// own), else example `name` built now with `feature_args` into the target
/// directory `own_target` beside the one this test runs from, and kept
/// there as `FILE` (a later build of the example replaces cargo's copy).
pub(crate) fn prebuilt_or_build(
    file: &str,
    name: &str,
    feature_args: &[&str],
    own_target: &str,
) -> PathBuf {
    let file = format!("{file}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/TEST-HASH -> target/debug
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let prebuilt = profile_dir.join("examples").join(&file);
    if prebuilt.is_file() {
        return prebuilt;
    }
    let own_target = profile_dir
        .parent()
        .expect("target/<profile> has a parent")
        .join(own_target);
    eprintln!(
        "{} is missing: building the example into {}",
        prebuilt.display(),
        own_target.display()
    );
    let built = build_example(name, feature_args, &own_target);
    let kept = own_target.join(&file);
    std::fs::copy(&built, &kept).expect("keep a copy of the example's binary");
    kept
}

/// Builds example `name` with cargo `feature_args` (`["--features", "redis"]`,
/// `["--no-default-features", ...]`) into `target_dir`, and returns its binary.
pub(crate) fn build_example(
    name: &str,
    feature_args: &[&str],
    target_dir: &std::path::Path,
) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name])
        .args(feature_args)
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo build --example {name} {}: {status}",
        feature_args.join(" ")
    );
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    target_dir.join("debug").join("examples").join(file)
}

/// A command for `binary` that sees none of this process's `CACHEKIT_`
/// variables: only the configuration the test gives it.
pub(crate) fn clean_command(binary: &std::path::Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CACHEKIT_")) {
        command.env_remove(name);
    }
    command
}

/// Runs `command` to its end within `timeout` and returns what it printed;
/// panics, killing it, if it takes longer.
pub(crate) fn run_to_end(mut command: Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Everything `pipe` yields until it closes, read on a thread.
fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A running example, killed on drop so a failed assertion leaks nothing.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines `stdout` prints, read on a thread so that a silent child fails
/// the test (through `recv_timeout`) instead of hanging it.
pub(crate) fn lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// A 127.0.0.1 port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
