//! The socket under a connection: a TCP stream to the server, or, over TLS,
//! one end of a local socket pair whose other end a relay task copies to
//! and from the TLS stream.
//!
//! The connection writes without waiting (`try_write`) and probes an idle
//! socket without blocking (`try_read`), which a TLS stream cannot do: the
//! relay keeps those semantics for TLS, and the plain TCP path stays as it
//! was (one `match` per system call, no allocation). The socket pair is a
//! Unix one: elsewhere a TLS connection fails with an error that says so.

use std::io;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, tcp};
#[cfg(unix)]
use tokio::net::{UnixStream, unix};
use tokio::task::AbortHandle;
use tokio_rustls::client::TlsStream;

/// The write half of a connection's socket.
#[derive(Debug)]
pub(super) enum WriteHalf {
    /// Plain TCP to the server.
    Tcp(tcp::OwnedWriteHalf),
    /// The local end of a TLS connection's relay.
    #[cfg(unix)]
    Relay(unix::OwnedWriteHalf),
}

/// The read half of a connection's socket.
#[derive(Debug)]
pub(super) enum ReadHalf {
    /// Plain TCP to the server.
    Tcp(tcp::OwnedReadHalf),
    /// The local end of a TLS connection's relay.
    #[cfg(unix)]
    Relay(unix::OwnedReadHalf),
}

impl WriteHalf {
    /// Writes what the socket takes of `buffer` without waiting.
    pub(super) fn try_write(&self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(half) => half.try_write(buffer),
            #[cfg(unix)]
            WriteHalf::Relay(half) => half.try_write(buffer),
        }
    }

    /// Waits until the socket may take bytes.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(half) => half.writable().await,
            #[cfg(unix)]
            WriteHalf::Relay(half) => half.writable().await,
        }
    }
}

impl ReadHalf {
    /// Reads what is there without waiting.
    pub(super) fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(half) => half.try_read(buffer),
            #[cfg(unix)]
            ReadHalf::Relay(half) => half.try_read(buffer),
        }
    }

    /// Reads more bytes into `buffer`; 0 at the end of the stream.
    pub(super) async fn read_buf(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(half) => half.read_buf(buffer).await,
            #[cfg(unix)]
            ReadHalf::Relay(half) => half.read_buf(buffer).await,
        }
    }
}

/// The halves of a plain TCP stream.
pub(super) fn plain(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = stream.into_split();
    (ReadHalf::Tcp(read), WriteHalf::Tcp(write))
}

/// The halves of the local end of a relay to `stream`, whose task is spawned
/// here, and the handle that aborts the task. The relay ends, and drops the
/// TLS stream (closing it), as soon as either side ends: the connection
/// dropping its halves, or the server closing (or failing) the TLS stream,
/// which the connection then reads as the end of its stream. A failing
/// connection also aborts it, so that a relay flushing to a server that no
/// longer reads does not outlive the connection.
#[cfg(unix)]
pub(super) fn relayed(
    stream: TlsStream<TcpStream>,
) -> io::Result<(ReadHalf, WriteHalf, AbortHandle)> {
    let (local, far) = UnixStream::pair()?;
    let relay = tokio::spawn(relay(stream, far)).abort_handle();
    let (read, write) = local.into_split();
    Ok((ReadHalf::Relay(read), WriteHalf::Relay(write), relay))
}

/// [`relayed`] where there is no Unix socket pair: an error that says so.
#[cfg(not(unix))]
pub(super) fn relayed(
    stream: TlsStream<TcpStream>,
) -> io::Result<(ReadHalf, WriteHalf, AbortHandle)> {
    drop(stream);
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TLS to memcached needs a Unix platform in this release: turn memcached.tls off",
    ))
}

/// Copies both ways between `tls` and `far` until either way ends.
#[cfg(unix)]
async fn relay(tls: TlsStream<TcpStream>, far: UnixStream) {
    let (mut tls_read, mut tls_write) = tokio::io::split(tls);
    let (mut far_read, mut far_write) = far.into_split();
    let up = tokio::io::copy(&mut far_read, &mut tls_write);
    let down = tokio::io::copy(&mut tls_read, &mut far_write);
    tokio::select! {
        result = up => tracing::trace!(?result, "memcached TLS relay: the connection ended"),
        result = down => tracing::trace!(?result, "memcached TLS relay: the server ended"),
    }
}
