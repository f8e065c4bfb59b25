//! Making sure the `memcached` and `redis-server` programs that the tests
//! start are installed, installing them with apt-get when possible.

use std::process::Command;

use crate::cmd::{self, Result};

/// The server programs the tests start, and the flag printing each version.
const PROGRAMS: [(&str, &str); 2] = [("memcached", "-V"), ("redis-server", "--version")];

/// The Debian/Ubuntu packages providing [`PROGRAMS`].
const APT_PACKAGES: [&str; 2] = ["memcached", "redis-server"];

/// Installs the missing servers if it can, then prints the versions found.
pub(crate) fn ensure_installed() -> Result {
    let missing = missing_programs();
    if !missing.is_empty() {
        println!("{} not found on PATH", missing.join(", "));
        install_with_apt(&missing)?;
        let still_missing = missing_programs();
        if !still_missing.is_empty() {
            return Err(format!(
                "{} still not found on PATH after installing; {}",
                still_missing.join(", "),
                manual_install_hint()
            ));
        }
    }
    for (program, version_flag) in PROGRAMS {
        cmd::run(Command::new(program).arg(version_flag))?;
    }
    Ok(())
}

/// The programs of [`PROGRAMS`] that are not on `PATH`.
fn missing_programs() -> Vec<&'static str> {
    PROGRAMS
        .iter()
        .map(|&(program, _)| program)
        .filter(|program| !cmd::on_path(program))
        .collect()
}

/// Runs `apt-get update` and `apt-get install`, as root directly or else
/// through `sudo -n` (never prompting for a password).
fn install_with_apt(missing: &[&str]) -> Result {
    let not_found = missing.join(", ");
    if !cmd::on_path("apt-get") {
        return Err(format!(
            "{not_found} not found on PATH and apt-get is not available; {}",
            manual_install_hint()
        ));
    }
    let use_sudo = if is_root() {
        false
    } else if cmd::on_path("sudo") {
        true
    } else {
        return Err(format!(
            "{not_found} not found on PATH, and installing needs root but sudo is not available; {}",
            manual_install_hint()
        ));
    };
    let install: Vec<&str> = ["install", "-y", "--no-install-recommends"]
        .into_iter()
        .chain(APT_PACKAGES)
        .collect();
    for args in [&["update"][..], &install] {
        cmd::run(&mut apt_get(use_sudo, args))
            .map_err(|error| format!("{error}; {}", manual_install_hint()))?;
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
        "install them with `brew install memcached redis` and run `cargo xtask test` again"
    } else {
        "install them with `sudo apt-get install -y memcached redis-server` \
         (Debian/Ubuntu; `brew install memcached redis` on macOS) and run `cargo xtask test` again"
    }
}
