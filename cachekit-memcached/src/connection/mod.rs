//! One pipelined TCP connection to a memcached server, shared by many
//! concurrent callers; plain or over TLS (see [`socket`]).
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
//! Timeout: the [watchdog](crate::watchdog), this layer's one timeout
//! mechanism, fails the connection with [`ConnectionError::TimedOut`] once a
//! call has waited longer than the connection's timeout; a call only counts
//! itself in [`State::queued`].
//!
//! [`ProtocolError::Mismatch`]: crate::protocol::ProtocolError::Mismatch
//! [`ProtocolError::Rejected`]: crate::protocol::ProtocolError::Rejected

mod failure;
mod read;
mod socket;
mod waiter;
mod write;

use std::collections::VecDeque;
use std::mem;
use std::slice;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;

pub(crate) use failure::ConnectionError;
use failure::Failure;
use read::{READ_BUFFER, ReadRole, ReadSide, read_loop};
use socket::WriteHalf;
use waiter::Waiter;
use write::{WRITE_BUFFER, Write, write_loop};

use crate::protocol::{Echo, Request, Response, encode};
use crate::tls::Tls;
use crate::watchdog::{self, Progress, Watched};

/// The error of a TLS handshake (and first round trip) that did not end
/// within the connect timeout.
const HANDSHAKE_TIMED_OUT: &str = "TLS: the server did not finish the handshake within memcached.connect_timeout: \
     it is overloaded, frozen or far (raise memcached.connect_timeout), \
     as a plain server refuses a TLS client at once";

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
    /// queue order; it gives the role up only when `queue` is empty and the
    /// socket has taken every byte (see [`WriteHalf::flushed`]).
    writing: bool,
    /// The socket's write half; dropped on failure so that the socket closes.
    socket: Option<Arc<WriteHalf>>,
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

/// How a submitted call gets its responses.
enum Turn<'a, T> {
    /// From the reader task, through this channel.
    Wait(oneshot::Receiver<Result<T, ConnectionError>>),
    /// By reading them itself: the connection was idle.
    Read(ReadRole<'a>),
}

impl Connection {
    /// Connects to `address` (`"host:port"`) within `connect_timeout`, with
    /// `TCP_NODELAY` on, and over TLS when `tls` is given (the handshake
    /// within `connect_timeout` too), starts the connection's reader and
    /// writer tasks, and has the watchdog fail it once a call waits longer
    /// than `timeout`.
    pub(crate) async fn connect(
        address: &str,
        connect_timeout: Duration,
        timeout: Duration,
        tls: Option<&Tls>,
    ) -> Result<Connection, ConnectionError> {
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(ConnectionError::Connect(error)),
            Err(_) => return Err(ConnectionError::ConnectTimeout),
        };
        stream.set_nodelay(true).map_err(ConnectionError::Connect)?;
        let (read_half, write_half) = match tls {
            None => socket::plain(stream),
            Some(tls) => {
                match tokio::time::timeout_at(deadline, tls.connect(address, stream)).await {
                    Ok(Ok((stream, session))) => socket::tls(stream, session),
                    Ok(Err(reason)) => return Err(ConnectionError::Tls(reason)),
                    Err(_) => return Err(ConnectionError::Tls(HANDSHAKE_TIMED_OUT.to_owned())),
                }
            }
        };
        let shared = Arc::new(Shared {
            address: address.to_owned(),
            state: Mutex::new(State {
                failure: None,
                queue: BytesMut::with_capacity(WRITE_BUFFER),
                writing: false,
                socket: Some(Arc::new(write_half)),
                read_side: Some(Box::new(ReadSide {
                    half: read_half,
                    fresh: tls.is_none(),
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
    /// A caller that bounds it more tightly may drop the call: its answer
    /// is read and discarded when it comes. It [`close`](Self::close)s the
    /// connection when the lateness is the server's, so that others stop
    /// queueing behind it.
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

impl Shared {
    /// Locks the state (a panic while it was locked left it consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the connection failed ([`Failure::Closed`] if it has not).
    fn failure(&self) -> Failure {
        self.lock().failure.clone().unwrap_or(Failure::Closed)
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

#[cfg(test)]
mod tests;
