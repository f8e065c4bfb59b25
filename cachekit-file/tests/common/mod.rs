//! What the file backend's tests share: a backend on a fresh directory,
//! and where its files are.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cachekit_file::{FileBackend, FileBackendConfig};

/// A backend on `<dir>/cache`, with `config` applied to the defaults.
pub(crate) fn backend(
    dir: &Path,
    config: impl FnOnce(FileBackendConfig) -> FileBackendConfig,
) -> FileBackend {
    FileBackend::new(config(
        FileBackendConfig::default().cache_dir(cache_dir(dir)),
    ))
    .expect("the file backend opens")
}

/// The cache directory under the test's temp directory.
pub(crate) fn cache_dir(dir: &Path) -> PathBuf {
    dir.join("cache")
}

/// The path of `key`'s entry file, as documented: `entries/` + the hex of
/// the first 16 bytes of the key's BLAKE3 hash.
pub(crate) fn entry_path(dir: &Path, key: &str) -> PathBuf {
    let hash = blake3::hash(key.as_bytes());
    let name: String = hash.as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    cache_dir(dir).join("entries").join(name)
}

/// The names in `<cache>/entries`.
pub(crate) fn entry_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache_dir(dir).join("entries"))
        .expect("the entries directory")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Waits (at most 10 s) until `done` holds; panics naming `what` if it never does.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
