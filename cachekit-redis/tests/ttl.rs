//! TTL inspection and touch over real Redis, checked against the server's
//! own view of the key.

mod common;

use std::time::Duration;

use cachekit_core::Error;
use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::backend::{Backend, KeyTtl, Touch, TtlInspect};

fn v() -> Bytes {
    Bytes::from_static(b"v")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_reads_missing_forever_and_the_time_left() {
    let server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c);
    assert_eq!(backend.ttl("absent").await.unwrap(), KeyTtl::Missing);
    backend.set("forever", v(), None).await.unwrap();
    assert_eq!(backend.ttl("forever").await.unwrap(), KeyTtl::Forever);
    backend
        .set("zero", v(), Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        backend.ttl("zero").await.unwrap(),
        KeyTtl::Forever,
        "zero: no expiry"
    );
    backend
        .set("minute", v(), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    match backend.ttl("minute").await.unwrap() {
        KeyTtl::Expires(left) => assert!(
            left > Duration::from_secs(59) && left <= Duration::from_secs(60),
            "{left:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_millisecond_ttl_still_expires() {
    let server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c);
    backend
        .set("brief", v(), Some(Duration::from_micros(10)))
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if !backend.exists("brief").await.unwrap() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gone, "a 10 µs TTL is 1 ms, not forever");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_sets_removes_and_reports_missing() {
    let server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c.key_prefix("t:"));
    assert!(
        !backend
            .touch("absent", Some(Duration::from_secs(5)))
            .await
            .unwrap()
    );
    assert!(!backend.touch("absent", None).await.unwrap());

    backend.set("k", v(), None).await.unwrap();
    assert!(
        backend
            .touch("k", Some(Duration::from_secs(90)))
            .await
            .unwrap()
    );
    let left: i64 = common::raw(&server, redis::cmd("PTTL").arg("t:k")).await;
    assert!(left > 89_000 && left <= 90_000, "{left}");

    assert!(
        backend.touch("k", None).await.unwrap(),
        "persist a key with a TTL"
    );
    assert_eq!(backend.ttl("k").await.unwrap(), KeyTtl::Forever);
    assert!(
        backend.touch("k", None).await.unwrap(),
        "persist a key without one"
    );

    assert!(
        backend
            .touch("k", Some(Duration::from_millis(50)))
            .await
            .unwrap()
    );
    let mut gone = false;
    for _ in 0..100 {
        if backend.ttl("k").await.unwrap() == KeyTtl::Missing {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gone, "a touched TTL expires the key");
    assert_eq!(backend.get("k").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_type_is_a_permanent_error() {
    let server = ServerProcess::redis();
    let backend = common::backend(&server, |c| c);
    let _: i64 = common::raw(&server, redis::cmd("LPUSH").arg("list").arg("x")).await;
    let error = backend.get("list").await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Rejected {
                backend: "redis",
                ..
            }
        ),
        "WRONGTYPE is permanent: {error:?}"
    );
    assert!(!error.is_temporary());
    assert!(error.to_string().contains("WRONGTYPE"), "{error}");
}
