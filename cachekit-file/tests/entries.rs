//! Entries on disk: the documented format, persistence across backends,
//! expiry, touch, and files that are not good entries (random bytes,
//! truncated, wrong magic, wrong checksum, another key's, grown, not a
//! regular file), each a miss that is removed, never a crash or wrong data.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cachekit_core::backend::{Backend, Bytes, KeyTtl};
use common::{backend, cache_dir, entry_names, entry_path};

#[tokio::test]
async fn an_entry_is_the_documented_header_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    b.set("app:user:1", Bytes::from_static(b"hello"), None)
        .await
        .unwrap();
    let bytes = std::fs::read(entry_path(dir.path(), "app:user:1")).unwrap();
    assert_eq!(&bytes[0..4], b"CKFE", "magic");
    assert_eq!(bytes[4], 1, "version");
    assert_eq!(&bytes[5..8], &[0, 0, 0], "reserved");
    assert_eq!(
        u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        0,
        "no expiry"
    );
    assert_eq!(
        u32::from_le_bytes(bytes[16..20].try_into().unwrap()),
        10,
        "key length"
    );
    let crc = crc32c::crc32c_append(crc32c::crc32c(b"app:user:1"), b"hello");
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
        crc,
        "checksum"
    );
    assert_eq!(
        u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        5,
        "value length"
    );
    assert_eq!(&bytes[32..42], b"app:user:1");
    assert_eq!(&bytes[42..], b"hello");
    assert_eq!(bytes.len(), 47);
}

#[tokio::test]
async fn entries_outlive_the_backend_that_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let first = backend(dir.path(), |c| c);
    first
        .set(
            "k",
            Bytes::from_static(b"kept"),
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    drop(first);
    let second = backend(dir.path(), |c| c);
    assert_eq!(
        second.get("k").await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    let ttl = second.as_ttl_inspect().unwrap().ttl("k").await.unwrap();
    assert!(
        matches!(ttl, KeyTtl::Expires(left) if left > Duration::from_secs(590)),
        "{ttl:?}"
    );
}

#[tokio::test]
async fn files_and_directories_are_private_to_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    b.set("k", Bytes::from_static(b"v"), None).await.unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_dir(dir.path())), 0o700);
    assert_eq!(mode(&cache_dir(dir.path()).join("entries")), 0o700);
    assert_eq!(mode(&cache_dir(dir.path()).join("locks")), 0o700);
    assert_eq!(mode(&entry_path(dir.path(), "k")), 0o600);
}

#[tokio::test]
async fn an_expired_entry_is_a_miss_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    b.set(
        "short",
        Bytes::from_static(b"v"),
        Some(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    b.set(
        "long",
        Bytes::from_static(b"v"),
        Some(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    assert!(b.get("short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.get("short").await.unwrap(), None);
    assert!(!entry_path(dir.path(), "short").exists(), "removed on read");
    assert!(!b.exists("short").await.unwrap());
    let ttl = b.as_ttl_inspect().unwrap();
    assert_eq!(ttl.ttl("short").await.unwrap(), KeyTtl::Missing);
    assert!(b.get("long").await.unwrap().is_some());
}

#[tokio::test]
async fn touch_rewrites_the_expiry_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    let (touch, ttl) = (b.as_touch().unwrap(), b.as_ttl_inspect().unwrap());
    b.set(
        "k",
        Bytes::from_static(b"v"),
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(touch.touch("k", None).await.unwrap());
    assert_eq!(ttl.ttl("k").await.unwrap(), KeyTtl::Forever);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.get("k").await.unwrap().as_deref(),
        Some(&b"v"[..]),
        "touched: kept"
    );
    assert!(
        touch
            .touch("k", Some(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert!(
        matches!(ttl.ttl("k").await.unwrap(), KeyTtl::Expires(left) if left <= Duration::from_secs(60))
    );
    assert!(!touch.touch("missing", None).await.unwrap());
    // The value and its checksum are untouched.
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Each way a file at an entry's path can be wrong.
fn spoiled(good: &[u8], other_key_entry: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut wrong_magic = good.to_vec();
    wrong_magic[0] = b'X';
    let mut wrong_checksum = good.to_vec();
    *wrong_checksum.last_mut().unwrap() ^= 0x40;
    let mut wrong_version = good.to_vec();
    wrong_version[4] = 2;
    let mut grown = good.to_vec();
    grown.extend_from_slice(b"tail");
    // Deterministic noise.
    let random: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        ("empty", Vec::new()),
        ("random bytes", random),
        ("truncated header", good[..20].to_vec()),
        ("truncated value", good[..good.len() - 1].to_vec()),
        ("wrong magic", wrong_magic),
        ("wrong checksum", wrong_checksum),
        ("other version", wrong_version),
        ("grown", grown),
        ("another key's entry", other_key_entry.to_vec()),
    ]
}

#[tokio::test]
async fn a_bad_file_is_a_miss_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    b.set("key", Bytes::from_static(b"the value"), None)
        .await
        .unwrap();
    b.set("other", Bytes::from_static(b"the value"), None)
        .await
        .unwrap();
    let path = entry_path(dir.path(), "key");
    let good = std::fs::read(&path).unwrap();
    let other = std::fs::read(entry_path(dir.path(), "other")).unwrap();
    for (what, bytes) in spoiled(&good, &other) {
        for operation in ["get", "exists", "ttl", "touch"] {
            std::fs::write(&path, &bytes).unwrap();
            let missing = match operation {
                "get" => b.get("key").await.unwrap().is_none(),
                "exists" => !b.exists("key").await.unwrap(),
                "ttl" => b.as_ttl_inspect().unwrap().ttl("key").await.unwrap() == KeyTtl::Missing,
                _ => !b.as_touch().unwrap().touch("key", None).await.unwrap(),
            };
            assert!(missing, "{what}: {operation} must read as a miss");
            assert!(!path.exists(), "{what}: {operation} must remove the file");
        }
        // And the key works again.
        b.set("key", Bytes::from_static(b"fresh"), None)
            .await
            .unwrap();
        assert_eq!(
            b.get("key").await.unwrap().as_deref(),
            Some(&b"fresh"[..]),
            "{what}"
        );
    }
}

#[tokio::test]
async fn something_else_at_an_entry_path_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    // A directory.
    std::fs::create_dir(entry_path(dir.path(), "dir")).unwrap();
    assert_eq!(b.get("dir").await.unwrap(), None);
    // A FIFO: opening it must not hang.
    let fifo = entry_path(dir.path(), "fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), b.get("fifo")).await;
    assert!(matches!(read, Ok(Ok(None))), "{read:?}");
    assert!(!fifo.exists(), "the FIFO is removed");
}

#[tokio::test]
async fn a_new_backend_removes_orphaned_temp_files_and_spares_held_ones() {
    let dir = tempfile::tempdir().unwrap();
    drop(backend(dir.path(), |c| c));
    let entries = cache_dir(dir.path()).join("entries");
    let orphan = entries.join(".0123.99999.0.tmp");
    std::fs::write(&orphan, b"half an entry").unwrap();
    // A live writer's temp file: it holds its lock.
    let live = entries.join(".4567.1.0.tmp");
    let held = std::fs::File::create(&live).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let _b = backend(dir.path(), |c| c);
    assert!(!orphan.exists(), "removed before the start returns");
    assert!(live.exists(), "a temp file its writer holds stays");
    // Read while it is still held: once released, the backend's
    // background scan may rightly remove it as an orphan.
    assert_eq!(entry_names(dir.path()), vec![".4567.1.0.tmp".to_owned()]);
    drop(held);
}

#[tokio::test]
async fn a_cache_directory_removed_in_use_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c);
    b.set("old", Bytes::from_static(b"v"), None).await.unwrap();
    // Someone clears the cache the usual way.
    std::fs::remove_dir_all(cache_dir(dir.path())).unwrap();
    assert_eq!(b.get("old").await.unwrap(), None);
    b.set("new", Bytes::from_static(b"again"), None)
        .await
        .unwrap();
    assert_eq!(b.get("new").await.unwrap().as_deref(), Some(&b"again"[..]));
    assert!(entry_path(dir.path(), "new").is_file());
    b.health().await.unwrap();
    let lock = b.as_lock().unwrap();
    std::fs::remove_dir_all(cache_dir(dir.path())).unwrap();
    let token = lock.try_lock("k", Duration::from_secs(5)).await.unwrap();
    assert!(token.is_some(), "locks work in the new directory");
    std::fs::remove_dir_all(cache_dir(dir.path())).unwrap();
    b.health().await.unwrap();
    assert!(
        cache_dir(dir.path()).join("entries").is_dir(),
        "health makes it again too"
    );
}
