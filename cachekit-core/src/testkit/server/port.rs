//! [`ReservedPort`]: a free loopback port held for one server of this
//! process.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// The ports of this process's live [`ServerProcess`]es, so that two servers
/// never get the same port, even while one is stopped.
///
/// [`ServerProcess`]: super::ServerProcess
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port reserved for one [`ServerProcess`], released on drop.
///
/// [`ServerProcess`]: super::ServerProcess
#[derive(Debug)]
pub(super) struct ReservedPort(pub(super) u16);

impl ReservedPort {
    /// A port the OS reports free on 127.0.0.1 and no other server of this
    /// process holds.
    pub(super) fn free() -> io::Result<ReservedPort> {
        for _ in 0..20 {
            // The listener closes at the end of the statement; the server binds
            // the port a moment later (another process may take it first:
            // `start` retries).
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let mut reserved = RESERVED_PORTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if reserved.insert(port) {
                return Ok(ReservedPort(port));
            }
        }
        Err(io::Error::other(
            "the OS kept handing out ports that servers of this process hold",
        ))
    }
}

impl Drop for ReservedPort {
    /// Releases the port.
    fn drop(&mut self) {
        RESERVED_PORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}
