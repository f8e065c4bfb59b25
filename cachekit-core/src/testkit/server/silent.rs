//! [`SilentServer`]: a listener that accepts connections and never
//! answers.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often the [`SilentServer`] thread checks for connections and for drop.
const ACCEPT_INTERVAL: Duration = Duration::from_millis(10);

/// A TCP listener on 127.0.0.1 that accepts connections and never answers
/// (for timeout tests). Stops on drop.
///
/// Accepted connections are held open, unread, until the server is dropped;
/// then they and the listener close.
#[derive(Debug)]
pub struct SilentServer {
    /// The port listened on.
    port: u16,
    /// Tells the accepting thread to stop.
    stop: Arc<AtomicBool>,
    /// The thread that accepts and holds connections.
    acceptor: Option<JoinHandle<()>>,
}

impl SilentServer {
    /// Listens on a free 127.0.0.1 port.
    ///
    /// # Panics
    ///
    /// If no port can be bound or the accepting thread cannot be spawned.
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|error| panic!("SilentServer: cannot bind 127.0.0.1:0: {error}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("SilentServer: cannot read its port: {error}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|error| panic!("SilentServer: cannot make it non-blocking: {error}"));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = thread::Builder::new()
            .name(format!("silent-server-{port}"))
            .spawn({
                let stop = Arc::clone(&stop);
                move || hold_connections(&listener, &stop)
            })
            .unwrap_or_else(|error| panic!("SilentServer: cannot spawn its thread: {error}"));
        SilentServer {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The address listened on: `"127.0.0.1:PORT"`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilentServer {
    /// Stops the accepting thread, which closes the held connections and the
    /// listener.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts connections on the non-blocking `listener` and holds them, unread,
/// until `stop` is set (checked every [`ACCEPT_INTERVAL`]).
fn hold_connections(listener: &TcpListener, stop: &AtomicBool) {
    let mut held = Vec::new();
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((connection, _)) => held.push(connection),
            // Nothing to accept (or a transient error such as too many open
            // files): wait a little.
            Err(_) => thread::sleep(ACCEPT_INTERVAL),
        }
    }
}
