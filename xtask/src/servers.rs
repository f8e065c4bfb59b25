//! Making sure the `memcached` and `redis-server` programs that the tests
//! start, and the `redis-cli` that forms their Redis Cluster, are installed,
//! installing them with apt-get when possible.

use std::process::Command;

use crate::cmd::{self, Result};

/// A program the tests run.
struct Program {
    /// The executable looked up on `PATH`.
    name: &'static str,
    /// The flag that prints its version.
    version_flag: &'static str,
    /// The Debian/Ubuntu package that provides it.
    apt_package: &'static str,
    /// What the tests use it for, for the message when it is missing.
    used_for: &'static str,
}

/// The programs the tests run.
const PROGRAMS: [Program; 3] = [
    Program {
        name: "memcached",
        version_flag: "-V",
        apt_package: "memcached",
        used_for: "the memcached backend's tests",
    },
    Program {
        name: "redis-server",
        version_flag: "--version",
        apt_package: "redis-server",
        used_for: "the redis backend's tests and the Redis Cluster nodes",
    },
    Program {
        name: "redis-cli",
        version_flag: "--version",
        apt_package: "redis-tools",
        used_for: "forming the test kit's Redis Cluster",
    },
];

/// Installs the missing programs if it can, then prints the versions found.
pub(crate) fn ensure_installed() -> Result {
    let missing = missing_programs();
    if !missing.is_empty() {
        println!("{} not found on PATH", describe(&missing));
        install_with_apt(&missing)?;
        let still_missing = missing_programs();
        if !still_missing.is_empty() {
            return Err(format!(
                "{} still not found on PATH after installing; {}",
                describe(&still_missing),
                manual_install_hint()
            ));
        }
    }
    for program in &PROGRAMS {
        cmd::run(Command::new(program.name).arg(program.version_flag))?;
    }
    Ok(())
}

/// The programs of [`PROGRAMS`] that are not on `PATH`.
fn missing_programs() -> Vec<&'static Program> {
    PROGRAMS
        .iter()
        .filter(|program| !cmd::on_path(program.name))
        .collect()
}

/// Names `programs` with their packages and uses:
/// `redis-cli (Debian package redis-tools, for forming ...)`.
fn describe(programs: &[&Program]) -> String {
    programs
        .iter()
        .map(|program| {
            format!(
                "{} (Debian package {}, for {})",
                program.name, program.apt_package, program.used_for
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `apt-get update` and `apt-get install` of every package of
/// [`PROGRAMS`].
fn install_with_apt(missing: &[&Program]) -> Result {
    let packages: Vec<&str> = PROGRAMS.iter().map(|program| program.apt_package).collect();
    apt_install(&packages, &describe(missing), manual_install_hint())
}

/// Runs `apt-get update` and `apt-get install` of `packages`, as root
/// directly or else through `sudo -n` (never prompting for a password).
/// `not_found` names what is missing and `hint` says how to install it by
/// hand, for the error messages.
pub(crate) fn apt_install(packages: &[&str], not_found: &str, hint: &str) -> Result {
    if !cmd::on_path("apt-get") {
        return Err(format!(
            "{not_found} not found on PATH and apt-get is not available; {hint}"
        ));
    }
    let use_sudo = if is_root() {
        false
    } else if cmd::on_path("sudo") {
        true
    } else {
        return Err(format!(
            "{not_found} not found on PATH, and installing needs root but sudo is not available; {hint}"
        ));
    };
    let install: Vec<&str> = ["install", "-y", "--no-install-recommends"]
        .into_iter()
        .chain(packages.iter().copied())
        .collect();
    for args in [&["update"][..], &install] {
        cmd::run(&mut apt_get(use_sudo, args)).map_err(|error| format!("{error}; {hint}"))?;
    }
    Ok(())
}

/// A non-interactive `apt-get <args>` command, through `sudo -n` if asked.
fn apt_get(use_sudo: bool, args: &[&str]) -> Command {
    if use_sudo {
        // sudo resets the environment, so `env` sets the variable past it.
        let mut command = Command::new("sudo");
        command
            .args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"])
            .args(args);
        command
    } else {
        let mut command = Command::new("apt-get");
        command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        command
    }
}

/// Whether this process runs as root, according to `id -u`.
pub(crate) fn is_root() -> bool {
    cmd::output(Command::new("id").arg("-u")).as_deref() == Some("0")
}

/// How to install the servers by hand, for error messages.
fn manual_install_hint() -> &'static str {
    if cfg!(target_os = "macos") {
        "install them with `brew install memcached redis` (redis includes redis-cli) \
         and run `cargo xtask test` again"
    } else {
        "install them with `sudo apt-get install -y memcached redis-server redis-tools` \
         (Debian/Ubuntu; `brew install memcached redis` on macOS) and run `cargo xtask test` again"
    }
}
