//! Failure: a server that closed or stopped, or that does not answer in
//! time, fails the calls in flight and later; close and drop close the
//! socket; connecting to a closed port fails fast.

use std::time::Instant;

use cachekit_core::backend::testkit::{ServerProcess, SilentServer};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_an_idle_connection_the_server_closed_is_stale_and_not_sent() {
    let mut server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    assert_eq!(call(&connection, Request::Noop).await, Response::Noop);
    let stopped = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    });
    let _server = bounded(stopped).await.expect("stopped");
    // The server's close reaches the runtime's reactor while this task sleeps.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!connection.is_closed(), "noticed only by a call");
    let result = bounded(connection.call(Request::Noop)).await;
    assert!(matches!(result, Err(ConnectionError::Stale)), "{result:?}");
    assert!(connection.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_fails_calls_in_flight_and_later() {
    let mut server = ServerProcess::memcached();
    let connection = Arc::new(connect(&server.address()).await);
    let set = Request::Set {
        key: "k",
        value: b"v",
        ttl: 0,
    };
    assert_eq!(call(&connection, set).await, Response::Stored);
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let connection = Arc::clone(&connection);
            tokio::spawn(async move {
                // Calls until one fails; bounded by PATIENCE below.
                loop {
                    if let Err(error) = connection.call(Request::Get { key: "k" }).await {
                        return error;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    });
    let _server = bounded(stopped).await.expect("stopped");
    for caller in callers {
        let error = bounded(caller).await.expect("the caller ends");
        // A caller between two calls when the server's close arrives finds
        // the connection idle and closed: its call is not sent (`Stale`).
        assert!(
            matches!(error, ConnectionError::Io(_) | ConnectionError::Stale),
            "an I/O error or a stale connection, not {error:?}"
        );
    }
    assert!(connection.is_closed());
    let later = bounded(connection.call(Request::Get { key: "k" })).await;
    assert!(matches!(later, Err(ConnectionError::Io(_))), "{later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_a_call_out_and_close_fails_the_rest() {
    let server = SilentServer::start();
    let connection = Arc::new(connect(&server.address()).await);
    let started = Instant::now();
    let timed_out =
        tokio::time::timeout(Duration::from_millis(200), connection.call(Request::Noop)).await;
    assert!(timed_out.is_err(), "no answer: {timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!connection.is_closed());

    let in_flight = tokio::spawn({
        let connection = Arc::clone(&connection);
        async move { connection.call(Request::Get { key: "k" }).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    connection.close();
    let result = bounded(in_flight).await.expect("the caller ends");
    assert!(matches!(result, Err(ConnectionError::Closed)), "{result:?}");
    assert!(connection.is_closed());
    let later = bounded(connection.call(Request::Noop)).await;
    assert!(matches!(later, Err(ConnectionError::Closed)), "{later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_times_out_late_calls_and_closes_the_younger_ones() {
    let server = SilentServer::start();
    let timeout = Duration::from_millis(200);
    let connection = Arc::new(
        Connection::connect(&server.address(), CONNECT_TIMEOUT, timeout, None)
            .await
            .expect("connects"),
    );
    let started = Instant::now();
    let first = tokio::spawn({
        let connection = Arc::clone(&connection);
        async move {
            let batch = [Request::Noop, Request::Get { key: "k" }];
            connection.call_many(&batch).await
        }
    });
    tokio::time::sleep(timeout / 2).await;
    let second_queued = Instant::now();
    let second = bounded(connection.call(Request::Get { key: "k" })).await;
    let first = bounded(first).await.expect("the first caller ends");
    assert!(matches!(first, Err(ConnectionError::TimedOut)), "{first:?}");
    assert!(started.elapsed() >= timeout, "failed before the timeout");
    // The younger call had not waited a timeout when the connection
    // failed (unless the watchdog ran very late): it is closed, and so
    // retried by the backend.
    match second {
        Err(ConnectionError::Closed) => {}
        Err(ConnectionError::TimedOut) => assert!(second_queued.elapsed() >= timeout),
        other => panic!("{other:?}"),
    }
    assert!(connection.is_closed());
    let later = bounded(connection.call(Request::Noop)).await;
    assert!(matches!(later, Err(ConnectionError::Closed)), "{later:?}");
}

#[test]
fn a_timeout_fails_only_the_calls_before_its_mark_as_timed_out() {
    let failure = Failure::TimedOut { late: 3 };
    assert!(matches!(failure.error_for(2), ConnectionError::TimedOut));
    assert!(matches!(failure.error_for(3), ConnectionError::Closed));
    assert!(matches!(failure.error(), ConnectionError::Closed));
}

/// What a watchdog task (on the runtime that opened the connection)
/// would get wrong: a plain `#[cache]` function blocks a current-thread
/// runtime while another runtime calls on that runtime's connection.
#[test]
fn calls_time_out_while_the_runtime_that_opened_the_connection_is_blocked() {
    let server = SilentServer::start();
    let address = server.address();
    let (opened, connection) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let opener = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let timeout = Duration::from_millis(200);
            let connection = Connection::connect(&address, CONNECT_TIMEOUT, timeout, None)
                .await
                .expect("connects");
            opened.send(Arc::new(connection)).unwrap();
            // Blocks this runtime: its reactor and tasks stand still.
            let _ = released.recv_timeout(PATIENCE);
        });
    });
    let connection = connection.recv_timeout(PATIENCE).expect("opened");
    let caller = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = caller.block_on(bounded(connection.call(Request::Noop)));
    assert!(
        matches!(result, Err(ConnectionError::TimedOut)),
        "{result:?}"
    );
    release.send(()).unwrap();
    opener.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_drop_close_the_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    for drop_it in [false, true] {
        let connection = connect(&address).await;
        let (mut accepted, _) = listener.accept().unwrap();
        accepted.set_read_timeout(Some(PATIENCE)).unwrap();
        if drop_it {
            drop(connection);
        } else {
            connection.close();
        }
        // The tasks end and drop the socket: the peer reads end of stream.
        let read = tokio::task::spawn_blocking(move || accepted.read(&mut [0; 16]));
        assert_eq!(read.await.unwrap().unwrap(), 0, "end of stream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_fast() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let result = Connection::connect(
        &format!("127.0.0.1:{port}"),
        CONNECT_TIMEOUT,
        PATIENCE,
        None,
    )
    .await;
    assert!(
        matches!(result, Err(ConnectionError::Connect(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A fake server that answers its first connection's first bytes with
/// `answer` (or closes it at once if `None`), then ends.
fn answering_first_bytes_with(answer: Option<&'static [u8]>) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("set a read timeout");
        let mut request = [0_u8; 64];
        let _ = stream.read(&mut request);
        if let Some(answer) = answer {
            let _ = stream.write_all(answer);
        }
    });
    (address, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_connection_answered_with_tls_or_closed_unanswered_hints_at_the_tls_setting() {
    // A TLS alert record (handshake_failure), as a TLS port may send to
    // bytes that are not a ClientHello; and a TLS port that just closes.
    let tls_alert: &'static [u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
    for answer in [Some(tls_alert), None] {
        let (address, server) = answering_first_bytes_with(answer);
        let connection = connect(&address).await;
        let result = bounded(connection.call(Request::Get { key: "k" })).await;
        let message = result.expect_err("the call fails").to_string();
        assert!(
            message.contains("set memcached.tls"),
            "{answer:?}: {message:?} names the setting"
        );
        server.join().expect("the fake server ends");
    }
}
