//! How file errors become cachekit errors: each says what failed, where,
//! and what to do.

use std::path::Path;

use cachekit_core::Error;

use crate::name::Name;

/// The backend's name in errors.
const BACKEND: &str = "file";

/// An error of `operation` on the cache at `dir`: a full disk or a
/// missing directory is temporary ([`Error::Unavailable`]: space can be
/// freed, the directory made again); refused permissions are not
/// ([`Error::Rejected`]).
pub(crate) fn io(operation: &'static str, dir: &Path, error: std::io::Error) -> Error {
    let shown = dir.display();
    match rustix::io::Errno::from_io_error(&error) {
        Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT) => Error::unavailable(
            BACKEND,
            Context(
                format!(
                    "{operation}: no space left on the disk of {shown} (existing entries stay readable); free space or lower file.max_size"
                ),
                error,
            ),
        ),
        Some(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM | rustix::io::Errno::ROFS) => {
            Error::rejected(
                BACKEND,
                Context(
                    format!(
                        "{operation}: {shown} refuses this process; check its owner and mode (0700)"
                    ),
                    error,
                ),
            )
        }
        _ => Error::unavailable(BACKEND, Context(format!("{operation} in {shown}"), error)),
    }
}

/// The error for a symbolic link found where the entry `name` belongs.
pub(crate) fn symlink(dir: &Path, name: &Name) -> Error {
    Error::rejected(
        BACKEND,
        format!(
            "{} is a symbolic link where an entry belongs; cachekit never follows links in its directory, and removed it",
            dir.join("entries").join(name.as_str()).display()
        ),
    )
}

/// A message in front of the I/O error that caused it.
#[derive(Debug)]
struct Context(String, std::io::Error);

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}
