//! Cancellation: calls dropped at any point leave the later calls matched
//! to their own answers.

use cachekit_core::backend::testkit::ServerProcess;

use super::*;

/// Drops calls after they are sent, and checks that the calls after them
/// get their own answers. Returns how many calls were dropped before their
/// answer came (the others were answered before the drop).
async fn drop_calls_and_check(connection: &Connection) -> usize {
    for key in ["dropped", "kept"] {
        let set = Request::Set {
            key,
            value: key.as_bytes(),
            ttl: 0,
        };
        assert_eq!(call(connection, set).await, Response::Stored);
    }
    let mut dropped = 0;
    for round in 0..200 {
        // Polled once, so sent, then dropped.
        tokio::select! {
            biased;
            _ = connection.call(Request::Get { key: "dropped" }) => {}
            () = std::future::ready(()) => dropped += 1,
        }
        if round % 2 == 0 {
            let batch = [Request::Get { key: "dropped" }, Request::Noop];
            tokio::select! {
                biased;
                _ = connection.call_many(&batch) => {}
                () = std::future::ready(()) => dropped += 1,
            }
        }
        let got = call(connection, Request::Get { key: "kept" }).await;
        assert_eq!(got, value(b"kept"), "round {round}");
    }
    assert!(!connection.is_closed());
    dropped
}

/// On one thread the reader cannot run between sending and dropping, so
/// every call is dropped before its answer.
#[tokio::test(flavor = "current_thread")]
async fn a_call_dropped_before_its_answer_does_not_desync_later_calls() {
    let server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    assert_eq!(drop_calls_and_check(&connection).await, 300);
}

/// On two threads the answers race with the drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_dropped_while_answered_do_not_desync_later_calls() {
    let server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    drop_calls_and_check(&connection).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_many_dropped_midway_through_its_answers_does_not_desync() {
    let server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    // Values shared from the read buffer and values copied out of it.
    let values: Vec<Vec<u8>> = (0..200)
        .map(|i| vec![b'a' + (i % 26) as u8; if i % 2 == 0 { 200 * 1024 } else { 500 }])
        .collect();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("batch:{i}")).collect();
    for (key, bytes) in keys.iter().zip(&values) {
        let set = Request::Set {
            key,
            value: bytes,
            ttl: 0,
        };
        assert_eq!(call(&connection, set).await, Response::Stored);
    }
    let set = Request::Set {
        key: "kept",
        value: b"kept",
        ttl: 0,
    };
    assert_eq!(call(&connection, set).await, Response::Stored);
    let gets: Vec<_> = keys.iter().map(|key| Request::Get { key }).collect();
    let expected: Vec<Response> = values.iter().map(|bytes| value(bytes)).collect();
    // 20 MB of answers, the call dropped after a few milliseconds: after
    // some, all or none of its answers are read.
    for millis in [1, 2, 3, 4, 6, 8] {
        let batch = connection.call_many(&gets);
        if let Ok(responses) = tokio::time::timeout(Duration::from_millis(millis), batch).await {
            assert_eq!(responses.unwrap(), expected);
        }
        let got = call(&connection, Request::Get { key: "kept" }).await;
        assert_eq!(
            got,
            value(b"kept"),
            "after a batch dropped after {millis} ms"
        );
        let pair = [Request::Get { key: "kept" }, Request::Get { key: &keys[0] }];
        let got = bounded(connection.call_many(&pair)).await.unwrap();
        assert_eq!(got, [value(b"kept"), expected[0].clone()]);
    }
    assert!(!connection.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_with_dropped_calls_stay_in_step() {
    let server = ServerProcess::memcached();
    let connection = Arc::new(connect(&server.address()).await);
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let connection = Arc::clone(&connection);
            tokio::spawn(async move {
                let key = format!("step{task}");
                let set = Request::Set {
                    key: &key,
                    value: key.as_bytes(),
                    ttl: 0,
                };
                assert_eq!(connection.call(set).await.unwrap(), Response::Stored);
                for round in 0..100 {
                    if round % 3 == 0 {
                        tokio::select! {
                            biased;
                            _ = connection.call(Request::Get { key: &key }) => {}
                            () = std::future::ready(()) => {}
                        }
                    }
                    let got = connection.call(Request::Get { key: &key }).await.unwrap();
                    assert_eq!(got, value(key.as_bytes()), "round {round}");
                }
            })
        })
        .collect();
    for task in tasks {
        bounded(task).await.expect("the task succeeds");
    }
    assert!(!connection.is_closed());
}
