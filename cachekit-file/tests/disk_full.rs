//! A full disk: a write that does not fit is an error saying so, and every
//! entry already there stays readable. Needs a small tmpfs, which needs the
//! right to mount one (root, here); without it the test says it is skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cachekit_core::Error;
use cachekit_core::backend::{Backend, Bytes};
use common::backend;

/// A 1 MiB tmpfs mounted at a temp directory, unmounted on drop.
struct SmallDisk {
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let at = dir.path().to_path_buf();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(&at)
            .output()
            .ok()?;
        mounted
            .status
            .success()
            .then_some(SmallDisk { at, _dir: dir })
    }

    fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_an_error_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount() else {
        eprintln!(
            "SKIPPED a_full_disk_is_an_error_and_loses_nothing: cannot mount a 1 MiB tmpfs here (needs root)"
        );
        return;
    };
    let b = backend(disk.path(), |c| c);
    let value = |i: usize| Bytes::from(vec![i as u8; 100 << 10]);
    let mut stored = Vec::new();
    let mut full = None;
    // 1 MiB holds under 10 values of 100 KiB: the disk fills within 20.
    for i in 0..20 {
        let started = std::time::Instant::now();
        match b.set(&format!("k{i}"), value(i), None).await {
            Ok(()) => stored.push(i),
            Err(error) => {
                eprintln!("measured: disk full: set: {:?}", started.elapsed());
                full = Some(error);
                break;
            }
        }
    }
    let error = full.expect("a 1 MiB disk fills up");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("no space left"), "{error}");
    assert!(!stored.is_empty());
    for &i in &stored {
        let read = b.get(&format!("k{i}")).await.unwrap();
        assert_eq!(read, Some(value(i)), "k{i} stays readable");
    }
    let temps = std::fs::read_dir(disk.path().join("cache/entries"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(temps, 0, "the failed write leaves no temp file");
    // Room made, writes work again.
    assert!(b.delete("k0").await.unwrap());
    b.set("after", value(99), None).await.unwrap();
    assert_eq!(b.get("after").await.unwrap(), Some(value(99)));
}
