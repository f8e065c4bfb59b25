//! Requests and their responses: every request to a real memcached gets
//! its own answer, alone, in batches and from many tasks at once.

use cachekit_core::backend::testkit::{ServerProcess, SilentServer};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_round_trips() {
    let server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    let key = "round:trip";
    assert_eq!(
        call(&connection, Request::Get { key }).await,
        Response::Miss
    );
    assert_eq!(
        call(&connection, Request::Exists { key }).await,
        Response::Miss
    );
    assert_eq!(
        call(&connection, Request::Touch { key, ttl: 60 }).await,
        Response::Miss
    );
    assert_eq!(
        call(&connection, Request::TtlOf { key }).await,
        Response::Miss
    );
    assert_eq!(
        call(&connection, Request::Delete { key }).await,
        Response::Miss
    );

    let set = Request::Set {
        key,
        value: b"v1",
        ttl: 0,
    };
    assert_eq!(call(&connection, set).await, Response::Stored);
    assert_eq!(call(&connection, Request::Get { key }).await, value(b"v1"));
    assert_eq!(
        call(&connection, Request::Exists { key }).await,
        Response::Stored
    );
    assert_eq!(
        call(&connection, Request::TtlOf { key }).await,
        Response::Ttl(None)
    );

    assert_eq!(
        call(&connection, Request::Touch { key, ttl: 600 }).await,
        Response::Stored
    );
    let Response::Ttl(Some(ttl)) = call(&connection, Request::TtlOf { key }).await else {
        panic!("a remaining TTL after touch");
    };
    assert!((590..=600).contains(&ttl), "ttl {ttl}");

    let set = Request::Set {
        key,
        value: b"v2",
        ttl: 300,
    };
    assert_eq!(call(&connection, set).await, Response::Stored);
    assert_eq!(call(&connection, Request::Get { key }).await, value(b"v2"));
    let Response::Ttl(Some(ttl)) = call(&connection, Request::TtlOf { key }).await else {
        panic!("a remaining TTL after set");
    };
    assert!((290..=300).contains(&ttl), "ttl {ttl}");

    assert_eq!(
        call(&connection, Request::Delete { key }).await,
        Response::Stored
    );
    assert_eq!(
        call(&connection, Request::Get { key }).await,
        Response::Miss
    );
    assert_eq!(call(&connection, Request::Noop).await, Response::Noop);
    assert!(!connection.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_large_values_round_trip() {
    let server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    let binary: Vec<u8> = b"\r\nEN\r\nVA 3\r\n\0\xff\r\n".to_vec();
    let large: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    for (key, bytes) in [
        ("binary", &binary),
        ("large", &large),
        ("empty", &Vec::new()),
    ] {
        let set = Request::Set {
            key,
            value: bytes,
            ttl: 0,
        };
        assert_eq!(call(&connection, set).await, Response::Stored, "{key}");
        assert_eq!(
            call(&connection, Request::Get { key }).await,
            value(bytes),
            "{key}"
        );
    }

    // memcached refuses items over its 1 MiB limit, and swallows the data.
    let too_large = vec![b'x'; 2 * 1024 * 1024];
    let set = Request::Set {
        key: "too:large",
        value: &too_large,
        ttl: 0,
    };
    let Response::ServerError(message) = call(&connection, set).await else {
        panic!("a SERVER_ERROR");
    };
    assert!(message.contains("too large"), "{message}");
    assert_eq!(
        call(&connection, Request::Get { key: "binary" }).await,
        value(&binary)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_get_their_own_values() {
    let server = ServerProcess::memcached();
    let connection = Arc::new(connect(&server.address()).await);
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let connection = Arc::clone(&connection);
            tokio::spawn(async move {
                for op in 0..200 {
                    let key = format!("task{task}:op{op}");
                    let bytes = format!("value of {key}").repeat(op % 7 + 1);
                    let set = Request::Set {
                        key: &key,
                        value: bytes.as_bytes(),
                        ttl: 0,
                    };
                    assert_eq!(connection.call(set).await.unwrap(), Response::Stored);
                    let got = connection.call(Request::Get { key: &key }).await.unwrap();
                    assert_eq!(got, value(bytes.as_bytes()), "{key}");
                }
            })
        })
        .collect();
    for task in tasks {
        bounded(task).await.expect("the task succeeds");
    }
    assert!(!connection.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_many_answers_in_order() {
    let server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    let requests = [
        Request::Set {
            key: "a",
            value: b"1",
            ttl: 0,
        },
        Request::Set {
            key: "b",
            value: b"22",
            ttl: 0,
        },
        Request::Get { key: "b" },
        Request::Get { key: "missing" },
        Request::Get { key: "a" },
        Request::Delete { key: "a" },
        Request::Get { key: "a" },
        Request::Noop,
    ];
    let responses = bounded(connection.call_many(&requests)).await.unwrap();
    let expected = [
        Response::Stored,
        Response::Stored,
        value(b"22"),
        Response::Miss,
        value(b"1"),
        Response::Stored,
        Response::Miss,
        Response::Noop,
    ];
    assert_eq!(responses, expected);
    assert_eq!(bounded(connection.call_many(&[])).await.unwrap(), []);

    // Batches from concurrent tasks stay whole and in order.
    let connection = Arc::new(connection);
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let connection = Arc::clone(&connection);
            tokio::spawn(async move {
                let keys: Vec<String> = (0..50).map(|i| format!("many{task}:{i}")).collect();
                let sets: Vec<_> = keys
                    .iter()
                    .map(|key| Request::Set {
                        key,
                        value: key.as_bytes(),
                        ttl: 0,
                    })
                    .collect();
                connection.call_many(&sets).await.unwrap();
                let gets: Vec<_> = keys.iter().map(|key| Request::Get { key }).collect();
                let got = connection.call_many(&gets).await.unwrap();
                let expected: Vec<_> = keys.iter().map(|key| value(key.as_bytes())).collect();
                assert_eq!(got, expected);
            })
        })
        .collect();
    for task in tasks {
        bounded(task).await.expect("the task succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_the_requests_not_answered_yet() {
    let server = ServerProcess::memcached();
    let connection = Arc::new(connect(&server.address()).await);
    assert_eq!(connection.in_flight(), 0);
    let batch = [Request::Noop, Request::Get { key: "k" }, Request::Noop];
    bounded(connection.call_many(&batch)).await.unwrap();
    assert_eq!(call(&connection, Request::Noop).await, Response::Noop);
    assert_eq!(connection.in_flight(), 0, "every answer is counted off");
    // Answers read by the reader task, and by reading callers.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let connection = Arc::clone(&connection);
            tokio::spawn(async move {
                for _ in 0..50 {
                    connection.call_many(&batch).await.unwrap();
                    connection.call(Request::Noop).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        bounded(task).await.expect("the task succeeds");
    }
    assert_eq!(connection.in_flight(), 0);

    let silent = SilentServer::start();
    let connection = Arc::new(connect(&silent.address()).await);
    let pending = tokio::spawn({
        let connection = Arc::clone(&connection);
        async move { connection.call_many(&batch).await }
    });
    bounded(async {
        while connection.in_flight() < batch.len() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(connection.in_flight(), batch.len());
    pending.abort();
}
