//! The ceiling of the 64-task rows: a raw meta-protocol client that
//! pipelines every task's `mg <key> v` over one connection per server.
//!
//! Per connection, callers hand their request and a oneshot sender to a
//! writer task through a channel; the writer passes the senders on to a
//! reader task, in request order, before it writes the requests (every
//! request waiting in the channel in one write), and the reader completes
//! the senders in that order as the `VA <len>` / `EN` answers come. That is
//! the least a client can do to share one connection among many tasks: no
//! timeouts, no checks of the answers against their requests, no pool, no
//! retries. cachekit's 64-task row is shown as a share of this one.

use cachekit_core::backend::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// The most requests the writer puts in one write.
const MOST_PER_WRITE: usize = 256;

/// A value, or `None` for a miss.
type Answer = Option<Vec<u8>>;

/// A request on the wire, and where its answer goes.
type Call = (Bytes, oneshot::Sender<Answer>);

/// One pipelined connection per server, and which server holds each key.
pub(crate) struct Ceiling {
    connections: Vec<mpsc::UnboundedSender<Call>>,
    /// The `mg` request of each key, and the server that holds it.
    requests: Vec<(Bytes, usize)>,
}

impl Ceiling {
    /// Connects to every server and finds, by asking each, which one holds
    /// each of `keys` (wire keys, stored beforehand), so that the requests
    /// go where cachekit's ring put the values.
    pub(crate) async fn connect(servers: &[String], keys: &[String]) -> Ceiling {
        let mut connections = Vec::with_capacity(servers.len());
        for server in servers {
            connections.push(open(server).await);
        }
        let mut ceiling = Ceiling {
            connections,
            requests: Vec::with_capacity(keys.len()),
        };
        for key in keys {
            let request = Bytes::from(format!("mg {key} v\r\n"));
            let mut owner = None;
            for server in 0..servers.len() {
                if ceiling.ask(server, request.clone()).await.is_some() {
                    assert!(owner.is_none(), "{key} is on two servers");
                    owner = Some(server);
                }
            }
            let owner = owner.unwrap_or_else(|| panic!("{key} is on no server"));
            ceiling.requests.push((request, owner));
        }
        ceiling
    }

    /// The value of the `key`th of the keys given to [`connect`](Self::connect).
    pub(crate) async fn get(&self, key: usize) -> Answer {
        let (request, server) = &self.requests[key];
        self.ask(*server, request.clone()).await
    }

    async fn ask(&self, server: usize, request: Bytes) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.connections[server]
            .send((request, reply))
            .expect("the writer runs");
        answer.await.expect("the reader answers")
    }
}

/// Connects to `server` and starts its writer and reader tasks, which end
/// when every sender of the returned channel is dropped.
async fn open(server: &str) -> mpsc::UnboundedSender<Call> {
    let stream = TcpStream::connect(server).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, write) = stream.into_split();
    let (calls, incoming) = mpsc::unbounded_channel();
    let (pending, waiting) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(write, incoming, pending));
    tokio::spawn(read_loop(BufReader::new(read), waiting));
    calls
}

/// Writes the requests, each waiting one in one write, and passes their
/// senders on to the reader first, in the same order.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut incoming: mpsc::UnboundedReceiver<Call>,
    pending: mpsc::UnboundedSender<oneshot::Sender<Answer>>,
) {
    let mut buffer = Vec::new();
    while let Some(mut call) = incoming.recv().await {
        buffer.clear();
        for _ in 0..MOST_PER_WRITE {
            let (request, reply) = call;
            buffer.extend_from_slice(&request);
            if pending.send(reply).is_err() {
                return;
            }
            match incoming.try_recv() {
                Ok(next) => call = next,
                Err(_) => break,
            }
        }
        if socket.write_all(&buffer).await.is_err() {
            return;
        }
    }
}

/// Reads the answers in order and completes the senders in the same order.
async fn read_loop(
    mut socket: BufReader<OwnedReadHalf>,
    mut waiting: mpsc::UnboundedReceiver<oneshot::Sender<Answer>>,
) {
    let mut line = String::new();
    // Each turn answers a request sent, so the loop is bounded by the
    // requests sent; it ends when the writer is gone.
    while let Some(reply) = waiting.recv().await {
        line.clear();
        if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let answer = match line.trim_end() {
            "EN" => None,
            header => {
                let len: usize = header
                    .strip_prefix("VA ")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|len| len.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected answer {header:?}"));
                let mut value = vec![0; len + 2];
                socket.read_exact(&mut value).await.unwrap();
                assert_eq!(&value[len..], b"\r\n", "a value ends with CRLF");
                value.truncate(len);
                Some(value)
            }
        };
        let _ = reply.send(answer);
    }
}
