//! `cargo xtask test`: the one test command of the project.

use crate::cmd::{self, Result};
use crate::{project, servers};

/// Runs every check, in order, stopping at the first one that fails.
pub(crate) fn run() -> Result {
    cmd::step(
        "memcached, redis-server and redis-cli",
        servers::ensure_installed,
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
    cargo_step(&["test", "--workspace", "--all-features"])?;
    // With every backend feature off: selecting one must name its feature.
    cargo_step(&[
        "test",
        "--package",
        "cachekit",
        "--no-default-features",
        "--test",
        "features",
    ])?;
    // The docs build without warnings, and the public API is the one reviewed.
    crate::api::run(true)?;
    // The README's first command, with nothing configured.
    cargo_step(&["run", "--quiet", "--example", "quickstart"])?;
    println!("==> all checks passed");
    Ok(())
}

/// A step that runs `cargo <args>` in the workspace root, named after it.
fn cargo_step(args: &[&str]) -> Result {
    let name = format!("cargo {}", args.join(" "));
    cmd::step(&name, || cmd::run(project::cargo().args(args)))
}
