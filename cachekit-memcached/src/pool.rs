//! The connections to one server: up to `max_pool_size`, opened lazily and
//! used in turn, each carrying many pipelined requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::connection::{Connection, ConnectionError};

#[derive(Debug)]
pub(crate) struct Pool {
    address: String,
    connect_timeout: Duration,
    slots: Box<[Mutex<Option<Arc<Connection>>>]>,
    next: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(address: String, connect_timeout: Duration, size: usize) -> Self {
        Pool {
            address,
            connect_timeout,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next connection in turn, opened (again) if it is not open.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, ConnectionError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(Connection::connect(&self.address, self.connect_timeout).await?);
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }
}
