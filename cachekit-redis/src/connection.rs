//! The connection to Redis: one multiplexed, auto-reconnecting connection
//! (redis-rs's `ConnectionManager`) to a single server, or the async
//! cluster client over a Redis Cluster, made on first use.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

use cachekit_core::backend::host_port;

use crate::config::{RedisBackendConfig, parse_url};

/// What to connect to, and the connection once made.
pub(crate) struct Connector {
    target: Target,
    /// The connection in use, replaced by [`Connector::replace`].
    current: Mutex<Arc<Generation>>,
}

/// One connection, made by the first call that needs it; concurrent first
/// calls wait for that one. A single-node manager is made without
/// connecting (it connects, and reconnects after I/O errors, by itself); a
/// cluster connection is made by connecting, and a failed attempt leaves
/// the cell empty for the next call to try again.
pub(crate) struct Generation {
    /// Counts the connections made: tells a stale failure from a current one.
    pub(crate) number: u64,
    connection: OnceCell<Connection>,
}

impl Generation {
    fn new(number: u64) -> Arc<Self> {
        Arc::new(Generation {
            number,
            connection: OnceCell::new(),
        })
    }
}

/// The client of the configured deployment, which connects nothing yet.
enum Target {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(ClusterClient),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.target {
            Target::Single(..) => "single",
            Target::Cluster(_) => "cluster",
        };
        f.debug_struct("Connector")
            .field("target", &kind)
            .field("generation", &self.generation().number)
            .finish()
    }
}

impl Connector {
    /// The clients for `config`, validated; nothing connects.
    pub(crate) fn new(config: &RedisBackendConfig) -> RedisResult<Self> {
        let info = parse_url(&config.url).map_err(|reason| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad URL", reason))
        })?;
        if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            install_crypto_provider();
        }
        let target = if config.is_cluster() {
            Target::Cluster(cluster_client(config, &info)?)
        } else {
            // A reconnection is one attempt (bounded by connect_timeout):
            // while the server is down, each call fails at once (or waits
            // for that attempt) rather than behind a growing back-off, and
            // the first call after a restart reconnects.
            // No response timeout of the client's own (500 ms by default):
            // the backend bounds each call by `timeout`.
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(None)
                .set_number_of_retries(0)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            Target::Single(redis::Client::open(info)?, manager)
        };
        Ok(Connector {
            target,
            current: Mutex::new(Generation::new(0)),
        })
    }

    /// Whether the target is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The connection in use (made on first use by [`Connector::connect`]).
    pub(crate) fn generation(&self) -> Arc<Generation> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The connection of `generation`, made on first use.
    pub(crate) async fn connect(&self, generation: &Generation) -> RedisResult<Connection> {
        generation
            .connection
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Single(client, config) => Ok(Connection::Single(
                        ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
                    )),
                    Target::Cluster(client) => client
                        .get_async_connection()
                        .await
                        .map(|c| Connection::Cluster(Box::new(c))),
                }
            })
            .await
            .cloned()
    }

    /// Drops connection number `number` if it is still the one in use, so
    /// that the next call connects anew. For failures that redis-rs's
    /// `ConnectionManager` keeps answering without reconnecting: its
    /// handshake failed with an answer rather than an I/O error (a refused
    /// password, or a server still loading its data), which it remembers;
    /// and for a call that ran out of time, whose connection may never
    /// answer again: a hung host, or a connection driven by a runtime that
    /// is blocked (a current-thread runtime waiting on a plain cached
    /// function, whose cache work runs on another runtime).
    pub(crate) fn replace(&self, number: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.number == number {
            *current = Generation::new(number + 1);
        }
    }
}

/// The cluster client over `config.cluster_nodes`, each node reached with
/// the scheme (TLS or not), user and password of `info` (the URL's).
fn cluster_client(
    config: &RedisBackendConfig,
    info: &ConnectionInfo,
) -> RedisResult<ClusterClient> {
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    let nodes = config.cluster_nodes.iter().map(|node| {
        let (host, port) = host_port(node).expect("validated");
        let addr = if tls {
            ConnectionAddr::TcpTls {
                host: host.into(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.into(), port)
        };
        info.clone().set_addr(addr)
    });
    let settings = info.redis_settings();
    let mut builder = ClusterClient::builder(nodes)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.timeout)
        // Retries of MOVED, ASK, TRYAGAIN and lost connections, within
        // the operation's timeout, which the backend enforces.
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(200);
    if let Some(user) = settings.username() {
        builder = builder.username(user);
    }
    if let Some(password) = settings.password() {
        builder = builder.password(password);
    }
    builder.build()
}

/// rustls needs a process-wide crypto provider when it builds a TLS
/// client. cachekit brings rustls with `ring` only (no aws-lc-rs, which
/// needs a C toolchain and cmake), so `ring` is installed as the process
/// default, unless the application installed one of its own first; and
/// only for a `rediss://` URL, so that an application without TLS to Redis
/// keeps the choice (an application that installs its provider later
/// should do so before building the backend).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one between the check and this call:
        // either provider serves, so losing that race is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A multiplexed connection: clones share it, and every call is pipelined
/// with the other tasks' on it.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(Box<ClusterConnection>),
}

impl Connection {
    /// `PING` to the node at `host:port` of a cluster (to the server, on a
    /// single-server connection).
    pub(crate) async fn ping(&mut self, host: &str, port: u16) -> RedisResult<Value> {
        match self {
            Connection::Single(c) => redis::cmd("PING").query_async(c).await,
            Connection::Cluster(c) => {
                let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                });
                c.route_command(redis::cmd("PING"), node).await
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
