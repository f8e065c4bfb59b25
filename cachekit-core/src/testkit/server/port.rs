//! [`ReservedPort`]: a free loopback port held for one server of this
//! process, with the cluster bus port next to it for a Redis Cluster node.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// How far above a Redis Cluster node's port its cluster bus listens:
/// `redis-server` always uses `port + 10000`.
pub(super) const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// The ports of this process's live [`ServerProcess`]es (cluster bus ports
/// included), so that two servers never get the same port, even while one
/// is stopped.
///
/// [`ServerProcess`]: super::ServerProcess
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port reserved for one [`ServerProcess`] (and, for a cluster node, its
/// bus port), released on drop.
///
/// [`ServerProcess`]: super::ServerProcess
#[derive(Debug)]
pub(super) struct ReservedPort {
    /// The port the server listens on.
    pub(super) port: u16,
    /// The cluster bus port (`port + 10000`), when reserved too.
    bus: Option<u16>,
}

impl ReservedPort {
    /// A port the OS reports free on 127.0.0.1 and no other server of this
    /// process holds; with `bus`, `port + 10000` is free and held too.
    pub(super) fn free(bus: bool) -> io::Result<ReservedPort> {
        for _ in 0..20 {
            // The listener closes at the end of the statement; the server binds
            // the port a moment later (another process may take it first:
            // `start` retries).
            let found = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let (port, bus) = if bus {
                match bus_pair(found) {
                    Some((port, bus)) => (port, Some(bus)),
                    None => continue,
                }
            } else {
                (found, None)
            };
            let mut reserved = RESERVED_PORTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let wanted = [Some(port), bus];
            if wanted.iter().flatten().any(|p| reserved.contains(p)) {
                continue;
            }
            reserved.extend(wanted.iter().flatten());
            return Ok(ReservedPort { port, bus });
        }
        Err(io::Error::other(
            "the OS kept handing out ports that servers of this process hold \
             (or, for a cluster node, whose bus port was taken)",
        ))
    }
}

/// A node port and its bus port (`port + 10000`) made from `found`, a port
/// the OS just reported free: `found` is the node's port when its bus port
/// fits under 65536, else the bus port (ports above 55535 have no bus port).
/// `None` when the other port of the pair is not free on 127.0.0.1.
pub(super) fn bus_pair(found: u16) -> Option<(u16, u16)> {
    let (port, bus) = match found.checked_add(CLUSTER_BUS_OFFSET) {
        Some(bus) => (found, bus),
        None => (found.checked_sub(CLUSTER_BUS_OFFSET)?, found),
    };
    let other = if port == found { bus } else { port };
    TcpListener::bind((Ipv4Addr::LOCALHOST, other)).ok()?;
    Some((port, bus))
}

impl Drop for ReservedPort {
    /// Releases the port (and the bus port).
    fn drop(&mut self) {
        let mut reserved = RESERVED_PORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        reserved.remove(&self.port);
        if let Some(bus) = self.bus {
            reserved.remove(&bus);
        }
    }
}
