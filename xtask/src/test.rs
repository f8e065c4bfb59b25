//! `cargo xtask test`: the one test command of the project.

use std::path::Path;

use crate::cmd::{self, Result};
use crate::{project, python, servers};

/// Runs every check, in order, stopping at the first one that fails.
pub(crate) fn run() -> Result {
    cmd::step(
        "memcached, redis-server and redis-cli",
        servers::ensure_installed,
    )?;
    // The real cachekit-py that the interop tests run against the Rust side.
    let interop_python = cmd::step(
        "Python venv for the interop tests",
        python::ensure_interop_venv,
    )?;
    cargo_step(&["fmt", "--all", "--", "--check"])?;
    // The generated reference pages match the code (also a test of docgen's).
    crate::docs::generate(true)?;
    cargo_step(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ])?;
    // With every backend feature off: selecting one must name its feature.
    cargo_step(&[
        "test",
        "--package",
        "cachekit",
        "--no-default-features",
        "--test",
        "features",
    ])?;
    // The `features` example under two feature sets, built here on what the
    // step above compiled (its test, which cannot build into this target
    // directory while cargo runs it, would otherwise build the whole tree
    // again in one of its own).
    for backend in FEATURES_EXAMPLE_BACKENDS {
        build_features_example(backend)?;
    }
    cargo_step_with_env(
        &["test", "--workspace", "--all-features"],
        &[(python::INTEROP_PYTHON_VAR, &interop_python)],
    )?;
    // The docs build without warnings, and the public API is the one reviewed.
    crate::api::run(true)?;
    // The README's first command, with nothing configured.
    cargo_step(&["run", "--quiet", "--example", "quickstart"])?;
    println!("==> all checks passed");
    Ok(())
}

/// The backends the `features` example is built with, one at a time.
const FEATURES_EXAMPLE_BACKENDS: [&str; 2] = ["memcached", "redis"];

/// Builds the `features` example with only `backend` and copies its binary
/// to `examples/features-BACKEND`, where `tests/example_features.rs` looks
/// first (the next build replaces the one cargo leaves).
fn build_features_example(backend: &str) -> Result {
    cargo_step(&[
        "build",
        "--package",
        "cachekit",
        "--example",
        "features",
        "--no-default-features",
        "--features",
        backend,
    ])?;
    let examples = project::target_dir().join("debug").join("examples");
    let suffix = std::env::consts::EXE_SUFFIX;
    let built = examples.join(format!("features{suffix}"));
    let copy = examples.join(format!("features-{backend}{suffix}"));
    std::fs::copy(&built, &copy)
        .map(drop)
        .map_err(|error| format!("copying {} to {}: {error}", built.display(), copy.display()))
}

/// A step that runs `cargo <args>` in the workspace root, named after it;
/// without incremental compilation, whose caches would double the disk a
/// full run takes (a clean run gains nothing from them).
fn cargo_step(args: &[&str]) -> Result {
    cargo_step_with_env(args, &[])
}

/// [`cargo_step`] with the environment variables `envs` set for cargo and
/// the processes it starts (the test binaries).
fn cargo_step_with_env(args: &[&str], envs: &[(&str, &Path)]) -> Result {
    let name = format!("cargo {}", args.join(" "));
    cmd::step(&name, || {
        let mut command = project::cargo();
        command.env("CARGO_INCREMENTAL", "0").args(args);
        for (key, value) in envs {
            command.env(key, value);
        }
        cmd::run(&mut command)
    })
}
