//! Listing the entries' directory: the size and last use of every entry,
//! and the removal of temp files their killed writers left behind.

use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::name::Name;
use crate::store::Store;

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Every entry file: name, size, last use (microseconds since the epoch).
    pub(crate) entries: Vec<(Name, u64, u64)>,
    /// Temp files of writers that died mid-write, removed.
    pub(crate) orphans: usize,
}

/// Lists the entries of `store`, removing orphaned temp files.
pub(crate) fn scan(store: &Store) -> std::io::Result<Scan> {
    let dirs = store.dirs();
    let dir = &dirs.entries;
    let mut scan = Scan::default();
    for item in rustix::fs::Dir::read_from(dir)? {
        let item = item?;
        let file_name = item.file_name();
        if let Some(name) = Name::parse(file_name) {
            let Ok(stat) = rustix::fs::statat(dir, file_name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue; // removed since it was listed
            };
            if rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() {
                scan.entries
                    .push((name, stat.st_size as u64, used_us(&stat)));
            }
        } else if is_temp(file_name.to_bytes()) && remove_if_orphan(dir, file_name) {
            scan.orphans += 1;
        }
    }
    Ok(scan)
}

/// Whether `file_name` is a writer's temp file (`.<name>.<pid>.<n>.tmp`).
fn is_temp(file_name: &[u8]) -> bool {
    file_name.starts_with(b".") && file_name.ends_with(b".tmp")
}

/// Removes the temp file `file_name` if no writer holds its lock: its
/// writer died (the kernel drops a dead process's locks).
fn remove_if_orphan(dir: impl rustix::fd::AsFd, file_name: &std::ffi::CStr) -> bool {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(&dir, file_name, flags, Mode::empty()) else {
        return false;
    };
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        // Removed while locked: a writer that opened it meanwhile finds it
        // unlinked once it gets the lock, and starts again.
        Ok(()) => rustix::fs::unlinkat(&dir, file_name, AtFlags::empty()).is_ok(),
        Err(Errno::WOULDBLOCK) => false,
        Err(_) => false,
    }
}

/// The last use of a file: its access or modification time, whichever is
/// later, in microseconds since the Unix epoch.
// The fields' types differ between platforms and libc backends.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn used_us(stat: &Stat) -> u64 {
    let us = |secs: i64, nanos: u64| (secs.max(0) as u64) * 1_000_000 + nanos / 1_000;
    us(stat.st_atime as i64, stat.st_atime_nsec as u64)
        .max(us(stat.st_mtime as i64, stat.st_mtime_nsec as u64))
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}
