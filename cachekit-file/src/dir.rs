//! Opening the cache directory safely: created 0700, never through a
//! symbolic link, owned by this process's user.
//!
//! Every later file operation goes through the descriptors opened here
//! (`openat` and friends with `O_NOFOLLOW`), so a link planted in place of
//! the directory after the start is not followed either.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// The subdirectory of the entries.
const ENTRIES: &str = "entries";
/// The subdirectory of the lock files.
const LOCKS: &str = "locks";

/// Mode of every directory the backend creates: its user only.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the backend creates: its user only.
pub(crate) const FILE_MODE: u32 = 0o600;

/// The open directories of one cache.
#[derive(Debug)]
pub(crate) struct Dirs {
    /// The cache directory, for messages.
    pub(crate) path: PathBuf,
    /// `<cache_dir>/entries`: one file per entry.
    pub(crate) entries: OwnedFd,
    /// `<cache_dir>/locks`: one file per held lock, and the fence counter.
    pub(crate) locks: OwnedFd,
}

/// Opens (creating if missing) the cache directory at `path` and its
/// subdirectories; the reason, for `file.cache_dir`, when it cannot or
/// must not be used.
pub(crate) fn open(path: &Path) -> Result<Dirs, String> {
    let shown = path.display();
    if path.symlink_metadata().is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .map_err(|error| format!("cannot create {shown}: {error}"))?;
    }
    let root = rustix::fs::open(path, dir_flags(), Mode::empty()).map_err(|errno| {
        let link = path.symlink_metadata().is_ok_and(|meta| meta.is_symlink());
        match errno {
            // Linux answers a link opened as a directory with ENOTDIR.
            Errno::LOOP | Errno::MLINK | Errno::NOTDIR if link => format!(
                "{shown} is a symbolic link; cachekit never follows links for its directory (another user could plant one): name the real directory"
            ),
            Errno::NOTDIR => format!("{shown} is not a directory"),
            errno => format!("cannot open {shown}: {}", std::io::Error::from(errno)),
        }
    })?;
    check_owner_and_mode(&root, &shown.to_string())?;
    let entries = subdirectory(&root, path, ENTRIES)?;
    let locks = subdirectory(&root, path, LOCKS)?;
    // The new subdirectories' names are durable before any entry is.
    rustix::fs::fsync(&root).map_err(|errno| {
        format!(
            "cannot flush {shown} to disk: {}",
            std::io::Error::from(errno)
        )
    })?;
    Ok(Dirs {
        path: path.to_path_buf(),
        entries,
        locks,
    })
}

/// Flags that open a directory and refuse a link in its place.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens (creating if missing) the subdirectory `name` of `root`.
fn subdirectory(root: &OwnedFd, path: &Path, name: &str) -> Result<OwnedFd, String> {
    let shown = path.join(name).display().to_string();
    match rustix::fs::mkdirat(root, name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(errno) => {
            return Err(format!(
                "cannot create {shown}: {}",
                std::io::Error::from(errno)
            ));
        }
    }
    let dir = rustix::fs::openat(root, name, dir_flags(), Mode::empty()).map_err(|errno| {
        let link = rustix::fs::statat(root, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_symlink());
        match errno {
            Errno::LOOP | Errno::MLINK | Errno::NOTDIR if link => {
                format!("{shown} is a symbolic link; cachekit never follows links: remove it")
            }
            Errno::NOTDIR => format!("{shown} is not a directory: remove it"),
            errno => format!("cannot open {shown}: {}", std::io::Error::from(errno)),
        }
    })?;
    check_owner_and_mode(&dir, &shown)?;
    Ok(dir)
}

/// Refuses a directory of another user (one planted in a shared temp
/// directory, say), and narrows one of ours that others may read to 0700.
fn check_owner_and_mode(dir: impl AsFd, shown: &str) -> Result<(), String> {
    let stat = rustix::fs::fstat(&dir)
        .map_err(|errno| format!("cannot read {shown}: {}", std::io::Error::from(errno)))?;
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid != me {
        return Err(format!(
            "{shown} belongs to user {}, not to this process's user {me}; another user's directory could serve forged entries: name a directory of your own",
            stat.st_uid
        ));
    }
    if stat.st_mode & 0o077 != 0 {
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(DIR_MODE)).map_err(|errno| {
            format!(
                "{shown} is open to other users (mode {:o}) and cannot be narrowed to 0700: {}",
                stat.st_mode & 0o777,
                std::io::Error::from(errno)
            )
        })?;
        tracing::warn!(
            dir = shown,
            mode = format_args!("{:o}", stat.st_mode & 0o777),
            "cachekit narrowed its cache directory to mode 0700"
        );
    }
    Ok(())
}
