//! The Python virtual environment of the interop tests: the real cachekit-py
//! package, which `tests/interop/python_side.py` drives to write and read
//! the entries that the Rust side must read and write.
//!
//! The environment is `interop-venv` in the target directory, created with
//! `python3 -m venv` and filled with pip from the package index, and reused
//! while it holds the pinned versions. Its interpreter reaches the tests as
//! [`INTEROP_PYTHON_VAR`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Result};
use crate::{project, servers};

/// The environment variable that gives the tests the venv's interpreter.
pub(crate) const INTEROP_PYTHON_VAR: &str = "CACHEKIT_INTEROP_PYTHON";

/// The pinned packages, as pip requirements and as `name version` pairs
/// that [`is_ready`] compares with what is installed.
const PACKAGES: [(&str, &str); 2] = [("cachekit", "0.24.1"), ("pymemcache", "4.0.0")];

/// The Debian/Ubuntu packages that provide `python3` and its `venv` module
/// (`python3 -m venv` fails without `python3-venv`, which brings ensurepip).
const APT_PACKAGES: [&str; 2] = ["python3", "python3-venv"];

/// Makes sure the interop venv exists with the pinned packages, creating or
/// recreating it if not, and returns the path of its interpreter. Any
/// failure is an error: the interop tests need the venv, so it is never
/// skipped.
pub(crate) fn ensure_interop_venv() -> Result<PathBuf> {
    let venv = project::target_dir().join("interop-venv");
    let python = interpreter(&venv);
    if is_ready(&python) {
        println!("{} is ready", venv.display());
        return Ok(python);
    }
    create_venv(&venv)?;
    let requirements: Vec<String> = PACKAGES
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    cmd::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
            ])
            .args(&requirements),
    )?;
    if !is_ready(&python) {
        return Err(format!(
            "{} does not import {} after installing them",
            venv.display(),
            requirements.join(" and ")
        ));
    }
    Ok(python)
}

/// The interpreter of the venv at `venv`.
fn interpreter(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Whether `python` runs, imports cachekit and pymemcache, and has exactly
/// the versions of [`PACKAGES`] installed.
fn is_ready(python: &Path) -> bool {
    let script = "import cachekit, pymemcache, importlib.metadata as m; \
                  print(' '.join(n + ' ' + m.version(n) for n in ('cachekit', 'pymemcache')))";
    let expected: Vec<String> = PACKAGES
        .iter()
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    python.is_file()
        && cmd::output(Command::new(python).args(["-c", script])).as_deref()
            == Some(expected.join(" ").as_str())
}

/// Creates an empty venv at `venv` (replacing whatever is there) with
/// `python3 -m venv --clear`; if that fails, installs [`APT_PACKAGES`] the
/// way the servers are installed and tries once more.
fn create_venv(venv: &Path) -> Result {
    let create = || {
        cmd::run(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(venv),
        )
    };
    if cmd::on_path("python3") && create().is_ok() {
        return Ok(());
    }
    println!(
        "python3 with its venv module could not create {}; installing {}",
        venv.display(),
        APT_PACKAGES.join(" ")
    );
    let hint = "install Python 3.10 or later with its venv module (Debian/Ubuntu: \
                `sudo apt-get install -y python3 python3-venv`) and run `cargo xtask test` again";
    servers::apt_install(&APT_PACKAGES, "python3 with its venv module", hint)?;
    create().map_err(|error| format!("{error}; {hint}"))
}
