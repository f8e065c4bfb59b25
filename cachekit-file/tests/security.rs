//! Symbolic links, other users and keys: the backend never follows a link
//! (as the cache directory, a subdirectory, or an entry), refuses another
//! user's directory, narrows an open one, and no key text reaches a path.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};

use cachekit_core::Error;
use cachekit_core::backend::{Backend, Bytes};
use cachekit_file::{FileBackend, FileBackendConfig};
use common::{backend, cache_dir, entry_names, entry_path};

/// The reason of the `file.cache_dir` error of opening `dir`.
fn cache_dir_error(dir: &std::path::Path) -> String {
    match FileBackend::new(FileBackendConfig::default().cache_dir(dir)) {
        Err(Error::Config {
            setting, reason, ..
        }) => {
            assert_eq!(setting, "file.cache_dir");
            reason
        }
        other => panic!("expected a file.cache_dir error, got {other:?}"),
    }
}

#[test]
fn a_symlink_as_the_cache_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("cache");
    symlink(&real, &link).unwrap();
    let reason = cache_dir_error(&link);
    assert!(reason.contains("symbolic link"), "{reason}");
    assert!(
        std::fs::read_dir(&real).unwrap().next().is_none(),
        "nothing written through it"
    );
    // A dangling one too: it is not created through.
    let dangling = dir.path().join("dangling");
    symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(cache_dir_error(&dangling).contains("symbolic link"));
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn a_symlink_as_a_subdirectory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir(cache_dir(dir.path())).unwrap();
    symlink(&elsewhere, cache_dir(dir.path()).join("entries")).unwrap();
    let reason = cache_dir_error(&cache_dir(dir.path()));
    assert!(
        reason.contains("entries") && reason.contains("symbolic link"),
        "{reason}"
    );
}

#[test]
fn a_file_as_the_cache_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(cache_dir(dir.path()), b"not a directory").unwrap();
    assert!(cache_dir_error(&cache_dir(dir.path())).contains("not a directory"));
}

#[tokio::test]
async fn a_symlink_at_an_entry_path_is_refused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"do not serve or overwrite me").unwrap();
    let path = entry_path(dir.path(), "k");
    symlink(&secret, &path).unwrap();
    let read = b.get("k").await;
    match &read {
        Err(error @ Error::Rejected { .. }) => {
            assert!(error.to_string().contains("symbolic link"), "{error}");
        }
        other => panic!("a link must be refused, got {other:?}"),
    }
    assert!(path.symlink_metadata().is_err(), "the link is removed");
    assert_eq!(b.get("k").await.unwrap(), None, "then a miss");
    // A set over a planted link replaces the link, not its target.
    symlink(&secret, &path).unwrap();
    b.set("k", Bytes::from_static(b"mine"), None).await.unwrap();
    assert!(path.symlink_metadata().unwrap().file_type().is_file());
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        b"do not serve or overwrite me"
    );
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"mine"[..]));
    // Touch and exists refuse it too.
    std::fs::remove_file(&path).unwrap();
    symlink(&secret, &path).unwrap();
    assert!(matches!(
        b.as_touch().unwrap().touch("k", None).await,
        Err(Error::Rejected { .. })
    ));
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        b"do not serve or overwrite me"
    );
}

#[test]
fn another_users_directory_is_refused() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!(
            "SKIPPED another_users_directory_is_refused: needs root to give a directory to another user"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = cache_dir(dir.path());
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let reason = cache_dir_error(&theirs);
    assert!(reason.contains("belongs to user 65534"), "{reason}");
}

#[test]
fn an_open_directory_is_narrowed_to_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let open = cache_dir(dir.path());
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _b = backend(dir.path(), |c| c);
    let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test]
async fn keys_never_reach_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    for key in ["../../escape", "/etc/passwd", "a/b", ".hidden", "..", "CON"] {
        b.set(key, Bytes::from_static(b"v"), None).await.unwrap();
        assert_eq!(
            b.get(key).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "{key}"
        );
    }
    let names = entry_names(dir.path());
    assert_eq!(names.len(), 6);
    assert!(
        names
            .iter()
            .all(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit())),
        "{names:?}"
    );
    assert!(!dir.path().join("escape").exists());
    let unsafe_key = b.set("has space", Bytes::from_static(b"v"), None).await;
    assert!(
        matches!(unsafe_key, Err(Error::InvalidKey { .. })),
        "{unsafe_key:?}"
    );
}
