//! `cargo xtask docs` and `cargo xtask rustdoc`: the generated reference
//! pages (written by the `docgen` crate, which links every backend to read
//! their declarations; xtask itself stays plain std) and the API docs.

use crate::cmd::{self, Result};
use crate::project;

/// Writes the generated pages, or with `check` fails naming each stale one.
pub(crate) fn generate(check: bool) -> Result {
    let name = if check {
        "cargo xtask docs --check"
    } else {
        "cargo xtask docs"
    };
    cmd::step(name, || {
        let mut command = project::cargo();
        command.args(["run", "--quiet", "--package", "docgen", "--"]);
        if check {
            command.arg("--check");
        }
        cmd::run(&mut command)
    })
}

/// Builds the API docs of every crate with every feature, warnings denied
/// (a broken intra-doc link fails), and opens them in a browser if `open`.
pub(crate) fn rustdoc(open: bool) -> Result {
    cmd::step("cargo doc --workspace --all-features --no-deps", || {
        let mut command = project::cargo();
        command
            .args(["doc", "--workspace", "--all-features", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings");
        if open {
            command.args(["--open", "--package", "cachekit"]);
        }
        cmd::run(&mut command)
    })
}
