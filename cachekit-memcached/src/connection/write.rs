//! The write side: a caller writing its own requests at once
//! ([`State::write_now`]), the flushing of the write queue, and the writer
//! task.

use std::io;
use std::sync::Arc;

use bytes::Buf;

use super::{Shared, State};

/// The initial capacity of the write queue (bytes).
pub(super) const WRITE_BUFFER: usize = 16 * 1024;

/// Who writes the requests a caller just queued.
pub(super) enum Write {
    /// The caller wrote them all, at once.
    Written,
    /// The caller's write failed: the connection is to fail.
    Failed(io::Error),
    /// The writer task, which the caller handed the write role.
    ByWriter,
    /// The holder of the write role, before it gives the role up.
    Queued,
}

impl State {
    /// Writes what the socket takes of the queue without waiting, for a
    /// caller that found nobody writing; if bytes remain, takes the write
    /// role for the writer task, which the caller then wakes.
    pub(super) fn write_now(&mut self) -> Write {
        let Some(socket) = self.socket.as_deref() else {
            self.writing = true;
            return Write::ByWriter;
        };
        match socket.try_write(&self.queue) {
            Ok(written) if written == self.queue.len() && socket.flushed() => {
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

impl Shared {
    /// Writes the queue until it is empty and on the socket, as the holder
    /// of the write role, then gives the role up. Fails the connection on a
    /// write error; returns whether the connection still works.
    async fn flush(&self) -> bool {
        loop {
            let (socket, mut chunk) = {
                let mut state = self.lock();
                let Some(socket) = state.socket.clone() else {
                    return false;
                };
                if state.queue.is_empty() && socket.flushed() {
                    state.writing = false;
                    return true;
                }
                (socket, state.queue.split())
            };
            // Over TLS, the session may hold bytes of the chunk (or of the
            // last one) that the socket has not taken yet.
            while !chunk.is_empty() || !socket.flushed() {
                let written = match socket.writable().await {
                    Ok(()) => socket.try_write(&chunk),
                    Err(error) => Err(error),
                };
                match written {
                    Ok(0) if !chunk.is_empty() => {
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
}

/// The writer task: flushes the queue each time it is handed the write role,
/// until the connection fails.
pub(super) async fn write_loop(shared: Arc<Shared>) {
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
