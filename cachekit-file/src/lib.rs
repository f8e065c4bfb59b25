//! File backend for cachekit: a persistent cache in a local directory,
//! shared by the processes of one host, with TTL inspection, touch, and
//! locks across those processes. For CLI and build tools, scripts, dev
//! machines and one-box services that want a cache surviving restarts with
//! nothing to run.
//!
//! ```no_run
//! use cachekit_file::{FileBackend, FileBackendConfig};
//!
//! # fn main() -> cachekit_core::Result<()> {
//! let backend = FileBackend::new(
//!     FileBackendConfig::default()
//!         .cache_dir("/var/cache/myapp")
//!         .max_entries(50_000),
//! )?;
//!
//! // Or from CACHEKIT_FILE_CACHE_DIR and the other CACHEKIT_FILE_*
//! // variables, over cachekit.toml's [file] section:
//! let backend = FileBackend::from_env()?;
//! # Ok(())
//! # }
//! ```
//!
//! # On disk
//!
//! `<cache_dir>/entries/` holds one file per entry, named by the hex of the
//! first 16 bytes of the key's BLAKE3 hash (no key text reaches a path),
//! and `<cache_dir>/locks/` one file per held lock. An entry file is a
//! 32-byte header, the key, then the value:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `CKFE` |
//! | 4 | 1 | format version, `1` |
//! | 5 | 3 | reserved, zero |
//! | 8 | 8 | expiry: Unix time in milliseconds, little-endian; `0`: never |
//! | 16 | 4 | key length in bytes, little-endian |
//! | 20 | 4 | CRC-32C of the key, then the value, little-endian |
//! | 24 | 8 | value length in bytes, little-endian |
//! | 32 | key length | the key |
//! | 32 + key length | value length | the value |
//!
//! A file that is not exactly that for its key (truncated, grown, another
//! format, another key, a bad checksum, not a regular file) reads as a
//! miss and is removed. Expired entries read as misses and are removed,
//! by the read that finds them or by the next scan.
//!
//! # Safety against crashes, other processes and other users
//!
//! - An entry is written to a temp file in the same directory, flushed
//!   (`fsync`, unless turned off), then renamed over the old one: a reader,
//!   in any process, sees the old entry or the new one, never a part, even
//!   when the writer is killed mid-write. A writer holds a `flock` on its
//!   temp file; a temp file nobody holds is an orphan, removed by each
//!   start before [`FileBackend::new`] returns (and by later scans). The directory itself is not flushed after each
//!   rename: a power cut may lose the last writes (misses), never tear them.
//! - The directory is created 0700, files 0600. A directory that is a
//!   symbolic link, or another user's, is refused; every file is opened
//!   under the directory's descriptor with `O_NOFOLLOW`, and a link found
//!   where an entry belongs is removed and refused with an error.
//! - Over `max_entries` or `max_size`, each write evicts the least
//!   recently used entries (reads count) from an index in memory, filled by
//!   a scan at the start (which the first write waits for, at most 10 s)
//!   and kept by this process's reads and writes, so no write lists the
//!   directory. Other processes' writes join the index
//!   at the next scan (after `max_entries / 2` writes, 30 s apart at
//!   least); their reads are seen through the files' access times before
//!   a victim goes. With several writing processes, the directory can
//!   therefore exceed the limits for a while by what the others wrote.
//! - Locks ([`Lock`](cachekit_core::backend::Lock)) hold across the
//!   processes of one host, not across hosts: do not share the directory
//!   over a network file system.
//!
//! Unix only: the backend relies on `openat`, `O_NOFOLLOW` and `flock`.

#[cfg(not(unix))]
compile_error!(
    "cachekit-file supports Unix systems only (it relies on openat, O_NOFOLLOW and flock)"
);

mod backend;
mod config;
mod dir;
mod entry;
mod errors;
mod index;
mod lock;
mod name;
mod scan;
mod store;

pub use backend::FileBackend;
pub use config::{FileBackendConfig, SETTINGS};

inventory::submit! {
    cachekit_core::backend::BackendFactory {
        name: FileBackend::NAME,
        feature: "file",
        selecting_vars: &["CACHEKIT_FILE_CACHE_DIR"],
        build: Some(|config| Ok(std::sync::Arc::new(FileBackend::from_config(config)?))),
    }
}
