//! [`ScratchDir`]: a server's own directory for its log and files.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A directory of its own in the system temp directory, removed on drop.
#[derive(Debug)]
pub(super) struct ScratchDir {
    /// The directory.
    pub(super) path: PathBuf,
}

impl ScratchDir {
    /// Creates a new, empty directory named after `label`.
    pub(super) fn create(label: &str) -> io::Result<ScratchDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let mut last_error = None;
        for _ in 0..10 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            let path = base.join(format!(
                "cachekit-testkit-{label}-{}-{}-{nanos}",
                process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no unique name found")))
    }
}

impl Drop for ScratchDir {
    /// Removes the directory and its files, ignoring errors.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
