//! The connections to one server: up to `max_pool_size`, opened lazily, each
//! carrying many pipelined requests.
//!
//! The pool fills its connections in order rather than spreading requests
//! over all of them: a request goes to the first open connection with fewer
//! than [`BUSY`] requests in flight, and a further connection opens only when
//! every open one is that busy. Requests that share a connection share its
//! writes and reads (one system call each for a whole batch), while the same
//! requests spread over ten connections would cost about one write and one
//! read each. Under heavy load the connections still fill up one after the
//! other, so that a multi-threaded server gets work on several threads
//! (memcached serves each connection on one of its threads).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, oneshot};

use crate::connection::{Connection, ConnectionError};
use crate::tls::Tls;

/// Requests in flight on a connection from which the pool prefers another
/// one: enough to share each write and read among many requests, few enough
/// that a busy server gets a further connection (and server thread) early.
const BUSY: usize = 32;

/// The connections to one server.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The server, as `host:port`.
    address: String,
    /// The connect timeout of each connection.
    connect_timeout: Duration,
    /// How long a call may wait for its answer on a connection.
    timeout: Duration,
    /// TLS, when the backend's connections use it.
    tls: Option<Arc<Tls>>,
    /// The connections, filled in this order; `max_pool_size` of them.
    slots: Box<[Arc<Slot>]>,
}

/// A place for one connection.
#[derive(Debug, Default)]
struct Slot {
    /// The connection, once opened; it may have closed since.
    connection: Mutex<Option<Arc<Connection>>>,
    /// Held while a connection opens here (by the task that opens it), so
    /// that one connection opens and callers wait for it rather than open
    /// their own.
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    /// The connection here, if it is open and not closed.
    fn open(&self) -> Option<Arc<Connection>> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        (!connection.is_closed()).then_some(connection)
    }
}

/// What [`Pool::choose`] found.
enum Choice {
    /// Use this open connection.
    Use(Arc<Connection>),
    /// Open a connection in the vacant slot `index`; `least` is the least
    /// busy open connection, if any.
    Open {
        index: usize,
        least: Option<Arc<Connection>>,
    },
}

impl Pool {
    /// A pool of up to `size` (at least one) connections to `address`,
    /// opened on demand (over `tls` when given), each failing a call that
    /// waits longer than `timeout`.
    pub(crate) fn new(
        address: String,
        connect_timeout: Duration,
        timeout: Duration,
        size: usize,
        tls: Option<Arc<Tls>>,
    ) -> Self {
        Pool {
            address,
            tls,
            connect_timeout,
            timeout,
            slots: (0..size.max(1)).map(|_| Arc::default()).collect(),
        }
    }

    /// The connection [`connection`](Self::connection) would return without
    /// waiting, if it would: `None` when it would open one (or wait for
    /// another caller opening one).
    pub(crate) fn ready(&self) -> Option<Arc<Connection>> {
        match self.choose() {
            Choice::Use(connection) => Some(connection),
            Choice::Open { .. } => None,
        }
    }

    /// A connection to use: the first open one with fewer than [`BUSY`]
    /// requests in flight; else a new one, if the pool is not full; else the
    /// least busy one. A closed connection is reopened when its slot is
    /// needed again.
    ///
    /// While another caller opens a connection, this one uses the least busy
    /// open connection rather than wait, if there is one.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, ConnectionError> {
        let (index, least) = match self.choose() {
            Choice::Use(connection) => return Ok(connection),
            Choice::Open { index, least } => (index, least),
        };
        let slot = &self.slots[index];
        let opening = match (Arc::clone(&slot.opening).try_lock_owned(), least) {
            (Ok(opening), _) => opening,
            (Err(_), Some(least)) => return Ok(least),
            (Err(_), None) => Arc::clone(&slot.opening).lock_owned().await,
        };
        // Opened by the caller this one waited for.
        if let Some(connection) = slot.open() {
            return Ok(connection);
        }
        let (opened, connection) = oneshot::channel();
        tokio::spawn(self.open(Arc::clone(slot), opening, opened));
        connection.await.unwrap_or(Err(ConnectionError::Closed))
    }

    /// Opens a connection into `slot`, holding its `opening` lock, for a
    /// task of its own, and sends the outcome to `opened`: the connection is
    /// bounded by `connect_timeout` alone, so that a caller giving up first
    /// (its operation's timeout, or dropped) does not stop it, and a
    /// handshake slower than the operation timeout still ends in a
    /// connection for the next caller. A failure nobody waits for any more
    /// is logged, as no operation reports it.
    fn open(
        &self,
        slot: Arc<Slot>,
        opening: OwnedMutexGuard<()>,
        opened: oneshot::Sender<Result<Arc<Connection>, ConnectionError>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let address = self.address.clone();
        let tls = self.tls.clone();
        let (connect_timeout, timeout) = (self.connect_timeout, self.timeout);
        async move {
            let connecting =
                Connection::connect(&address, connect_timeout, timeout, tls.as_deref());
            let outcome = connecting.await.map(Arc::new);
            if let Ok(connection) = &outcome {
                *slot
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(connection));
            }
            drop(opening);
            if let Err(Err(error)) = opened.send(outcome) {
                tracing::warn!(
                    server = %address,
                    %error,
                    "memcached: a connection failed to open after its operation gave up"
                );
            }
        }
    }

    /// Fails the idle connections the server has closed, so that they are
    /// replaced rather than tried one by one: called once a call found one
    /// (a restarted server closed them all).
    pub(crate) fn check_idle(&self) {
        for slot in self.slots.iter() {
            let connection = slot
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(connection) = connection {
                connection.check_idle();
            }
        }
    }

    /// The first open connection with fewer than [`BUSY`] requests in
    /// flight; else the first vacant slot, if any; else the least busy
    /// connection.
    fn choose(&self) -> Choice {
        let mut least: Option<(usize, Arc<Connection>)> = None;
        let mut vacant = None;
        for (index, slot) in self.slots.iter().enumerate() {
            match slot.open() {
                Some(connection) => {
                    let load = connection.in_flight();
                    if load < BUSY {
                        return Choice::Use(connection);
                    }
                    if least.as_ref().is_none_or(|(least, _)| load < *least) {
                        least = Some((load, connection));
                    }
                }
                None if vacant.is_none() => vacant = Some(index),
                None => {}
            }
        }
        let least = least.map(|(_, connection)| connection);
        match vacant {
            Some(index) => Choice::Open { index, least },
            // Full, and every connection busy.
            None => Choice::Use(least.expect("a pool has at least one slot")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use cachekit_core::backend::testkit::{ServerProcess, SilentServer};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::protocol::Request;

    /// The bound on every wait in these tests.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Runs `future`, failing the test if it takes longer than [`PATIENCE`].
    async fn bounded<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(PATIENCE, future)
            .await
            .expect("finished in time")
    }

    /// A pool of `size` to `server`.
    fn silent_pool(server: &SilentServer, size: usize) -> Pool {
        Pool::new(
            server.address(),
            Duration::from_secs(2),
            Duration::from_secs(10),
            size,
            None,
        )
    }

    /// A connection from `pool`, failing the test if there is none.
    async fn connection(pool: &Pool) -> Arc<Connection> {
        bounded(pool.connection()).await.expect("a connection")
    }

    /// Puts `requests` more requests in flight on `connection` (to a server
    /// that never answers, they stay in flight); returns the call, to abort.
    async fn load(connection: &Arc<Connection>, requests: usize) -> JoinHandle<()> {
        let before = connection.in_flight();
        let call = tokio::spawn({
            let connection = Arc::clone(connection);
            async move {
                let _ = connection.call_many(&vec![Request::Noop; requests]).await;
            }
        });
        bounded(async {
            while connection.in_flight() < before + requests {
                tokio::task::yield_now().await;
            }
        })
        .await;
        call
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_fill_in_order_and_the_least_busy_is_used_when_all_are_busy() {
        let server = SilentServer::start();
        let pool = silent_pool(&server, 2);
        let first = connection(&pool).await;
        let mut calls = vec![load(&first, BUSY - 1).await];
        assert!(
            Arc::ptr_eq(&connection(&pool).await, &first),
            "not busy yet"
        );

        calls.push(load(&first, 1).await);
        let second = connection(&pool).await;
        assert!(
            !Arc::ptr_eq(&second, &first),
            "the first is busy: a second opens"
        );
        assert!(Arc::ptr_eq(&connection(&pool).await, &second));

        // Full: the least busy of the two, whichever it is.
        calls.push(load(&second, BUSY + 1).await);
        assert!(Arc::ptr_eq(&connection(&pool).await, &first));
        calls.push(load(&first, 2).await);
        assert!(Arc::ptr_eq(&connection(&pool).await, &second));

        // The second is busy: the closed first one is replaced.
        first.close();
        let reopened = connection(&pool).await;
        assert!(!Arc::ptr_eq(&reopened, &first) && !Arc::ptr_eq(&reopened, &second));
        assert!(!reopened.is_closed());
        assert!(Arc::ptr_eq(&connection(&pool).await, &reopened));
        calls.iter().for_each(JoinHandle::abort);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_of_one_shares_its_connection_however_busy() {
        let server = SilentServer::start();
        let pool = silent_pool(&server, 1);
        let only = connection(&pool).await;
        let call = load(&only, BUSY * 2).await;
        assert!(Arc::ptr_eq(&connection(&pool).await, &only));
        call.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_connection_is_replaced_in_its_slot() {
        let server = SilentServer::start();
        let pool = silent_pool(&server, 3);
        let first = connection(&pool).await;
        assert!(Arc::ptr_eq(&connection(&pool).await, &first));
        first.close();
        let second = connection(&pool).await;
        assert!(!Arc::ptr_eq(&second, &first));
        assert!(!second.is_closed());
        assert!(Arc::ptr_eq(&connection(&pool).await, &second));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_idle_replaces_every_idle_connection_a_stopped_server_closed() {
        let mut server = ServerProcess::memcached();
        let timeout = Duration::from_secs(10);
        let pool = Pool::new(server.address(), Duration::from_secs(2), timeout, 2, None);
        // An open connection in each slot, as a busy moment leaves them.
        let address = server.address();
        for slot in pool.slots.iter() {
            let connecting = Connection::connect(&address, Duration::from_secs(2), timeout, None);
            let connection = bounded(connecting).await.expect("connects");
            *slot.connection.lock().unwrap() = Some(Arc::new(connection));
        }
        let stopped = tokio::task::spawn_blocking(move || {
            server.stop();
            server
        });
        let _server = bounded(stopped).await.expect("stopped");
        // The closes reach the runtime's reactor while this task sleeps.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.ready().is_some(), "noticed only when checked");
        pool.check_idle();
        assert!(
            pool.ready().is_none(),
            "both connections are to be replaced"
        );
    }
}
