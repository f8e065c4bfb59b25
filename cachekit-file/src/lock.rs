//! Locks with a lease, shared by the processes of one host.
//!
//! The lock on a key is a record in `locks/<name>`: its holder's token, the
//! end of its lease, and its fencing value. A process reads or changes a
//! record only while it holds the file's `flock`, a critical section of a
//! few system calls, waited for at most `lock_timeout`. Released locks
//! leave no file. Fencing values come from `locks/fence`, a counter shared
//! by every key, so they grow across keys, processes and restarts.
//!
//! A lock file is removed while its `flock` is held; a process that opened
//! it just before checks, once it holds the `flock`, that the file is still
//! the one at the path, and otherwise opens the new one.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cachekit_core::backend::LockToken;
use cachekit_core::{Error, Result};
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::dir::{Dirs, FILE_MODE};
use crate::errors;
use crate::name::Name;
use crate::store::{Store, unix_ms};

/// The file of the shared fencing counter, in `locks/`.
const FENCE_FILE: &str = "fence";
/// Longest pause between two tries of a held `flock`.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// The lock records of one cache directory.
#[derive(Debug)]
pub(crate) struct Locks<'a> {
    /// The cache, whose `locks/` holds the records.
    pub(crate) store: &'a Store,
    /// Longest wait for a record's `flock`.
    pub(crate) timeout: Duration,
}

/// A lock record: who holds the key, until when, with which fence.
struct Record {
    expiry_ms: u64,
    fence: u64,
    token: String,
}

impl Locks<'_> {
    /// Takes the lock on `key` for `lease`: `None` while another holder's
    /// lease runs.
    pub(crate) fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>> {
        let name = Name::of(key);
        let (dirs, file) = self.open_held(&name, true)?.expect("created if missing");
        let now = unix_ms(SystemTime::now());
        if read_record(&file).is_some_and(|held| held.expiry_ms > now) {
            return Ok(None);
        }
        let fence = self.next_fence(&dirs)?;
        let token = LockToken::random();
        let record = Record {
            expiry_ms: lease_end(now, lease),
            fence,
            token: token.as_str().to_owned(),
        };
        write_record(&file, &record).map_err(|e| self.failed("lock", e))?;
        Ok(Some(token.with_fence(fence)))
    }

    /// Releases the lock on `key` if `token` holds it.
    pub(crate) fn unlock(&self, key: &str, token: &LockToken) -> Result<bool> {
        let name = Name::of(key);
        let Some((dirs, file)) = self.open_held(&name, false)? else {
            return Ok(false);
        };
        if read_record(&file).is_none_or(|held| held.token != token.as_str()) {
            return Ok(false);
        }
        rustix::fs::unlinkat(&dirs.locks, name.as_str(), AtFlags::empty())
            .map_err(|errno| self.failed("unlock", errno.into()))?;
        drop(file);
        Ok(true)
    }

    /// Restarts the lease of `token`'s lock on `key` at `lease` from now.
    pub(crate) fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool> {
        let name = Name::of(key);
        let Some((_, file)) = self.open_held(&name, false)? else {
            return Ok(false);
        };
        let now = unix_ms(SystemTime::now());
        let Some(mut record) = read_record(&file) else {
            return Ok(false);
        };
        if record.token != token.as_str() || record.expiry_ms <= now {
            return Ok(false);
        }
        record.expiry_ms = lease_end(now, lease);
        write_record(&file, &record).map_err(|e| self.failed("extend", e))?;
        Ok(true)
    }

    /// Removes the lock files whose lease ran out unreleased (their holders
    /// died, or were dropped without a runtime to release on): the count
    /// removed. Scans run it, so that `locks/` does not keep one file per
    /// key ever locked.
    pub(crate) fn sweep(&self) -> usize {
        let dirs = self.store.dirs();
        let Ok(listing) = rustix::fs::Dir::read_from(&dirs.locks) else {
            return 0;
        };
        let now = unix_ms(SystemTime::now());
        listing
            .flatten()
            .filter_map(|item| Name::parse(item.file_name()))
            .filter(|name| self.remove_if_stale(name, now).unwrap_or(false))
            .count()
    }

    /// Removes the lock file of `name` if no lease in it runs at `now_ms`.
    fn remove_if_stale(&self, name: &Name, now_ms: u64) -> Result<bool> {
        let Some((dirs, file)) = self.open_held(name, false)? else {
            return Ok(false);
        };
        if read_record(&file).is_some_and(|held| held.expiry_ms > now_ms) {
            return Ok(false);
        }
        rustix::fs::unlinkat(&dirs.locks, name.as_str(), AtFlags::empty())
            .map_err(|errno| self.failed("unlock", errno.into()))?;
        Ok(true)
    }

    /// Opens the lock file of `name` (creating it if `create`) and takes
    /// its `flock`: the directories it is in and the file, or `None` if
    /// there is no such file.
    fn open_held(&self, name: &Name, create: bool) -> Result<Option<(Arc<Dirs>, File)>> {
        let mut flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if create {
            flags |= OFlags::CREATE;
        }
        // Each turn follows a removal by another holder; a few suffice.
        for _ in 0..16 {
            let dirs = self.store.dirs();
            let fd = match rustix::fs::openat(
                &dirs.locks,
                name.as_str(),
                flags,
                Mode::from_raw_mode(FILE_MODE),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if !create => return Ok(None),
                Err(Errno::NOENT) => {
                    self.store.reopen(&dirs)?;
                    continue;
                }
                Err(Errno::LOOP | Errno::MLINK) => {
                    let _ = rustix::fs::unlinkat(&dirs.locks, name.as_str(), AtFlags::empty());
                    return Err(errors::symlink(self.store.path(), name));
                }
                Err(errno) => return Err(self.failed("lock", errno.into())),
            };
            self.flock(&fd)?;
            let same = match (
                rustix::fs::fstat(&fd),
                rustix::fs::statat(&dirs.locks, name.as_str(), AtFlags::SYMLINK_NOFOLLOW),
            ) {
                (Ok(open), Ok(now)) => (open.st_dev, open.st_ino) == (now.st_dev, now.st_ino),
                _ => false,
            };
            if same {
                return Ok(Some((dirs, File::from(fd))));
            }
            if !create {
                return Ok(None);
            }
        }
        Err(Error::unavailable(
            "file",
            format!(
                "the lock file of {name:?} kept being replaced while this process waited for it"
            ),
        ))
    }

    /// Takes the exclusive `flock` of `fd`, waiting at most the timeout.
    fn flock(&self, fd: impl AsFd) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(()),
                Err(Errno::WOULDBLOCK | Errno::INTR) => {}
                Err(errno) => return Err(self.failed("lock", errno.into())),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::timeout("file", "lock", self.timeout));
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// The next fencing value: one more than the last handed out by any
    /// process on this directory.
    fn next_fence(&self, dirs: &Dirs) -> Result<u64> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(
            &dirs.locks,
            FENCE_FILE,
            flags,
            Mode::from_raw_mode(FILE_MODE),
        )
        .map_err(|errno| self.failed("lock", errno.into()))?;
        self.flock(&fd)?;
        let file = File::from(fd);
        let mut last = [0u8; 8];
        let read = file
            .read_at(&mut last, 0)
            .map_err(|e| self.failed("lock", e))?;
        let last = if read == 8 {
            u64::from_le_bytes(last)
        } else {
            0
        };
        let next = last + 1;
        file.write_all_at(&next.to_le_bytes(), 0)
            .map_err(|e| self.failed("lock", e))?;
        Ok(next)
    }

    fn failed(&self, operation: &'static str, error: std::io::Error) -> Error {
        errors::io(operation, self.store.path(), error)
    }
}

/// The end of a lease of `lease` from `now_ms` (at least a millisecond on).
fn lease_end(now_ms: u64, lease: Duration) -> u64 {
    let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
    now_ms.saturating_add(ms)
}

/// The record in `file`, if it holds one: 8 bytes of lease end, 8 of
/// fence (little-endian), then the token.
fn read_record(mut file: &File) -> Option<Record> {
    let mut bytes = Vec::with_capacity(64);
    file.by_ref().take(1024).read_to_end(&mut bytes).ok()?;
    if bytes.len() < 16 {
        return None;
    }
    Some(Record {
        expiry_ms: u64::from_le_bytes(bytes[0..8].try_into().ok()?),
        fence: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        token: String::from_utf8(bytes[16..].to_vec()).ok()?,
    })
}

/// Writes `record` over the content of `file`.
fn write_record(file: &File, record: &Record) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(16 + record.token.len());
    bytes.extend_from_slice(&record.expiry_ms.to_le_bytes());
    bytes.extend_from_slice(&record.fence.to_le_bytes());
    bytes.extend_from_slice(record.token.as_bytes());
    file.write_all_at(&bytes, 0)?;
    file.set_len(bytes.len() as u64)
}
