//! Unit tests of [`Connection`], against real memcached servers and against
//! fake ones that misbehave as a real one cannot be made to; this file holds
//! the helpers they share.

mod cancellation;
mod failure;
mod out_of_step;
mod round_trip;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;

use bytes::Bytes;

use super::*;
use crate::protocol::ProtocolError;

/// The bound on every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(10);

/// The connect timeout used by the tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `future`, failing the test if it takes longer than [`PATIENCE`].
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("finished in time")
}

/// Connects to `address`, failing the test if it cannot.
async fn connect(address: &str) -> Connection {
    Connection::connect(address, CONNECT_TIMEOUT, PATIENCE, None)
        .await
        .expect("connects")
}

/// `call`, bounded, failing the test on an error.
async fn call(connection: &Connection, request: Request<'_>) -> Response {
    bounded(connection.call(request)).await.expect("answered")
}

/// A [`Response::Value`] holding `bytes`.
fn value(bytes: &[u8]) -> Response {
    Response::Value(Bytes::copy_from_slice(bytes))
}

/// A request as the fake server reads it.
struct Received {
    /// The opaque token, if the request carries one.
    opaque: Option<u32>,
    /// The key; empty for `mn`.
    key: String,
}

impl Received {
    /// The flags of memcached's answer to this request: ` O<opaque>
    /// k<key>` if it asks for them (`O<opaque> k`), else none.
    fn echo(&self) -> String {
        match self.opaque {
            Some(opaque) => format!(" O{opaque} k{}", self.key),
            None => String::new(),
        }
    }

    /// memcached's answer to this `mg <key> v` on a hit on `value`.
    fn hit(&self, value: &str) -> String {
        format!("VA {}{}\r\n{value}\r\n", value.len(), self.echo())
    }
}

/// The connection a fake server accepted.
struct Peer {
    /// The socket, read through a buffer.
    stream: BufReader<TcpStream>,
}

impl Peer {
    /// Reads the next request: one line, as `mg`, `md` and `mn` are.
    fn request(&mut self) -> Received {
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("a request line");
        let mut tokens = line.split_whitespace().skip(1);
        let key = tokens.next().unwrap_or_default().to_owned();
        let opaque = tokens
            .find_map(|token| token.strip_prefix('O'))
            .map(|opaque| opaque.parse().expect("a numeric opaque token"));
        Received { opaque, key }
    }

    /// Writes `bytes` to the client.
    fn send(&mut self, bytes: &str) {
        self.stream.get_mut().write_all(bytes.as_bytes()).unwrap();
    }

    /// Waits, at most [`PATIENCE`], for the client to close the connection.
    fn until_closed(&mut self) {
        let _ = self.stream.read_to_end(&mut Vec::new());
    }
}

/// A fake memcached on 127.0.0.1, for the misbehaviour a real one cannot
/// be made to show: a thread accepts one connection and runs `script`
/// on it. Returns the address and the thread.
fn fake_server(script: impl FnOnce(&mut Peer) + Send + 'static) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        script(&mut Peer {
            stream: BufReader::new(stream),
        });
    });
    (address, thread)
}

/// Waits for the fake server's thread to end, failing the test if it
/// panicked or takes longer than [`PATIENCE`].
async fn join(fake: JoinHandle<()>) {
    bounded(tokio::task::spawn_blocking(move || fake.join()))
        .await
        .unwrap()
        .expect("the fake server's script succeeds");
}

/// Waits until `connection` has `requests` requests in flight.
async fn until_in_flight(connection: &Connection, requests: usize) {
    bounded(async {
        while connection.in_flight() < requests {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Whether `result` is the failure of a response out of step.
fn out_of_step<T>(result: &Result<T, ConnectionError>) -> bool {
    matches!(
        result,
        Err(ConnectionError::Protocol(ProtocolError::Mismatch { .. }))
    )
}
