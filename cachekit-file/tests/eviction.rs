//! Limits: least-recently-used eviction over `max_entries` and `max_size`
//! (reads count, also another process's), limits taken in at the start,
//! and values over `max_value_size` refused before anything is written.

mod common;

use std::time::Duration;

use cachekit_core::Error;
use cachekit_core::backend::{Backend, Bytes};
use common::{backend, entry_names, entry_path, wait_until};

/// Whether `key` has an entry file.
fn stored(dir: &std::path::Path, key: &str) -> bool {
    entry_path(dir, key).exists()
}

#[tokio::test]
async fn over_max_entries_the_least_recently_used_goes_and_reads_count() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c.max_entries(3));
    for key in ["a", "b", "c"] {
        b.set(key, Bytes::from_static(b"v"), None).await.unwrap();
    }
    assert!(
        b.get("a").await.unwrap().is_some(),
        "a read makes `a` the most recent"
    );
    b.set("d", Bytes::from_static(b"v"), None).await.unwrap();
    assert!(!stored(dir.path(), "b"), "b was the least recently used");
    for key in ["a", "c", "d"] {
        assert!(stored(dir.path(), key), "{key} stays");
    }
    // Rewriting counts as a use too.
    b.set("c", Bytes::from_static(b"v2"), None).await.unwrap();
    b.set("e", Bytes::from_static(b"v"), None).await.unwrap();
    assert!(!stored(dir.path(), "a"));
    assert_eq!(entry_names(dir.path()).len(), 3);
    assert_eq!(b.get("c").await.unwrap().as_deref(), Some(&b"v2"[..]));
}

#[tokio::test]
async fn over_max_size_the_least_recently_used_go() {
    let dir = tempfile::tempdir().unwrap();
    // Each entry: 32 header + 2 key + 1,000 value = 1,034 bytes; 3 fit in 4,096.
    let b = backend(dir.path(), |c| c.max_size(4096).max_value_size(4096));
    let value = Bytes::from(vec![7u8; 1000]);
    for key in ["k1", "k2", "k3"] {
        b.set(key, value.clone(), None).await.unwrap();
    }
    assert_eq!(entry_names(dir.path()).len(), 3);
    b.set("k4", value.clone(), None).await.unwrap();
    assert!(!stored(dir.path(), "k1"));
    assert_eq!(entry_names(dir.path()).len(), 3);
    // One large value pushes out as many as it takes.
    b.set("big", Bytes::from(vec![1u8; 3000]), None)
        .await
        .unwrap();
    assert!(stored(dir.path(), "big"));
    assert_eq!(
        entry_names(dir.path()).len(),
        1 + usize::from(stored(dir.path(), "k4"))
    );
    assert!(!stored(dir.path(), "k2") && !stored(dir.path(), "k3"));
}

#[tokio::test]
async fn a_value_over_max_value_size_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), |c| c.max_value_size(100));
    b.set("k", Bytes::from(vec![0u8; 100]), None).await.unwrap();
    let over = b.set("k", Bytes::from(vec![1u8; 101]), None).await;
    assert!(
        matches!(
            over,
            Err(Error::ValueTooLarge {
                size: 101,
                limit: 100
            })
        ),
        "{over:?}"
    );
    assert_eq!(entry_names(dir.path()).len(), 1, "no temp file either");
    assert_eq!(
        b.get("k").await.unwrap().unwrap(),
        vec![0u8; 100],
        "the old value stays"
    );
    assert_eq!(b.capabilities().max_value_size, Some(100));
}

#[tokio::test]
async fn a_backend_with_lower_limits_evicts_down_to_them_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = backend(dir.path(), |c| c);
    for i in 0..10 {
        first
            .set(&format!("k{i}"), Bytes::from_static(b"v"), None)
            .await
            .unwrap();
    }
    drop(first);
    let _second = backend(dir.path(), |c| c.max_entries(4));
    wait_until("the start's scan evicts down to 4", || {
        entry_names(dir.path()).len() == 4
    });
    for i in 6..10 {
        assert!(
            stored(dir.path(), &format!("k{i}")),
            "the most recent stay: k{i}"
        );
    }
}

#[tokio::test]
async fn another_processs_reads_count() {
    let dir = tempfile::tempdir().unwrap();
    // Two backends on one directory keep their own indexes, as two
    // processes do.
    let writer = backend(dir.path(), |c| c.max_entries(3));
    let reader = backend(dir.path(), |c| c);
    for key in ["a", "b", "c"] {
        writer
            .set(key, Bytes::from_static(b"v"), None)
            .await
            .unwrap();
    }
    // Reads refresh the file's access time at most once a second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(reader.get("a").await.unwrap().is_some());
    writer
        .set("d", Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    assert!(stored(dir.path(), "a"), "read elsewhere: kept");
    assert!(!stored(dir.path(), "b"), "the least recently used anywhere");
}

#[tokio::test]
async fn the_first_write_after_a_start_weighs_the_entries_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let first = backend(dir.path(), |c| c);
    for key in ["a", "b", "c"] {
        first
            .set(key, Bytes::from_static(b"v"), None)
            .await
            .unwrap();
    }
    drop(first);
    // A restart with room for 3: the read and the write come at once,
    // while the start's scan may still be running.
    let second = backend(dir.path(), |c| c.max_entries(3));
    assert!(second.get("a").await.unwrap().is_some());
    second
        .set("d", Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    assert!(!stored(dir.path(), "b"), "b was the least recently used");
    assert_eq!(entry_names(dir.path()).len(), 3);
}

#[tokio::test]
async fn a_start_removes_expired_entries_unread() {
    let dir = tempfile::tempdir().unwrap();
    let first = backend(dir.path(), |c| c);
    first
        .set(
            "short",
            Bytes::from_static(b"v"),
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    first
        .set(
            "long",
            Bytes::from_static(b"v"),
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    first
        .set("forever", Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _second = backend(dir.path(), |c| c);
    wait_until("the start's scan removes the expired entry", || {
        !stored(dir.path(), "short")
    });
    assert!(stored(dir.path(), "long") && stored(dir.path(), "forever"));
}

/// Linux reads without touching access times (`O_NOATIME`); other systems
/// have no such flag.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn a_scan_does_not_count_as_a_use() {
    let dir = tempfile::tempdir().unwrap();
    let first = backend(dir.path(), |c| c);
    first
        .set(
            "old",
            Bytes::from_static(b"v"),
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    drop(first);
    // Last used an hour ago (and written then).
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let file = std::fs::File::options()
        .write(true)
        .open(entry_path(dir.path(), "old"))
        .unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_accessed(hour_ago)
            .set_modified(hour_ago),
    )
    .unwrap();
    drop(file);
    let second = backend(dir.path(), |c| c);
    // A write waits for the start's scan, which reads every entry's expiry.
    second
        .set("new", Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    let accessed = std::fs::metadata(entry_path(dir.path(), "old"))
        .unwrap()
        .accessed()
        .unwrap();
    assert!(
        accessed <= hour_ago + Duration::from_secs(1),
        "the scan's read made the entry look used: {accessed:?}"
    );
}
