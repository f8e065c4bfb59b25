//! `cargo xtask`: the automation of the cachekit project, written as a plain
//! Rust program (the [xtask] pattern) so that it needs nothing but cargo.
//!
//! `cargo xtask help` lists the subcommands.
//!
//! [xtask]: https://github.com/matklad/cargo-xtask

mod api;
mod bench;
mod cmd;
mod docs;
mod project;
mod python;
mod servers;
mod test;

use std::process::ExitCode;

/// What `cargo xtask help` (or an unknown subcommand) prints.
const USAGE: &str = "\
Usage: cargo xtask <SUBCOMMAND>

Subcommands:
  test    The one test command of the project: installs memcached,
          redis-server and redis-cli if they are missing, makes the
          interop tests' Python venv (target/interop-venv, with
          cachekit==0.24.1 and pymemcache==4.0.0 from PyPI) if it is
          missing or stale, then runs, failing fast,
            cargo fmt --all -- --check
            cargo clippy --workspace --all-targets --all-features -- -D warnings
            cargo test --workspace --all-features
              (with CACHEKIT_INTEROP_PYTHON set to the venv's python)
            cargo xtask docs --check
            cargo xtask api --check
  bench [memcached|macro|redis|file|l1]
          Starts the benchmark's servers (three memcached, or one
          redis-server; none for file, which measures a temp directory on
          disk, nor for l1, which measures in-process caches) pinned to one
          CPU and runs the benchmark pinned to another (all of them, each
          with its servers, when none is named); prints tables of ratios
          against raw clients or other caches measured in the same run
  api [--check]
          Writes docs/public-api.txt, the public API of the facade with
          every feature on, from `cargo doc` (warnings are errors); with
          --check, fails if the file is not current
  docs [--check | --open]
          Writes the reference pages generated from the code's
          declarations (docs/backends.md, docs/configuration.md, the
          README's feature table); with --check, fails naming each stale
          file; with --open, then builds the API docs and opens them
  rustdoc [--open]
          Builds the API docs of every crate with every feature
          (cargo doc --workspace --all-features --no-deps), warnings denied
  help    Prints this message
";

/// Exit code for a command line that names no known subcommand.
const USAGE_ERROR: u8 = 2;

/// Dispatches on the subcommand.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["test"] => finish(test::run()),
        ["api"] => finish(api::run(false)),
        ["api", "--check"] => finish(api::run(true)),
        ["docs"] => finish(docs::generate(false)),
        ["docs", "--check"] => finish(docs::generate(true)),
        ["docs", "--open"] => finish(docs::generate(false).and_then(|()| docs::rustdoc(true))),
        ["rustdoc"] => finish(docs::rustdoc(false)),
        ["rustdoc", "--open"] => finish(docs::rustdoc(true)),
        ["bench"] => finish(bench::run(None)),
        ["bench", target] => finish(bench::run(Some(target))),
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        [] => usage_error("no subcommand given"),
        [subcommand] => usage_error(&format!("unknown subcommand `{subcommand}`")),
        [subcommand, extra, ..] => usage_error(&format!(
            "unexpected argument `{extra}` after `{subcommand}`"
        )),
    }
}

/// Prints `problem` and the usage to stderr, and returns the usage exit code.
fn usage_error(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\n");
    eprint!("{USAGE}");
    ExitCode::from(USAGE_ERROR)
}

/// Turns the outcome of a subcommand into the exit code, printing the error.
fn finish(outcome: cmd::Result) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
