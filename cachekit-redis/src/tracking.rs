//! Coherent L1 (`l1_invalidation`): a connection of its own, speaking
//! RESP3, on which Redis tracks every key under the backend's key prefix
//! (`CLIENT TRACKING ON BCAST PREFIX <prefix>`) and pushes a notice when any
//! client writes, deletes or expires one. The notices reach the L1 tiers of
//! the caches in this process through
//! [`Backend::invalidations`](cachekit_core::Backend::invalidations).
//!
//! Broadcast mode, not the default tracking of the keys a connection read:
//! the reads go over the backend's data connection, which reconnects by
//! itself and would lose its tracking state unseen; one connection that
//! tracks the whole prefix has a state of its own to watch. Its cost: a
//! process also hears of its own writes and drops its own copy of a value
//! it just wrote (the next read fills it again).
//!
//! When the tracking connection is lost (the server restarts, a ping goes
//! unanswered), notices may be missed: every copy is dropped
//! ([`Invalidation::All`]), the connection is made again, and every copy is
//! dropped once more when tracking is back on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cachekit_core::backend::{Invalidation, InvalidationSender, Invalidations};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::{mpsc, watch};

/// First pause before making a lost tracking connection again; it doubles
/// up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_millis(50);
/// Longest pause between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often the tracking connection is pinged: a server that stopped
/// answering (frozen, or the network gone) is noticed within this and the
/// ping's timeout.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The tracking of one backend: the notices it sends, and the task that
/// hears them from Redis, started by the first listener.
#[derive(Debug)]
pub(crate) struct Tracking {
    notices: InvalidationSender,
    started: AtomicBool,
    /// RESP3 client over the backend's URL.
    client: redis::Client,
    prefix: String,
    connect_timeout: Duration,
    /// Dropped with the backend, which ends the task.
    alive: watch::Sender<()>,
}

impl Tracking {
    /// Tracking for keys under `prefix` on the server of `info` (RESP3 is
    /// set here); nothing connects until the first listener.
    pub(crate) fn new(
        info: ConnectionInfo,
        prefix: &str,
        connect_timeout: Duration,
    ) -> RedisResult<Self> {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        Ok(Tracking {
            notices: InvalidationSender::new(),
            started: AtomicBool::new(false),
            client: redis::Client::open(info.set_redis_settings(settings))?,
            prefix: prefix.to_owned(),
            connect_timeout,
            alive: watch::channel(()).0,
        })
    }

    /// A new listener; the first one starts the task on the current tokio
    /// runtime (without one, the core's L1 tiers keep no copies: they
    /// cannot listen either).
    pub(crate) fn subscribe(&self) -> Invalidations {
        let listener = self.notices.subscribe();
        if !self.started.swap(true, Ordering::SeqCst) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let task = Listener {
                        client: self.client.clone(),
                        prefix: self.prefix.clone(),
                        connect_timeout: self.connect_timeout,
                        notices: self.notices.clone(),
                    };
                    runtime.spawn(task.run(self.alive.subscribe()));
                }
                Err(_) => self.started.store(false, Ordering::SeqCst),
            }
        }
        listener
    }
}

/// The task's state.
struct Listener {
    client: redis::Client,
    prefix: String,
    connect_timeout: Duration,
    notices: InvalidationSender,
}

impl Listener {
    /// Tracks until the backend is dropped (`alive` then changes), making
    /// the connection again (with a growing pause) whenever it is lost.
    async fn run(self, mut alive: watch::Receiver<()>) {
        let mut pause = RETRY_START;
        loop {
            let (pushes, received) = mpsc::unbounded_channel();
            let connected = tokio::select! {
                connected = self.connect(pushes) => connected,
                _ = alive.changed() => return,
            };
            match connected {
                Ok(connection) => {
                    pause = RETRY_START;
                    // Changes made before tracking began went unseen.
                    self.notices.send(Invalidation::All);
                    if !self.forward(connection, received, &mut alive).await {
                        return;
                    }
                    self.notices.send(Invalidation::All);
                    crate::backend::count_reconnect("tracking");
                    tracing::warn!(
                        "redis: the L1 invalidation connection was lost: every L1 copy dropped, reconnecting"
                    );
                }
                Err(error) => {
                    let error = cachekit_core::backend::redact_url(&error.to_string()).into_owned();
                    tracing::warn!(%error, "redis: the L1 invalidation connection failed: L1 copies stay out until it is made");
                    self.notices.send(Invalidation::All);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = alive.changed() => return,
            }
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// A RESP3 connection with broadcast tracking of the prefix on, its
    /// pushes sent to `pushes`.
    async fn connect(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout))
            .set_push_sender(pushes);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut tracking = redis::cmd("CLIENT");
        tracking.arg("TRACKING").arg("ON").arg("BCAST");
        if !self.prefix.is_empty() {
            tracking.arg("PREFIX").arg(&self.prefix);
        }
        tracking.query_async::<()>(&mut connection).await?;
        Ok(connection)
    }

    /// Sends the notices pushed on `connection` until it is lost (`true`)
    /// or the backend is dropped (`false`).
    async fn forward(
        &self,
        mut connection: MultiplexedConnection,
        mut received: mpsc::UnboundedReceiver<PushInfo>,
        alive: &mut watch::Receiver<()>,
    ) -> bool {
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                push = received.recv() => match push {
                    Some(push) if push.kind == PushKind::Invalidate => self.invalidate(push.data),
                    Some(push) if push.kind == PushKind::Disconnection => return true,
                    Some(_) => {}
                    None => return true,
                },
                _ = ping.tick() => {
                    let answered = redis::cmd("PING").query_async::<()>(&mut connection).await;
                    if answered.is_err() {
                        return true;
                    }
                }
                _ = alive.changed() => return false,
            }
        }
    }

    /// Sends a notice per key of an `invalidate` push: `[keys]`, or `[nil]`
    /// when the server dropped every key (`FLUSHALL`, `FLUSHDB`).
    fn invalidate(&self, data: Vec<Value>) {
        let keys = match data.into_iter().next() {
            Some(Value::Array(keys)) => keys,
            _ => return self.notices.send(Invalidation::All),
        };
        for key in keys {
            let Value::BulkString(wire) = key else {
                self.notices.send(Invalidation::All);
                continue;
            };
            // Every tracked key starts with the prefix; cachekit's keys are
            // ASCII.
            if let Some(key) = wire.strip_prefix(self.prefix.as_bytes()) {
                self.notices
                    .send(Invalidation::Key(String::from_utf8_lossy(key).into_owned()));
            }
        }
    }
}
