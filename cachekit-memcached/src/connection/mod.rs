//! One pipelined TCP connection to a memcached server, shared by many
//! concurrent callers.
//!
//! A caller encodes its requests into a shared write queue and joins a FIFO of
//! waiters in the same critical section, so the waiters are in the order of
//! the requests on the wire. memcached answers a connection's requests in
//! order, so each response belongs to the waiter at the front.
//!
//! Order alone would hand a caller another request's answer if the server
//! answered one request twice, or skipped one: so each response is also
//! checked against its request before anyone gets it. Every request with a
//! key takes, in that same critical section, an opaque token unique among
//! the requests in flight, and is sent with it and the `k` flag, which
//! memcached echoes back (see [`Echo`]). A response that does not echo its
//! request's token and key is a protocol error ([`ProtocolError::Mismatch`]):
//! it reaches no caller, and the connection fails. The reader task checks
//! the responses it hands out against [`State::echoes`]; a reading caller
//! checks its own against its requests. Error lines carry no echo and are
//! taken as the answer of the request at the front.
//!
//! Writing and reading are roles, each held by one party at a time. A caller
//! that finds the connection idle (no request in flight) takes both: it writes
//! its requests itself with a non-blocking `try_write` and reads its own
//! responses, so a sequential caller pays no task hop. Otherwise the writer
//! task writes (it yields first, so that the requests of every caller
//! ready to run share one write) and the reader task reads and hands each
//! response to its caller. They also take over when a caller's write does not
//! fit in the socket, and when a reading caller is done, or dropped, while
//! other requests are in flight.
//!
//! Cancellation: a caller dropped at any point leaves no half-written request
//! behind (writes happen without awaiting, or in the writer task), and gives
//! back the read role if it held it; its responses are still read, and
//! discarded, so later responses stay matched to their requests.
//!
//! Failure is final: an I/O or protocol error (a response out of step
//! included), the end of the stream, a `CLIENT_ERROR` or `ERROR` answer (see
//! [`ProtocolError::Rejected`]) or [`Connection::close`] fails every waiting
//! call, ends both tasks and closes the socket.
//!
//! Timeout: the [watchdog](crate::watchdog) fails the connection with
//! [`ConnectionError::TimedOut`] once a call has waited longer than the
//! connection's timeout, since the answer it missed would be taken for the
//! answer to the next request. Calls pay no timer of their own: each counts
//! itself in [`State::queued`], under the lock it takes anyway.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::mem;
use std::pin::pin;
use std::slice;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;

use crate::protocol::{Echo, ProtocolError, Request, Response, encode, parse};
use crate::watchdog::{self, Progress, Watched};

/// The initial capacity of the read buffer, and how much it grows by (bytes).
const READ_BUFFER: usize = 16 * 1024;

/// The read buffer grows by [`READ_BUFFER`] when less than this is free.
const READ_SPARE_MIN: usize = 4 * 1024;

/// The initial capacity of the write queue (bytes).
const WRITE_BUFFER: usize = 16 * 1024;

/// Why a call on a [`Connection`] failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    /// The TCP connection could not be established.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The TCP connection was not established within the connect timeout.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// Reading or writing the socket failed, or the server closed it.
    #[error("I/O error: {0}")]
    Io(io::Error),
    /// [`Connection::close`] was called.
    #[error("the connection was closed")]
    Closed,
    /// A call waited longer than the connection's timeout.
    #[error("no answer within the timeout")]
    TimedOut,
    /// The connection, idle, had been closed by the server: the call was
    /// not sent.
    #[error("the server had closed the idle connection")]
    Stale,
    /// The server's bytes are not valid responses to the requests sent.
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
}

/// Why a connection failed, kept to fail the calls that come after.
#[derive(Debug, Clone)]
enum Failure {
    /// Closed by [`Connection::close`].
    Closed,
    /// Failed by the watchdog: the calls numbered below `late` (numbering
    /// the calls queued from 0) waited longer than the timeout; the others
    /// did not, and fail as closed.
    TimedOut {
        /// The calls below this number timed out.
        late: u64,
    },
    /// An I/O error, by kind and message (`io::Error` is not `Clone`).
    Io(io::ErrorKind, String),
    /// A protocol error.
    Protocol(ProtocolError),
}

impl Failure {
    /// The failure for the end of the stream.
    fn end_of_stream() -> Failure {
        Failure::Io(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection".to_owned(),
        )
    }

    /// The failure that follows `response`, if it is a `CLIENT_ERROR` or an
    /// `ERROR`: see [`ProtocolError::Rejected`].
    fn after(response: &Response) -> Option<Failure> {
        let rejected = match response {
            Response::ClientError(message) => format!("CLIENT_ERROR {message}"),
            Response::Error => "ERROR".to_owned(),
            _ => return None,
        };
        Some(Failure::Protocol(ProtocolError::Rejected(rejected)))
    }

    /// The error of call number `call` (see [`State::queued`]).
    fn error_for(&self, call: u64) -> ConnectionError {
        match self {
            Failure::TimedOut { late } if call < *late => ConnectionError::TimedOut,
            failure => failure.error(),
        }
    }

    /// The error a call gets for this failure: for a timeout, that of a
    /// call that did not time out itself.
    fn error(&self) -> ConnectionError {
        match self {
            Failure::Closed | Failure::TimedOut { .. } => ConnectionError::Closed,
            Failure::Io(kind, message) => {
                ConnectionError::Io(io::Error::new(*kind, message.clone()))
            }
            Failure::Protocol(error) => ConnectionError::Protocol(error.clone()),
        }
    }
}

impl From<io::Error> for Failure {
    /// Keeps the error's kind and message.
    fn from(error: io::Error) -> Self {
        Failure::Io(error.kind(), error.to_string())
    }
}

/// A pipelined connection to one memcached server.
///
/// Calls from many tasks may run at once; their requests share writes and
/// their responses share reads. Not `Clone`: share it behind an `Arc`.
/// Dropping it closes it.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The state shared with the reader and writer tasks.
    shared: Arc<Shared>,
}

/// What the callers, the reader task and the writer task share.
#[derive(Debug)]
struct Shared {
    /// The server's address, for logs.
    address: String,
    /// The roles, the write queue and the waiters.
    state: Mutex<State>,
    /// Wakes the writer task when it is handed the write role.
    wake_writer: Notify,
    /// Wakes the reader task when requests are in flight and nobody reads.
    wake_reader: Notify,
    /// The last caller to read its own responses, woken when the connection
    /// fails. Registered at each of its polls and never cleared, so that a
    /// task that calls again and again registers (clones its waker) once;
    /// a caller woken after it stopped reading just finds nothing to do.
    reading_caller: AtomicWaker,
    /// Whether the connection failed (`State::failure` is set), readable
    /// without the lock.
    failed: AtomicBool,
    /// A hint, readable without the lock, that no request was in flight and
    /// nobody read when last looked: then a caller does not prepare the reply
    /// channel it will likely not need.
    idle: AtomicBool,
    /// Requests queued or sent whose responses have not been read yet,
    /// readable without the lock: how busy the connection is, for the pool.
    in_flight: AtomicUsize,
    /// Aborts the reader and writer tasks; set right after they are spawned.
    tasks: OnceLock<[AbortHandle; 2]>,
}

/// The mutable part of [`Shared`].
#[derive(Debug)]
struct State {
    /// Why the connection failed; `None` while it works. Set once.
    failure: Option<Failure>,
    /// Encoded requests not yet taken by a writer.
    queue: BytesMut,
    /// Whether someone holds the write role: a caller writing, or the writer
    /// task. Only the holder takes bytes from `queue`, so bytes are written in
    /// queue order; it gives the role up only when `queue` is empty.
    writing: bool,
    /// The socket's write half; dropped on failure so that the socket closes.
    socket: Option<Arc<OwnedWriteHalf>>,
    /// The read role: here while nobody reads, taken by the reader (boxed,
    /// so that passing it around copies little).
    read_side: Option<Box<ReadSide>>,
    /// One waiter per call, in the order of their requests. Only the holder
    /// of the read role removes waiters (and [`Shared::fail`], all at once).
    waiters: VecDeque<Waiter>,
    /// Calls ever queued (waiters ever pushed), for the watchdog: the
    /// waiter at the front is number `queued - waiters.len()`.
    queued: u64,
    /// The opaque token of the next request queued. Requests take tokens in
    /// queue order, so those in flight have different ones (the count wraps
    /// after 2^32 requests, far more than are ever in flight); a
    /// [`Request::Noop`] takes one too, unsent, so that the requests of a
    /// call have consecutive tokens.
    opaque: u32,
    /// What the response of each request queued and not answered yet is to
    /// echo, in the order of the requests: the front is the next response's.
    /// Only the holder of the read role removes entries, with the responses
    /// they check; a reading caller's stay here while it reads (it checks its
    /// own against its requests) and go when it gives the role back.
    echoes: VecDeque<Echo>,
}

/// The read half of the socket, with the bytes read and not yet parsed:
/// whoever holds it reads.
#[derive(Debug)]
struct ReadSide {
    /// The socket's read half.
    half: OwnedReadHalf,
    /// Bytes read and not yet parsed.
    buffer: BytesMut,
    /// Responses parsed, with what they echoed, and not yet handed out
    /// (kept for its allocation).
    parsed: Vec<(Response, Echo)>,
    /// Completed calls to answer once the state is unlocked (kept for its
    /// allocation).
    replies: Vec<Reply>,
    /// The responses of the reading caller.
    own: Vec<Response>,
}

/// A call waiting for its responses.
#[derive(Debug)]
enum Waiter {
    /// A `call` waiting for the reader task: waits for one response.
    One(oneshot::Sender<Result<Response, ConnectionError>>),
    /// A `call_many` waiting for the reader task: waits for `expected`
    /// responses.
    Many {
        /// The responses received so far.
        responses: Vec<Response>,
        /// How many responses complete the call.
        expected: usize,
        /// Where the responses go once all are in.
        reply: oneshot::Sender<Result<Vec<Response>, ConnectionError>>,
    },
    /// The call holding the read role, which takes its responses itself and
    /// removes this waiter when done. Only ever at the front. If the reader
    /// task finds it there, that caller was dropped and its `remaining`
    /// responses are discarded.
    Reader {
        /// How many of its responses its caller had not taken when it gave
        /// the read role back.
        remaining: usize,
    },
}

impl Waiter {
    /// Fails the call with `error` (ignored if the caller is gone; a reading
    /// caller is woken through [`Shared::reading_caller`] instead).
    fn fail(self, error: ConnectionError) {
        match self {
            Waiter::One(reply) => {
                let _ = reply.send(Err(error));
            }
            Waiter::Many { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Waiter::Reader { .. } => {}
        }
    }
}

/// A completed call, to be answered once the state lock is released.
#[derive(Debug)]
enum Reply {
    /// The response of a `call`.
    One(oneshot::Sender<Result<Response, ConnectionError>>, Response),
    /// The responses of a `call_many`.
    Many(
        oneshot::Sender<Result<Vec<Response>, ConnectionError>>,
        Vec<Response>,
    ),
}

impl Reply {
    /// Answers the call (ignored if the caller is gone).
    fn send(self) {
        match self {
            Reply::One(reply, response) => {
                let _ = reply.send(Ok(response));
            }
            Reply::Many(reply, responses) => {
                let _ = reply.send(Ok(responses));
            }
        }
    }
}

/// How a submitted call gets its responses.
enum Turn<'a, T> {
    /// From the reader task, through this channel.
    Wait(oneshot::Receiver<Result<T, ConnectionError>>),
    /// By reading them itself: the connection was idle.
    Read(ReadRole<'a>),
}

/// Who writes the requests a caller just queued.
enum Write {
    /// The caller wrote them all, at once.
    Written,
    /// The caller's write failed: the connection is to fail.
    Failed(io::Error),
    /// The writer task, which the caller handed the write role.
    ByWriter,
    /// The holder of the write role, before it gives the role up.
    Queued,
}

/// The read role held by a caller, whose [`Waiter::Reader`] is at the front.
/// Given back by [`finish`](ReadRole::finish), or when dropped.
struct ReadRole<'a> {
    /// The connection.
    shared: &'a Shared,
    /// The read side; `None` only once given back.
    side: Option<Box<ReadSide>>,
    /// How many responses the caller waits for.
    expected: usize,
    /// The opaque token of the caller's first request; the others follow.
    opaque: u32,
    /// The caller's number among the calls queued (see [`State::queued`]).
    call: u64,
    /// The failure its last response calls for (see [`Failure::after`]),
    /// applied once the role is given back.
    failure: Option<Failure>,
}

impl Connection {
    /// Connects to `address` (`"host:port"`) within `connect_timeout`, with
    /// `TCP_NODELAY` on, starts the connection's reader and writer tasks, and
    /// has the watchdog fail it once a call waits longer than `timeout`.
    pub(crate) async fn connect(
        address: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Connection, ConnectionError> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(ConnectionError::Connect(error)),
            Err(_) => return Err(ConnectionError::ConnectTimeout),
        };
        stream.set_nodelay(true).map_err(ConnectionError::Connect)?;
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            address: address.to_owned(),
            state: Mutex::new(State {
                failure: None,
                queue: BytesMut::with_capacity(WRITE_BUFFER),
                writing: false,
                socket: Some(Arc::new(write_half)),
                read_side: Some(Box::new(ReadSide {
                    half: read_half,
                    buffer: BytesMut::with_capacity(READ_BUFFER),
                    parsed: Vec::new(),
                    replies: Vec::new(),
                    own: Vec::new(),
                })),
                waiters: VecDeque::new(),
                queued: 0,
                opaque: 0,
                echoes: VecDeque::new(),
            }),
            wake_writer: Notify::new(),
            wake_reader: Notify::new(),
            reading_caller: AtomicWaker::new(),
            failed: AtomicBool::new(false),
            idle: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            tasks: OnceLock::new(),
        });
        let watched: Weak<dyn Watched> = Arc::downgrade(&shared) as Weak<Shared>;
        watchdog::watch(watched, timeout).map_err(ConnectionError::Connect)?;
        let reader = tokio::spawn(read_loop(Arc::clone(&shared)));
        let writer = tokio::spawn(write_loop(Arc::clone(&shared)));
        let tasks = shared
            .tasks
            .get_or_init(|| [reader.abort_handle(), writer.abort_handle()]);
        // A failure before the handles were set could not abort the tasks.
        if shared.lock().failure.is_some() {
            tasks.iter().for_each(AbortHandle::abort);
        }
        Ok(Connection { shared })
    }

    /// Sends `request` and returns its response; fails with
    /// [`ConnectionError::TimedOut`] (and fails the connection) if it waits
    /// longer than the connection's timeout.
    ///
    /// A caller that bounds it more tightly must [`close`](Self::close) the
    /// connection when it runs out of time.
    pub(crate) async fn call(&self, request: Request<'_>) -> Result<Response, ConnectionError> {
        let requests = slice::from_ref(&request);
        let waiter = |reply, _| Waiter::One(reply);
        // Taken out of the `match`, whose scrutinee's temporaries would
        // otherwise stay in the future across the awaits below (and make it
        // larger, hence costlier to move and allocate).
        let turn = self.submit(requests, waiter)?;
        match turn {
            Turn::Wait(reply) => reply.await.unwrap_or(Err(ConnectionError::Closed)),
            Turn::Read(mut role) => {
                role.read_own(requests).await?;
                let response = role.own().and_then(Vec::pop);
                role.finish();
                response.ok_or(ConnectionError::Closed)
            }
        }
    }

    /// Sends all `requests` in one write and returns their responses, in order.
    ///
    /// Times out like [`call`](Self::call).
    pub(crate) async fn call_many(
        &self,
        requests: &[Request<'_>],
    ) -> Result<Vec<Response>, ConnectionError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let waiter = |reply, expected| Waiter::Many {
            responses: Vec::with_capacity(expected),
            expected,
            reply,
        };
        // Taken out of the `match`, whose scrutinee's temporaries would
        // otherwise stay in the future across the awaits below (and make it
        // larger, hence costlier to move and allocate).
        let turn = self.submit(requests, waiter)?;
        match turn {
            Turn::Wait(reply) => reply.await.unwrap_or(Err(ConnectionError::Closed)),
            Turn::Read(mut role) => {
                role.read_own(requests).await?;
                let responses = role.own().map(mem::take).unwrap_or_default();
                role.finish();
                Ok(responses)
            }
        }
    }

    /// Whether the connection has failed or been closed; if so, every call
    /// fails. A connection the server closed while it was idle is found
    /// when a call is made on it ([`ConnectionError::Stale`]).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Checks an idle connection, without blocking, for the server having
    /// closed it, and fails it if so (as a call on it would).
    pub(crate) fn check_idle(&self) {
        // A failed connection has no read side left to probe.
        drop(self.shared.unless_closed_while_idle(self.shared.lock()));
    }

    /// How many requests are queued or sent and not answered yet (meaningless
    /// once the connection [`is_closed`](Self::is_closed): an answer nobody
    /// asked for is counted off before it fails the connection).
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Closes the connection: fails the calls in flight and every later one
    /// with [`ConnectionError::Closed`], ends the tasks and closes the socket.
    pub(crate) fn close(&self) {
        self.shared.fail(Failure::Closed);
    }

    /// Queues the encoded `requests` with a waiter for their responses, and
    /// writes them now if the connection is idle, or wakes the writer.
    ///
    /// If the connection is idle, the caller takes the read role; otherwise
    /// it waits on a channel, made into a waiter by `waiter` (given the reply
    /// sender and the number of requests).
    ///
    /// An idle connection is first checked, without blocking, for the server
    /// having closed it (a restarted server): then nothing is sent and the
    /// call fails with [`ConnectionError::Stale`], to be made on a new one.
    /// Checked here, under the lock the call takes anyway, rather than by the
    /// pool for every call (a lock of its own).
    fn submit<T>(
        &self,
        requests: &[Request<'_>],
        waiter: fn(oneshot::Sender<Result<T, ConnectionError>>, usize) -> Waiter,
    ) -> Result<Turn<'_, T>, ConnectionError> {
        let shared = &*self.shared;
        // Made before locking, unless the caller will likely read itself.
        let mut channel = (!shared.idle.load(Ordering::Relaxed)).then(oneshot::channel);
        let (turn, write, wake_reader) = {
            let state = shared.lock();
            if let Some(failure) = &state.failure {
                return Err(failure.error());
            }
            let Some(mut state) = shared.unless_closed_while_idle(state) else {
                return Err(ConnectionError::Stale);
            };
            let opaque = state.opaque;
            for request in requests {
                let state = &mut *state;
                encode(request, state.opaque, &mut state.queue);
                state.echoes.push_back(Echo::of(request, state.opaque));
                state.opaque = state.opaque.wrapping_add(1);
            }
            shared
                .in_flight
                .fetch_add(requests.len(), Ordering::Relaxed);
            let idle = state.waiters.is_empty();
            let turn = match state.read_side.take() {
                Some(side) if idle => {
                    shared.idle.store(false, Ordering::Relaxed);
                    state.waiters.push_back(Waiter::Reader {
                        remaining: requests.len(),
                    });
                    Turn::Read(ReadRole {
                        shared,
                        opaque,
                        call: state.queued,
                        side: Some(side),
                        expected: requests.len(),
                        failure: None,
                    })
                }
                side => {
                    state.read_side = side;
                    let (reply, response) = channel.take().unwrap_or_else(oneshot::channel);
                    state.waiters.push_back(waiter(reply, requests.len()));
                    Turn::Wait(response)
                }
            };
            state.queued += 1;
            // Nobody reads while a request is in flight: the reader task must.
            let wake_reader = state.read_side.is_some();
            let write = if state.writing {
                // The role holder writes these bytes before giving the role up.
                Write::Queued
            } else if idle {
                // Idle: write at once, without waking the writer task, and
                // under the lock: the write does not wait, and nobody else
                // has a request to queue but callers arriving this instant.
                state.write_now()
            } else {
                // Requests in flight: let the writer task gather more first.
                state.writing = true;
                Write::ByWriter
            };
            (turn, write, wake_reader)
        };
        match write {
            Write::Failed(error) => shared.fail(error.into()),
            Write::ByWriter => shared.wake_writer.notify_one(),
            Write::Written | Write::Queued => {}
        }
        if wake_reader {
            shared.wake_reader.notify_one();
        }
        watchdog::nudge();
        Ok(turn)
    }
}

impl Drop for Connection {
    /// Closes the connection.
    fn drop(&mut self) {
        self.close();
    }
}

impl State {
    /// Writes what the socket takes of the queue without waiting, for a
    /// caller that found nobody writing; if bytes remain, takes the write
    /// role for the writer task, which the caller then wakes.
    fn write_now(&mut self) -> Write {
        let Some(socket) = self.socket.as_deref() else {
            self.writing = true;
            return Write::ByWriter;
        };
        match socket.try_write(&self.queue) {
            Ok(written) if written == self.queue.len() => {
                self.queue.clear();
                Write::Written
            }
            Ok(written) => {
                self.queue.advance(written);
                self.writing = true;
                Write::ByWriter
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                self.writing = true;
                Write::ByWriter
            }
            Err(error) => Write::Failed(error),
        }
    }
}

impl ReadSide {
    /// Reads more bytes into the buffer.
    async fn read_more(&mut self) -> Result<(), Failure> {
        if self.buffer.capacity() - self.buffer.len() < READ_SPARE_MIN {
            self.buffer.reserve(READ_BUFFER);
        }
        match self.half.read_buf(&mut self.buffer).await {
            Ok(0) => Err(Failure::end_of_stream()),
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Parses every complete response in the buffer into `parsed`, counting
    /// them off `in_flight`; stops at bytes that are not a response.
    fn parse_all(&mut self, in_flight: &AtomicUsize) -> Result<(), Failure> {
        let before = self.parsed.len();
        // Each parsed response consumes bytes: this ends.
        let parsed = loop {
            match parse(&mut self.buffer) {
                Ok(Some(response)) => self.parsed.push(response),
                Ok(None) => break Ok(()),
                Err(error) => break Err(Failure::Protocol(error)),
            }
        };
        in_flight.fetch_sub(self.parsed.len() - before, Ordering::Relaxed);
        parsed
    }

    /// Checks an idle connection, without blocking: anything to read while
    /// no request is in flight is the end of the stream, an error, or bytes
    /// nobody asked for. Costs no system call unless the socket was found
    /// readable, as it is once the server closed it.
    fn probe_idle(&self) -> Result<(), Failure> {
        match self.half.try_read(&mut [0_u8; 1]) {
            Ok(0) => Err(Failure::end_of_stream()),
            Ok(_) => Err(Failure::Protocol(ProtocolError::Unsolicited)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

impl ReadRole<'_> {
    /// Reads until all the caller's responses, which come first, are in
    /// `own`, or the connection fails. Each is checked against its request,
    /// of `requests` (the caller's, in order).
    async fn read_own(&mut self, requests: &[Request<'_>]) -> Result<(), ConnectionError> {
        let shared = self.shared;
        let Some(side) = self.side.as_mut() else {
            return Err(ConnectionError::Closed);
        };
        loop {
            while let Some(request) = requests.get(side.own.len()) {
                let (response, echoed) = match parse(&mut side.buffer) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => break,
                    Err(error) => return Err(shared.fail_with(Failure::Protocol(error))),
                };
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                let opaque = self.opaque.wrapping_add(side.own.len() as u32);
                if let Err(error) = Echo::of(request, opaque).check(&response, echoed) {
                    return Err(shared.fail_with(Failure::Protocol(error)));
                }
                let failure = Failure::after(&response);
                side.own.push(response);
                if let Some(failure) = failure {
                    // The responses after this one may be out of step.
                    if side.own.len() < self.expected {
                        return Err(shared.fail_with(failure));
                    }
                    self.failure = Some(failure);
                }
            }
            if side.own.len() == self.expected {
                return Ok(());
            }
            let mut read = pin!(side.read_more());
            let read = poll_fn(|cx| {
                // No clone when this task registered last (as it usually did).
                shared.reading_caller.register(cx.waker());
                // Checked after the waker is registered: a failure from now
                // on wakes it.
                if shared.failed.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                read.as_mut().poll(cx).map(Some)
            });
            match read.await {
                Some(Ok(())) => {}
                Some(Err(failure)) => return Err(shared.fail_with(failure)),
                None => return Err(shared.failure().error_for(self.call)),
            }
        }
    }

    /// The caller's responses; all in once [`read_own`](Self::read_own)
    /// succeeded.
    fn own(&mut self) -> Option<&mut Vec<Response>> {
        self.side.as_mut().map(|side| &mut side.own)
    }

    /// Gives the read role back once the caller has its responses: hands the
    /// responses of later requests already read to their callers, removes
    /// the caller's waiter, and wakes the reader task if requests are still
    /// in flight.
    fn finish(mut self) {
        let shared = self.shared;
        let Some(mut side) = self.side.take() else {
            return;
        };
        side.own.clear();
        let mut failure = self.failure.take();
        if failure.is_none() {
            failure = side.parse_all(&shared.in_flight).err();
        }
        let mut replies = Vec::new();
        let in_flight = {
            let mut state = shared.lock();
            if state.failure.is_some() {
                drop(state);
                drop(side);
                return;
            }
            if matches!(state.waiters.front(), Some(Waiter::Reader { .. })) {
                state.waiters.pop_front();
                state.echoes.drain(..self.expected);
            }
            if !side.parsed.is_empty() {
                let dispatched = dispatch(&mut state, &mut side.parsed, &mut side.replies);
                failure = failure.or(dispatched);
                replies = mem::take(&mut side.replies);
            }
            let in_flight = !state.waiters.is_empty();
            if !in_flight && !side.buffer.is_empty() {
                // Bytes past the answer to the last request.
                failure = failure.or(Some(Failure::Protocol(ProtocolError::Unsolicited)));
            }
            state.read_side = Some(side);
            shared.idle.store(!in_flight, Ordering::Relaxed);
            in_flight
        };
        replies.into_iter().for_each(Reply::send);
        match failure {
            Some(failure) => shared.fail(failure),
            None if in_flight => shared.wake_reader.notify_one(),
            None => {}
        }
    }
}

impl Drop for ReadRole<'_> {
    /// Gives the read role back from a caller dropped before its responses
    /// were all in (or failed): its waiter stays, counting the responses it
    /// did not take, for the reader task to discard.
    fn drop(&mut self) {
        let Some(mut side) = self.side.take() else {
            return;
        };
        let taken = side.own.len();
        side.own.clear();
        let mut state = self.shared.lock();
        if state.failure.is_some() {
            drop(state);
            drop(side);
            return;
        }
        if let Some(Waiter::Reader { remaining }) = state.waiters.front_mut() {
            *remaining = self.expected.saturating_sub(taken);
            if *remaining == 0 {
                state.waiters.pop_front();
            }
            // The responses it took were checked; the others are checked
            // when they are discarded.
            state.echoes.drain(..taken);
        }
        state.read_side = Some(side);
        let in_flight = !state.waiters.is_empty();
        self.shared.idle.store(!in_flight, Ordering::Relaxed);
        drop(state);
        if in_flight {
            self.shared.wake_reader.notify_one();
        }
    }
}

impl Shared {
    /// Locks the state (a panic while it was locked left it consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the connection failed ([`Failure::Closed`] if it has not).
    fn failure(&self) -> Failure {
        self.lock().failure.clone().unwrap_or(Failure::Closed)
    }

    /// Writes the queue until it is empty, as the holder of the write role,
    /// then gives the role up. Fails the connection on a write error; returns
    /// whether the connection still works.
    async fn flush(&self) -> bool {
        loop {
            let (socket, mut chunk) = {
                let mut state = self.lock();
                let Some(socket) = state.socket.clone() else {
                    return false;
                };
                if state.queue.is_empty() {
                    state.writing = false;
                    return true;
                }
                (socket, state.queue.split())
            };
            while !chunk.is_empty() {
                let written = match socket.writable().await {
                    Ok(()) => socket.try_write(&chunk),
                    Err(error) => Err(error),
                };
                match written {
                    Ok(0) => {
                        self.fail(io::Error::from(io::ErrorKind::WriteZero).into());
                        return false;
                    }
                    Ok(written) => chunk.advance(written),
                    Err(error)
                        if matches!(
                            error.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(error) => {
                        self.fail(error.into());
                        return false;
                    }
                }
            }
        }
    }

    /// Parses the complete responses in `side`'s buffer and hands them to
    /// their callers, as the reader task. Returns the failure that ends the
    /// connection, if any.
    fn hand_out(&self, side: &mut ReadSide) -> Option<Failure> {
        let parsed = side.parse_all(&self.in_flight).err();
        if side.parsed.is_empty() {
            return parsed;
        }
        let dispatched = dispatch(&mut self.lock(), &mut side.parsed, &mut side.replies);
        side.replies.drain(..).for_each(Reply::send);
        // A response the dispatch stopped at comes before the parse error.
        dispatched.or(parsed)
    }

    /// Takes the read role for the reader task, if nobody holds it and
    /// requests are in flight.
    fn take_read_role(&self) -> Option<Box<ReadSide>> {
        let mut state = self.lock();
        if state.waiters.is_empty() {
            return None;
        }
        state.read_side.take()
    }

    /// Gives the read role back from the reader task if no request is in
    /// flight (returning `None`); else returns it to read on. Fails on bytes
    /// read past the answer to the last request.
    fn give_back_read_role_if_idle(
        &self,
        side: Box<ReadSide>,
    ) -> Result<Option<Box<ReadSide>>, Failure> {
        let mut state = self.lock();
        if let Some(failure) = &state.failure {
            return Err(failure.clone());
        }
        if !state.waiters.is_empty() {
            return Ok(Some(side));
        }
        if !side.buffer.is_empty() {
            return Err(Failure::Protocol(ProtocolError::Unsolicited));
        }
        state.read_side = Some(side);
        self.idle.store(true, Ordering::Relaxed);
        Ok(None)
    }

    /// [`fail`](Self::fail)s the connection and returns the error for the
    /// call that found `failure`.
    fn fail_with(&self, failure: Failure) -> ConnectionError {
        let error = failure.error();
        self.fail(failure);
        error
    }

    /// Fails the connection for good, unless it already failed: fails every
    /// waiter, drops the socket halves it holds, wakes a reading caller (which
    /// then drops the read half) and aborts the tasks (which drops the halves
    /// they hold), so the socket closes.
    fn fail(&self, failure: Failure) {
        self.fail_locked(self.lock(), failure);
    }

    /// Checks the connection, if idle, for the server having closed it
    /// (without blocking); if so, fails it before the lock is let go (so
    /// that nobody probes again, the probe may have taken the byte that gave
    /// the close away, and sends) and returns `None`; else the lock.
    fn unless_closed_while_idle<'a>(
        &self,
        state: MutexGuard<'a, State>,
    ) -> Option<MutexGuard<'a, State>> {
        let idle = state
            .read_side
            .as_ref()
            .filter(|_| state.waiters.is_empty());
        match idle.map_or(Ok(()), |side| side.probe_idle()) {
            Ok(()) => Some(state),
            Err(failure) => {
                self.fail_locked(state, failure);
                None
            }
        }
    }

    /// [`fail`](Self::fail), with the state already locked: the failure is
    /// set before anyone else can lock it.
    fn fail_locked(&self, mut state: MutexGuard<'_, State>, failure: Failure) {
        let (waiters, first, read_side) = {
            if state.failure.is_some() {
                return;
            }
            tracing::debug!(address = %self.address, ?failure, "memcached connection failed");
            state.failure = Some(failure.clone());
            self.failed.store(true, Ordering::Release);
            self.idle.store(false, Ordering::Relaxed);
            state.socket = None;
            state.queue = BytesMut::new();
            state.echoes = VecDeque::new();
            let first = state.queued - state.waiters.len() as u64;
            let taken = (mem::take(&mut state.waiters), first, state.read_side.take());
            drop(state);
            taken
        };
        drop(read_side);
        for (call, waiter) in (first..).zip(waiters) {
            waiter.fail(failure.error_for(call));
        }
        self.reading_caller.wake();
        if let Some(tasks) = self.tasks.get() {
            tasks.iter().for_each(AbortHandle::abort);
        }
    }
}

impl Watched for Shared {
    fn progress(&self) -> Progress {
        let state = self.lock();
        Progress {
            closed: state.failure.is_some(),
            queued: state.queued,
            answered: state.queued - state.waiters.len() as u64,
        }
    }

    fn time_out(&self, late: u64) {
        self.fail(Failure::TimedOut { late });
    }
}

/// Hands `responses` to the waiters at the front of `state.waiters`, in
/// order, putting the answers into `replies` (to send once the state is
/// unlocked). The responses of a [`Waiter::Reader`] found at the front are
/// discarded: its caller is gone.
///
/// Each response is first checked against the echo its request expects
/// (the front of `state.echoes`). Stops at a response that does not echo
/// its request or that no one waits for (which reaches no caller), and
/// after a `CLIENT_ERROR` or `ERROR` (which still reaches its caller),
/// returning the failure.
fn dispatch(
    state: &mut State,
    responses: &mut Vec<(Response, Echo)>,
    replies: &mut Vec<Reply>,
) -> Option<Failure> {
    for (response, echoed) in responses.drain(..) {
        let Some(expected) = state.echoes.pop_front() else {
            return Some(Failure::Protocol(ProtocolError::Unsolicited));
        };
        if let Err(error) = expected.check(&response, echoed) {
            return Some(Failure::Protocol(error));
        }
        let failure = Failure::after(&response);
        match state.waiters.pop_front() {
            None => return Some(Failure::Protocol(ProtocolError::Unsolicited)),
            Some(Waiter::One(reply)) => replies.push(Reply::One(reply, response)),
            Some(Waiter::Many {
                mut responses,
                expected,
                reply,
            }) => {
                responses.push(response);
                if responses.len() == expected {
                    replies.push(Reply::Many(reply, responses));
                } else {
                    state.waiters.push_front(Waiter::Many {
                        responses,
                        expected,
                        reply,
                    });
                }
            }
            Some(Waiter::Reader { remaining }) => {
                if remaining > 1 {
                    state.waiters.push_front(Waiter::Reader {
                        remaining: remaining - 1,
                    });
                }
            }
        }
        if failure.is_some() {
            return failure;
        }
    }
    None
}

/// The reader task: whenever requests are in flight and no caller reads,
/// reads responses and hands them to their callers, until none is in flight.
/// Runs until the connection fails.
async fn read_loop(shared: Arc<Shared>) {
    loop {
        shared.wake_reader.notified().await;
        let Some(mut side) = shared.take_read_role() else {
            continue;
        };
        loop {
            if let Some(failure) = shared.hand_out(&mut side) {
                return shared.fail(failure);
            }
            side = match shared.give_back_read_role_if_idle(side) {
                Ok(Some(side)) => side,
                Ok(None) => break,
                Err(failure) => return shared.fail(failure),
            };
            if let Err(failure) = side.read_more().await {
                return shared.fail(failure);
            }
        }
    }
}

/// The writer task: flushes the queue each time it is handed the write role,
/// until the connection fails.
async fn write_loop(shared: Arc<Shared>) {
    loop {
        shared.wake_writer.notified().await;
        // Let the callers that are ready to run queue their requests first,
        // so that they share this write. A yielding task runs again after
        // the runtime next polls for I/O, which wakes the readers of other
        // connections: yielding twice also lets the callers those readers
        // answer queue their next requests (with 64 tasks over 3 servers,
        // about a quarter fewer writes; the cost is one more look for I/O).
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        if !shared.flush().await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::Instant;

    use bytes::Bytes;
    use cachekit_core::testkit::{ServerProcess, SilentServer};

    use super::*;

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
        Connection::connect(address, CONNECT_TIMEOUT, PATIENCE)
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
            if let Ok(responses) = tokio::time::timeout(Duration::from_millis(millis), batch).await
            {
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
            assert!(
                matches!(error, ConnectionError::Io(_)),
                "an I/O error, not {error:?}"
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
            Connection::connect(&server.address(), CONNECT_TIMEOUT, timeout)
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
                let connection = Connection::connect(&address, CONNECT_TIMEOUT, timeout)
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_port_fails_fast() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let result =
            Connection::connect(&format!("127.0.0.1:{port}"), CONNECT_TIMEOUT, PATIENCE).await;
        assert!(
            matches!(result, Err(ConnectionError::Connect(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
