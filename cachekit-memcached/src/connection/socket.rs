//! The socket under a connection: a TCP stream to the server, or a TLS
//! session driven on one ([`TlsSocket`]).
//!
//! The connection writes without waiting (`try_write`) and probes an idle
//! socket without blocking (`try_read`), which an async TLS stream cannot
//! do: so the TLS path drives rustls's `ClientConnection` on the TCP
//! stream itself, with the same non-blocking calls. The plain TCP path is
//! one `match` per system call, no allocation.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::BytesMut;
use rustls::ClientConnection;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, tcp};

/// The write half of a connection's socket.
#[derive(Debug)]
pub(super) enum WriteHalf {
    /// Plain TCP to the server.
    Tcp(tcp::OwnedWriteHalf),
    /// TLS to the server.
    Tls(Arc<TlsSocket>),
}

/// The read half of a connection's socket.
#[derive(Debug)]
pub(super) enum ReadHalf {
    /// Plain TCP to the server.
    Tcp(tcp::OwnedReadHalf),
    /// TLS to the server.
    Tls(Arc<TlsSocket>),
}

/// A TLS session over a TCP stream, shared by the two halves: each call
/// locks the session for its system calls, never across an `.await`.
///
/// Writing encrypts into the session's buffer and writes what the socket
/// takes. TLS bytes the socket did not take stay in the session, and go
/// out before any later ones: [`WriteHalf::flushed`] says whether some
/// remain, and the holder of the write role keeps it until none does.
/// Reading decrypts what a read of the socket brings (rustls reads up to
/// 4 KiB at a time) until some plaintext comes, and hands all of it out:
/// when a read would block, nothing is left in the session to read.
pub(super) struct TlsSocket {
    /// The TCP stream, read and written without waiting.
    tcp: TcpStream,
    /// The session: records to write, records read and not yet decrypted.
    session: Mutex<ClientConnection>,
}

impl WriteHalf {
    /// Writes what the socket takes of `buffer` without waiting. Over TLS,
    /// first writes the TLS bytes left from before; the bytes of `buffer`
    /// counted as written may still be in the session
    /// ([`flushed`](Self::flushed) says).
    pub(super) fn try_write(&self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(half) => half.try_write(buffer),
            WriteHalf::Tls(socket) => socket.try_write(buffer),
        }
    }

    /// Whether every byte written is on the socket (always, over TCP).
    pub(super) fn flushed(&self) -> bool {
        match self {
            WriteHalf::Tcp(_) => true,
            WriteHalf::Tls(socket) => !socket.lock().wants_write(),
        }
    }

    /// Waits until the socket may take bytes.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(half) => half.writable().await,
            WriteHalf::Tls(socket) => socket.tcp.writable().await,
        }
    }
}

impl ReadHalf {
    /// Reads what is there without waiting.
    pub(super) fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(half) => half.try_read(buffer),
            ReadHalf::Tls(socket) => socket.try_read(|reader| reader.read(buffer)),
        }
    }

    /// Reads more bytes into `buffer`; 0 at the end of the stream.
    pub(super) async fn read_buf(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(half) => half.read_buf(buffer).await,
            ReadHalf::Tls(socket) => loop {
                match socket.try_read(|reader| take_plaintext(reader, buffer)) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        socket.tcp.readable().await?;
                    }
                    read => return read,
                }
            },
        }
    }
}

/// The halves of a plain TCP stream.
pub(super) fn plain(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = stream.into_split();
    (ReadHalf::Tcp(read), WriteHalf::Tcp(write))
}

/// The halves of a TLS session whose handshake is done on `tcp`.
pub(super) fn tls(tcp: TcpStream, session: ClientConnection) -> (ReadHalf, WriteHalf) {
    let socket = Arc::new(TlsSocket {
        tcp,
        session: Mutex::new(session),
    });
    (ReadHalf::Tls(Arc::clone(&socket)), WriteHalf::Tls(socket))
}

impl TlsSocket {
    /// Locks the session (a panic while it was locked left it as rustls
    /// left it, which rustls keeps consistent).
    fn lock(&self) -> MutexGuard<'_, ClientConnection> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`WriteHalf::try_write`]: `WouldBlock` when the TLS bytes left
    /// from before do not all fit, so that nothing of `buffer` is taken.
    /// Once the session took bytes of `buffer` they count as written,
    /// whatever the socket then says: an error of the socket comes again
    /// at the next call, as the session is not flushed yet; an error here
    /// would have them written twice.
    fn try_write(&self, buffer: &[u8]) -> io::Result<usize> {
        let mut session = self.lock();
        flush(&mut session, &self.tcp)?;
        let taken = session.writer().write(buffer)?;
        let _ = flush(&mut session, &self.tcp);
        Ok(taken)
    }

    /// Reads plaintext with `take` (which returns how much it took, 0 at a
    /// clean close, `WouldBlock` when there is none), first decrypting what
    /// the socket has, without waiting. `WouldBlock` when the socket has
    /// nothing more; 0 at the end of the stream, with or without the
    /// server's `close_notify` (memcached closes without one).
    fn try_read(
        &self,
        mut take: impl FnMut(&mut rustls::Reader<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut session = self.lock();
        // Each turn hands out plaintext, or reads bytes from the socket (the
        // end of the stream included, after which `take` does not block).
        loop {
            match take(&mut session.reader()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                taken => return taken,
            }
            if session.read_tls(&mut Io(&self.tcp))? == 0 {
                continue;
            }
            if let Err(error) = session.process_new_packets() {
                // The alert that says why, if the socket takes it.
                let _ = flush(&mut session, &self.tcp);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS: {error}"),
                ));
            }
            // What the records read call for (a key update's answer), if the
            // socket takes it now; else it goes out before the next request.
            // A write error is the writer's to report: the plaintext read
            // is handed out first.
            let _ = flush(&mut session, &self.tcp);
        }
    }
}

impl Drop for TlsSocket {
    /// Tells the server the session ends (`close_notify`), if the socket
    /// takes it at once.
    fn drop(&mut self) {
        let session = self
            .session
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        session.send_close_notify();
        let _ = flush(session, &self.tcp);
    }
}

impl std::fmt::Debug for TlsSocket {
    /// The TCP stream (the session shows nothing worth logging).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSocket")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// Writes the session's TLS bytes to `tcp` without waiting, until none is
/// left (`Ok`) or the socket takes no more (`WouldBlock`).
fn flush(session: &mut ClientConnection, tcp: &TcpStream) -> io::Result<()> {
    // Each turn writes bytes, or returns.
    while session.wants_write() {
        if session.write_tls(&mut Io(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Appends all the session's plaintext to `buffer`: how much, 0 at a clean
/// close, `WouldBlock` when there is none.
fn take_plaintext(reader: &mut rustls::Reader<'_>, buffer: &mut BytesMut) -> io::Result<usize> {
    let mut taken = 0;
    // Each turn takes a non-empty chunk, or returns.
    loop {
        let chunk = match reader.fill_buf() {
            // What was taken first; the error comes again at the next call.
            Err(_) if taken > 0 => return Ok(taken),
            chunk => chunk?,
        };
        if chunk.is_empty() {
            return Ok(taken);
        }
        let length = chunk.len();
        buffer.extend_from_slice(chunk);
        reader.consume(length);
        taken += length;
    }
}

/// The TCP stream as blocking-style `Read`/`Write` for rustls, without
/// waiting: `WouldBlock` when it would (which also clears tokio's
/// readiness, so that `readable`/`writable` then wait).
struct Io<'a>(&'a TcpStream);

impl Read for Io<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buffer)
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.try_write(buffer)
    }

    fn write_vectored(&mut self, buffers: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(buffers)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
