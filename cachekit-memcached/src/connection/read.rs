//! The read side: the socket's read half ([`ReadSide`]), the read role of a
//! caller reading its own responses ([`ReadRole`]), the reader task, and
//! the dispatch that checks each response against its request before its
//! caller gets it.

use std::future::{Future, poll_fn};
use std::io;
use std::mem;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use bytes::BytesMut;

use super::failure::{ConnectionError, Failure};
use super::socket::ReadHalf;
use super::waiter::{Reply, Waiter};
use super::{Shared, State};
use crate::protocol::{Echo, ProtocolError, Request, Response, parse};

/// The initial capacity of the read buffer, and how much it grows by (bytes).
pub(super) const READ_BUFFER: usize = 16 * 1024;

/// The read buffer grows by [`READ_BUFFER`] when less than this is free.
const READ_SPARE_MIN: usize = 4 * 1024;

/// The read half of the socket, with the bytes read and not yet parsed:
/// whoever holds it reads.
#[derive(Debug)]
pub(super) struct ReadSide {
    /// The socket's read half.
    pub(super) half: ReadHalf,
    /// Whether nothing was read yet on a plain TCP connection: then the end
    /// of the stream, a reset or TLS bytes likely mean a server that
    /// requires TLS, which the failure says.
    pub(super) fresh: bool,
    /// Bytes read and not yet parsed.
    pub(super) buffer: BytesMut,
    /// Responses parsed, with what they echoed, and not yet handed out
    /// (kept for its allocation).
    pub(super) parsed: Vec<(Response, Echo)>,
    /// Completed calls to answer once the state is unlocked (kept for its
    /// allocation).
    pub(super) replies: Vec<Reply>,
    /// The responses of the reading caller.
    pub(super) own: Vec<Response>,
}

/// The read role held by a caller, whose [`Waiter::Reader`] is at the front.
/// Given back by [`finish`](ReadRole::finish), or when dropped.
pub(super) struct ReadRole<'a> {
    /// The connection.
    pub(super) shared: &'a Shared,
    /// The read side; `None` only once given back.
    pub(super) side: Option<Box<ReadSide>>,
    /// How many responses the caller waits for.
    pub(super) expected: usize,
    /// The opaque token of the caller's first request; the others follow.
    pub(super) opaque: u32,
    /// The caller's number among the calls queued (see [`State::queued`]).
    pub(super) call: u64,
    /// The failure its last response calls for (see [`Failure::after`]),
    /// applied once the role is given back.
    pub(super) failure: Option<Failure>,
}

impl ReadSide {
    /// Reads more bytes into the buffer.
    async fn read_more(&mut self) -> Result<(), Failure> {
        if self.buffer.capacity() - self.buffer.len() < READ_SPARE_MIN {
            self.buffer.reserve(READ_BUFFER);
        }
        let read = self.half.read_buf(&mut self.buffer).await;
        if self.fresh {
            return self.first_read(read);
        }
        match read {
            Ok(0) => Err(Failure::end_of_stream()),
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The outcome of the first read of a plain TCP connection: a server
    /// that closes or resets it before answering, or answers with a TLS
    /// record (an alert, 0x15, or a handshake, 0x16), likely requires TLS.
    #[cold]
    fn first_read(&mut self, read: io::Result<usize>) -> Result<(), Failure> {
        let hint = "if the server requires TLS, set memcached.tls";
        match read {
            Ok(0) => Err(Failure::Io(
                io::ErrorKind::UnexpectedEof,
                format!("the server closed the connection before answering ({hint})"),
            )),
            Ok(_) if matches!(self.buffer.first(), Some(0x15 | 0x16)) => Err(Failure::Io(
                io::ErrorKind::InvalidData,
                format!("the server answered with TLS: {hint}"),
            )),
            Ok(_) => {
                self.fresh = false;
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => Err(Failure::Io(
                error.kind(),
                format!("the server reset the connection before answering ({hint})"),
            )),
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
    pub(super) fn probe_idle(&self) -> Result<(), Failure> {
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
    pub(super) async fn read_own(
        &mut self,
        requests: &[Request<'_>],
    ) -> Result<(), ConnectionError> {
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
    pub(super) fn own(&mut self) -> Option<&mut Vec<Response>> {
        self.side.as_mut().map(|side| &mut side.own)
    }

    /// Gives the read role back once the caller has its responses: hands the
    /// responses of later requests already read to their callers, removes
    /// the caller's waiter, and wakes the reader task if requests are still
    /// in flight.
    pub(super) fn finish(mut self) {
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
pub(super) async fn read_loop(shared: Arc<Shared>) {
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
