//! The blocking file operations on the entries: read, write, inspect,
//! touch, remove. Callers run them off the async executor's threads.
//!
//! Writes are atomic: the entry is written to a temp file in the same
//! directory, flushed (`fsync` on), then renamed over the old one, so a
//! reader sees the old entry or the new one, never a part. The writer holds
//! a `flock` on its temp file until the rename: a temp file nobody holds is
//! an orphan of a killed writer, which a scan removes.

use std::fs::{File, FileTimes};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachekit_core::{Error, Result};
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::dir::{Dirs, FILE_MODE};
use crate::entry::{self, Defect, HEADER_LEN, Header};
use crate::errors;
use crate::name::Name;

/// A read older than this refreshes the file's access time, which other
/// processes read as its last use; hotter reads leave it as it is (one
/// metadata write per entry per second at most).
const ACCESS_TIME_STEP: Duration = Duration::from_secs(1);

/// What a read of an entry found.
#[derive(Debug)]
pub(crate) enum Found<T> {
    /// No file for the key.
    Missing,
    /// The entry, and the size of its file.
    Hit(T, u64),
    /// A file that was expired, corrupt, or another key's: removed, a miss.
    Removed,
}

/// A whole entry read and checked.
struct Entry {
    file: File,
    /// The whole file.
    bytes: Vec<u8>,
    header: Header,
    /// The file's metadata when it was opened.
    meta: std::fs::Metadata,
}

/// The entries of one cache, reached through its directory's descriptor.
#[derive(Debug)]
pub(crate) struct Store {
    /// The cache directory, for messages and to make it again.
    path: PathBuf,
    /// Its open directories; replaced when the directory was removed.
    dirs: RwLock<Arc<Dirs>>,
    /// Whether entries are flushed to disk before they replace the old ones.
    fsync: bool,
    /// The largest value accepted; a file longer than one such entry is not one.
    max_value_size: u64,
}

impl Store {
    pub(crate) fn new(dirs: Dirs, fsync: bool, max_value_size: u64) -> Self {
        Store {
            path: dirs.path.clone(),
            dirs: RwLock::new(Arc::new(dirs)),
            fsync,
            max_value_size,
        }
    }

    /// The cache directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open directories.
    pub(crate) fn dirs(&self) -> Arc<Dirs> {
        Arc::clone(
            &self
                .dirs
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Makes the cache directory again if `seen`, the directories an
    /// operation used, were removed (someone cleared the cache with
    /// `rm -r`): the next operations then work on the new one.
    pub(crate) fn reopen(&self, seen: &Arc<Dirs>) -> Result<()> {
        let mut dirs = self
            .dirs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let removed = |fd: &OwnedFd| rustix::fs::fstat(fd).is_ok_and(|stat| stat.st_nlink == 0);
        if !Arc::ptr_eq(&dirs, seen) || !(removed(&seen.entries) || removed(&seen.locks)) {
            return Ok(());
        }
        let reopened = crate::dir::open(&self.path).map_err(|reason| {
            Error::unavailable(
                "file",
                format!("the cache directory was removed and cannot be made again: {reason}"),
            )
        })?;
        tracing::warn!(dir = %self.path.display(), "cachekit's cache directory was removed while in use; made it again");
        *dirs = Arc::new(reopened);
        Ok(())
    }

    /// The value under `key` (file `name`), if a live entry is there.
    pub(crate) fn get(&self, name: &Name, key: &str) -> Result<Found<Bytes>> {
        let (entry, len) = match self.read(name, key, false)? {
            Found::Hit(entry, len) => (entry, len),
            Found::Missing => return Ok(Found::Missing),
            Found::Removed => return Ok(Found::Removed),
        };
        let now = SystemTime::now();
        let meta = &entry.meta;
        let accessed =
            UNIX_EPOCH + Duration::new(meta.atime().max(0) as u64, meta.atime_nsec() as u32);
        if now
            .duration_since(accessed)
            .is_ok_and(|age| age >= ACCESS_TIME_STEP)
        {
            // Best effort: the last use other processes see.
            let _ = entry.file.set_times(FileTimes::new().set_accessed(now));
        }
        let value = Bytes::from(entry.bytes).slice(HEADER_LEN + key.len()..);
        Ok(Found::Hit(value, len))
    }

    /// The header of the live entry under `key`, with its file, open for
    /// writing when `write`. The whole entry is checked, as for
    /// [`Store::get`], so that `exists`, `ttl` and `touch` never disagree
    /// with `get`.
    pub(crate) fn header(
        &self,
        name: &Name,
        key: &str,
        write: bool,
    ) -> Result<Found<(File, Header)>> {
        Ok(match self.read(name, key, write)? {
            Found::Hit(entry, len) => Found::Hit((entry.file, entry.header), len),
            Found::Missing => Found::Missing,
            Found::Removed => Found::Removed,
        })
    }

    /// Reads and checks the whole entry under `key`: the file, its bytes
    /// and its header, if it is live.
    fn read(&self, name: &Name, key: &str, write: bool) -> Result<Found<Entry>> {
        let operation = if write { "touch" } else { "get" };
        let Some(mut file) = self.open(name, write)? else {
            return Ok(Found::Missing);
        };
        let meta = file.metadata().map_err(|e| self.failed(operation, e))?;
        let len = meta.len();
        if !meta.file_type().is_file() {
            return self.drop_defect(name, &file, Defect::Foreign);
        }
        if len > (HEADER_LEN + key.len()) as u64 + self.max_value_size {
            return self.drop_defect(name, &file, Defect::TooLarge);
        }
        // Exactly the length seen: one read, no probe for more (a file
        // that changed since is caught by the checks below).
        let mut bytes = Vec::with_capacity(len as usize);
        (&mut file)
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| self.failed(operation, e))?;
        let header = match entry::parse(&bytes, key) {
            Ok(header) => header,
            Err(defect) => return self.drop_defect(name, &file, defect),
        };
        if header.expired(unix_ms(SystemTime::now())) {
            self.remove_if_same(name, &file);
            return Ok(Found::Removed);
        }
        Ok(Found::Hit(
            Entry {
                file,
                bytes,
                header,
                meta,
            },
            len,
        ))
    }

    /// Sets the expiry of the live entry under `key`; `false` if there is none.
    pub(crate) fn touch(&self, name: &Name, key: &str, expiry_ms: u64) -> Result<bool> {
        let Found::Hit((file, _), _) = self.header(name, key, true)? else {
            return Ok(false);
        };
        file.write_all_at(&expiry_ms.to_le_bytes(), entry::EXPIRY_OFFSET)
            .map_err(|e| self.failed("touch", e))?;
        Ok(true)
    }

    /// Writes the entry `key` → `value` as file `name`, replacing the old
    /// one atomically; the size of the new file.
    pub(crate) fn write(
        &self,
        name: &Name,
        key: &str,
        value: &[u8],
        expiry_ms: u64,
    ) -> Result<u64> {
        let crc = entry::checksum(key.as_bytes(), value);
        let header = entry::header(key, value.len(), expiry_ms, crc);
        let (dirs, temp_name, mut temp) = self.create_temp(name)?;
        let written = (|| {
            // One write for small entries; a large value is not copied.
            if value.len() <= 64 << 10 {
                let mut all = Vec::with_capacity(HEADER_LEN + key.len() + value.len());
                all.extend_from_slice(&header);
                all.extend_from_slice(key.as_bytes());
                all.extend_from_slice(value);
                temp.write_all(&all)?;
            } else {
                let mut head = header.to_vec();
                head.extend_from_slice(key.as_bytes());
                temp.write_all(&head)?;
                temp.write_all(value)?;
            }
            if self.fsync {
                temp.sync_data()?;
            }
            rustix::fs::renameat(&dirs.entries, &temp_name, &dirs.entries, name.as_str())
                .map_err(std::io::Error::from)
        })();
        if let Err(error) = written {
            let _ = rustix::fs::unlinkat(&dirs.entries, &temp_name, AtFlags::empty());
            return Err(self.failed("set", error));
        }
        Ok((HEADER_LEN + key.len() + value.len()) as u64)
    }

    /// Creates a temp file for entry `name`, holding its `flock` (which
    /// tells a scan it is not an orphan), in the directories returned.
    fn create_temp(&self, name: &Name) -> Result<(Arc<Dirs>, String, File)> {
        let mut dirs = self.dirs();
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // A scan may take a new temp file for an orphan between its creation
        // and its lock, and remove it; the writer then starts again. A few
        // attempts suffice: the window is two system calls wide.
        for _ in 0..8 {
            let temp_name = format!(
                ".{}.{}.{}.tmp",
                name.as_str(),
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            );
            let fd = match rustix::fs::openat(
                &dirs.entries,
                &temp_name,
                flags,
                Mode::from_raw_mode(FILE_MODE),
            ) {
                Ok(fd) => fd,
                Err(Errno::EXIST) => continue,
                Err(Errno::NOENT) => {
                    self.reopen(&dirs)?;
                    dirs = self.dirs();
                    continue;
                }
                Err(errno) => return Err(self.failed("set", errno.into())),
            };
            rustix::fs::flock(&fd, FlockOperation::LockExclusive)
                .map_err(|errno| self.failed("set", errno.into()))?;
            let stat = rustix::fs::fstat(&fd).map_err(|errno| self.failed("set", errno.into()))?;
            if stat.st_nlink > 0 {
                return Ok((dirs, temp_name, File::from(fd)));
            }
        }
        Err(self.failed(
            "set",
            std::io::Error::other("temp files kept vanishing before they were locked"),
        ))
    }

    /// Removes the file of `name`; `true` if there was one.
    pub(crate) fn remove(&self, name: &Name) -> Result<bool> {
        match rustix::fs::unlinkat(&self.dirs().entries, name.as_str(), AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(self.failed("delete", errno.into())),
        }
    }

    /// When the file of `name` was last used, as microseconds since the
    /// Unix epoch (its access or modification time, whichever is later).
    pub(crate) fn last_used(&self, name: &Name) -> Option<u64> {
        let stat = rustix::fs::statat(
            &self.dirs().entries,
            name.as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ok()?;
        Some(crate::scan::used_us(&stat))
    }

    /// Opens the file of `name`; `None` if there is none. A symbolic link
    /// there is removed and refused: the backend never follows one.
    fn open(&self, name: &Name, write: bool) -> Result<Option<File>> {
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        // NONBLOCK: a FIFO planted there must not hang the open.
        let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let dirs = self.dirs();
        match rustix::fs::openat(&dirs.entries, name.as_str(), flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::MLINK) => {
                let _ = rustix::fs::unlinkat(&dirs.entries, name.as_str(), AtFlags::empty());
                Err(errors::symlink(&self.path, name))
            }
            Err(errno) => Err(self.failed(if write { "touch" } else { "get" }, errno.into())),
        }
    }

    /// Removes the file of `name` for `defect` (if it is still the file
    /// read), and says so: a miss.
    fn drop_defect<T>(&self, name: &Name, file: &File, defect: Defect) -> Result<Found<T>> {
        tracing::warn!(
            dir = %self.path.display(),
            entry = name.as_str(),
            %defect,
            "cachekit removed an unreadable cache entry; it reads as a miss"
        );
        self.remove_if_same(name, file);
        Ok(Found::Removed)
    }

    /// Removes the file of `name` if it is still `file`, not a newer entry
    /// renamed over it since.
    fn remove_if_same(&self, name: &Name, file: &File) {
        let dirs = self.dirs();
        let (Ok(open), Ok(now)) = (
            rustix::fs::fstat(file.as_fd()),
            rustix::fs::statat(&dirs.entries, name.as_str(), AtFlags::SYMLINK_NOFOLLOW),
        ) else {
            return;
        };
        if (open.st_dev, open.st_ino) == (now.st_dev, now.st_ino) {
            let _ = rustix::fs::unlinkat(&dirs.entries, name.as_str(), AtFlags::empty());
        }
    }

    fn failed(&self, operation: &'static str, error: std::io::Error) -> Error {
        errors::io(operation, &self.path, error)
    }
}

/// `time` as milliseconds since the Unix epoch.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The expiry stored for a TTL of `ttl` from now: `0` for none.
pub(crate) fn expiry_ms(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        Some(ttl) if ttl.is_zero() => 0,
        Some(ttl) => {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            unix_ms(SystemTime::now()).saturating_add(ms)
        }
    }
}
