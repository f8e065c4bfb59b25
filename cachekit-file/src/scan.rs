//! Listing the entries' directory: the size and last use of every entry,
//! and the removal of expired entries and of temp files their killed
//! writers left behind.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::entry;
use crate::name::Name;
use crate::store::Store;

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Every entry file: name, size, last use (microseconds since the epoch).
    pub(crate) entries: Vec<(Name, u64, u64)>,
    /// Temp files of writers that died mid-write, removed.
    pub(crate) orphans: usize,
    /// Expired entries, removed.
    pub(crate) expired: usize,
}

/// Lists the entries of `store`, removing expired entries and orphaned
/// temp files.
pub(crate) fn scan(store: &Store) -> std::io::Result<Scan> {
    let dirs = store.dirs();
    let dir = &dirs.entries;
    let mut scan = Scan::default();
    let now_ms = crate::store::unix_ms(SystemTime::now());
    for item in rustix::fs::Dir::read_from(dir)? {
        let item = item?;
        let file_name = item.file_name();
        if let Some(name) = Name::parse(file_name) {
            match inspect(dir, file_name, now_ms) {
                Some(Inspected::Live(stat)) => {
                    scan.entries
                        .push((name, stat.st_size as u64, used_us(&stat)));
                }
                Some(Inspected::Expired) => scan.expired += 1,
                None => {}
            }
        } else if is_temp(file_name.to_bytes()) && remove_if_orphan(dir, file_name) {
            scan.orphans += 1;
        }
    }
    Ok(scan)
}

/// Removes the orphaned temp files of `store` (their writers died): the
/// count removed. Names only, no entry is opened, so that a start can
/// run it before it returns, and no orphan outlives the start.
pub(crate) fn remove_orphans(store: &Store) -> std::io::Result<usize> {
    let dirs = store.dirs();
    let mut removed = 0;
    for item in rustix::fs::Dir::read_from(&dirs.entries)? {
        let item = item?;
        let file_name = item.file_name();
        if is_temp(file_name.to_bytes()) && remove_if_orphan(&dirs.entries, file_name) {
            removed += 1;
        }
    }
    Ok(removed)
}

/// What a scan finds at an entry's name.
enum Inspected {
    /// An entry that has not expired (or a file the next read will judge).
    Live(Stat),
    /// An expired entry, now removed.
    Expired,
}

/// Reads the start of the entry file `file_name`: `None` if it is gone or
/// not a regular file. Only the expiry is read; the rest of the file is
/// checked by the read that finds it.
fn inspect(dir: &OwnedFd, file_name: &CStr, now_ms: u64) -> Option<Inspected> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    // The read must not count as a use: access times are the last uses
    // other processes see, and the eviction's second chances read them.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = flags | OFlags::NOATIME;
    let file = File::from(rustix::fs::openat(dir, file_name, flags, Mode::empty()).ok()?);
    let stat = rustix::fs::fstat(&file).ok()?;
    if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() {
        return None;
    }
    let mut start = [0u8; 16];
    let ours = file.read_exact_at(&mut start, 0).is_ok()
        && start[0..4] == entry::MAGIC
        && start[4] == entry::VERSION;
    let expiry = u64::from_le_bytes(start[8..16].try_into().expect("8 bytes"));
    let expired = ours && expiry != 0 && expiry <= now_ms;
    if !expired {
        return Some(Inspected::Live(stat));
    }
    // Removed only if still the file read: a new entry may have replaced it.
    let now = rustix::fs::statat(dir, file_name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    if (now.st_dev, now.st_ino) == (stat.st_dev, stat.st_ino) {
        rustix::fs::unlinkat(dir, file_name, AtFlags::empty()).ok()?;
        return Some(Inspected::Expired);
    }
    None
}

/// Whether `file_name` is a writer's temp file (`.<name>.<pid>.<n>.tmp`).
fn is_temp(file_name: &[u8]) -> bool {
    file_name.starts_with(b".") && file_name.ends_with(b".tmp")
}

/// Removes the temp file `file_name` if no writer holds its lock: its
/// writer died (the kernel drops a dead process's locks).
fn remove_if_orphan(dir: &OwnedFd, file_name: &CStr) -> bool {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dir, file_name, flags, Mode::empty()) else {
        return false;
    };
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        // Removed while locked: a writer that opened it meanwhile finds it
        // unlinked once it gets the lock, and starts again.
        Ok(()) => rustix::fs::unlinkat(dir, file_name, AtFlags::empty()).is_ok(),
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
