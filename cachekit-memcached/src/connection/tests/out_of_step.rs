//! Answers out of step with the requests (rejected, unsolicited, repeated,
//! with the wrong token or key): they reach no other caller, and fail the
//! connection.

use std::time::Instant;

use cachekit_core::backend::testkit::ServerProcess;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_reaches_its_caller_then_closes_the_connection() {
    let server = ServerProcess::memcached();
    let connection = connect(&server.address()).await;
    // Not a valid key: memcached takes `zz` for an unknown flag.
    let got = call(&connection, Request::Get { key: "bad zz" }).await;
    assert!(matches!(got, Response::ClientError(_)), "{got:?}");
    assert!(connection.is_closed());
    let later = bounded(connection.call(Request::Noop)).await;
    let Err(ConnectionError::Protocol(ProtocolError::Rejected(_))) = later else {
        panic!("the rejection, not {later:?}");
    };

    let connection = connect(&server.address()).await;
    let batch = [Request::Noop, Request::Get { key: "bad zz" }, Request::Noop];
    let got = bounded(connection.call_many(&batch)).await;
    assert!(matches!(got, Err(ConnectionError::Protocol(_))), "{got:?}");
    assert!(connection.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_nobody_asked_for_closes_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    // Answers the first request twice, then holds the connection open.
    let fake = std::thread::spawn(move || {
        let (mut accepted, _) = listener.accept().unwrap();
        accepted.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut request = [0_u8; 4];
        accepted.read_exact(&mut request).unwrap();
        accepted.write_all(b"MN\r\nMN\r\n").unwrap();
        // Until the client closes its end.
        let _ = accepted.read(&mut [0; 16]);
    });
    let connection = connect(&address).await;
    assert_eq!(call(&connection, Request::Noop).await, Response::Noop);
    let started = Instant::now();
    while !connection.is_closed() {
        assert!(started.elapsed() < PATIENCE, "the extra answer is noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let later = bounded(connection.call(Request::Noop)).await;
    let Err(ConnectionError::Protocol(ProtocolError::Unsolicited)) = later else {
        panic!("an unsolicited answer, not {later:?}");
    };
    drop(connection);
    tokio::task::spawn_blocking(move || fake.join().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_repeated_for_a_later_call_fails_it_instead_of_answering_it() {
    // Reads two requests, then answers the first one twice.
    let (address, fake) = fake_server(|peer| {
        let first = peer.request();
        peer.request();
        peer.send(&first.hit("old").repeat(2));
        peer.until_closed();
    });
    let connection = Arc::new(connect(&address).await);
    let first = tokio::spawn({
        let connection = Arc::clone(&connection);
        async move { connection.call(Request::Get { key: "first" }).await }
    });
    until_in_flight(&connection, 1).await;
    let second = bounded(connection.call(Request::Get { key: "second" })).await;
    let first = bounded(first).await.unwrap();
    assert_eq!(first.unwrap(), value(b"old"));
    assert!(
        !matches!(&second, Ok(got) if *got == value(b"old")),
        "the second caller got the first caller's value"
    );
    assert!(out_of_step(&second), "{second:?}");
    assert!(connection.is_closed());
    drop(connection);
    join(fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_the_wrong_opaque_fails_every_call_on_the_connection() {
    // Answers the first of two requests with the token of the second.
    let (address, fake) = fake_server(|peer| {
        let first = peer.request();
        peer.request();
        let wrong = first.opaque.map_or(1, |opaque| opaque + 1);
        peer.send(&format!("VA 3 O{wrong} k{}\r\nnew\r\n", first.key));
        peer.until_closed();
    });
    let connection = Arc::new(connect(&address).await);
    // The first caller reads its own answer; the second waits for it.
    let first = tokio::spawn({
        let connection = Arc::clone(&connection);
        async move { connection.call(Request::Get { key: "first" }).await }
    });
    until_in_flight(&connection, 1).await;
    let second = bounded(connection.call(Request::Get { key: "second" })).await;
    let first = bounded(first).await.unwrap();
    assert!(out_of_step(&first), "{first:?}");
    assert!(out_of_step(&second), "{second:?}");
    assert!(connection.is_closed());
    let later = bounded(connection.call(Request::Noop)).await;
    assert!(out_of_step(&later), "{later:?}");
    drop(connection);
    join(fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_the_wrong_key_fails_every_call_on_the_connection() {
    // Answers the first request, then, once told to, the second one
    // with another key: by then the reader task reads.
    let (told, tell) = std::sync::mpsc::channel::<()>();
    let (address, fake) = fake_server(move |peer| {
        let first = peer.request();
        let second = peer.request();
        peer.send(&first.hit("one"));
        tell.recv_timeout(PATIENCE).expect("told to answer");
        peer.request();
        let echo = second.echo().replace(" ksecond", " kother");
        peer.send(&format!("VA 3{echo}\r\ntwo\r\n"));
        peer.until_closed();
    });
    let connection = Arc::new(connect(&address).await);
    let call = |key: &'static str| {
        let connection = Arc::clone(&connection);
        tokio::spawn(async move { connection.call(Request::Get { key }).await })
    };
    let first = call("first");
    until_in_flight(&connection, 1).await;
    let second = call("second");
    // Answered once the fake server has read the second request.
    let first = bounded(first).await.unwrap();
    assert_eq!(first.unwrap(), value(b"one"));
    let third = call("third");
    until_in_flight(&connection, 2).await;
    told.send(()).unwrap();
    for call in [second, third] {
        let answer = bounded(call).await.unwrap();
        assert!(out_of_step(&answer), "{answer:?}");
    }
    assert!(connection.is_closed());
    drop(connection);
    join(fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_checks_each_answer_against_its_own_request() {
    // Reads `skip` requests and `a`, `b`, `c`; answers the first `skip`
    // with `one`, then `a`, `b`, `c` in the order `a`, `c`, `b`, each
    // answer echoing its own request: in order, `b` would get `c`'s value.
    fn swapping(peer: &mut Peer, skip: usize) {
        let mut requests: Vec<Received> = (0..skip + 3).map(|_| peer.request()).collect();
        requests.swap(skip + 1, skip + 2);
        let answers: String = requests
            .iter()
            .enumerate()
            .map(|(i, r)| r.hit(if i < skip { "one" } else { &r.key }))
            .collect();
        peer.send(&answers);
        peer.until_closed();
    }
    let batch = [
        Request::Get { key: "a" },
        Request::Get { key: "b" },
        Request::Get { key: "c" },
    ];

    // Read by the caller itself.
    let (address, fake) = fake_server(|peer| swapping(peer, 0));
    let connection = connect(&address).await;
    let got = bounded(connection.call_many(&batch)).await;
    assert!(out_of_step(&got), "{got:?}");
    assert!(connection.is_closed());
    drop(connection);
    join(fake).await;

    // Handed out to the caller, queued behind another call.
    let (address, fake) = fake_server(|peer| swapping(peer, 1));
    let connection = Arc::new(connect(&address).await);
    let first = tokio::spawn({
        let connection = Arc::clone(&connection);
        async move { connection.call(Request::Get { key: "first" }).await }
    });
    until_in_flight(&connection, 1).await;
    let got = bounded(connection.call_many(&batch)).await;
    assert!(out_of_step(&got), "{got:?}");
    assert_eq!(bounded(first).await.unwrap().unwrap(), value(b"one"));
    assert!(connection.is_closed());
    drop(connection);
    join(fake).await;
}
