//! Running steps and external commands, failing fast with a clear message.

use std::env;
use std::path::Path;
use std::process::{Command, Stdio};

/// The outcome of a step: the error is the message shown to the user.
pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// Prints `==> name`, runs `body`, and names the step in its error; returns
/// what `body` returns.
pub(crate) fn step<T>(name: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    body().map_err(|error| format!("step `{name}` failed: {error}"))
}

/// Runs `command` with the terminal's stdin/stdout/stderr; fails unless it
/// exits successfully.
pub(crate) fn run(command: &mut Command) -> Result {
    let shown = display(command);
    let status = command
        .status()
        .map_err(|error| format!("could not run `{shown}`: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` exited with {status}"))
    }
}

/// Runs `command` quietly and returns its trimmed stdout, or `None` if it
/// cannot be run or does not exit successfully.
pub(crate) fn output(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether `program` is an executable file in one of the `PATH` directories.
pub(crate) fn on_path(program: &str) -> bool {
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

/// Whether `path` is a file the current user may execute (approximately: any
/// execute bit set).
#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether `path` (or `path.exe`) is a file.
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}

/// The command line of `command`, for messages.
fn display(command: &Command) -> String {
    let mut shown = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}
