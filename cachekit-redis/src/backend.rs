//! `RedisBackend`: the `Backend` over one Redis server or a Redis Cluster.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use cachekit_core::ConfigSource;
use cachekit_core::backend::{
    Backend, Capabilities, DomainHealth, Health, Identity, Invalidations, KeyTtl, Lock,
    MAX_KEY_LEN, Result, Touch, TtlInspect, host_port, validate_key,
};
use redis::RedisResult;

use crate::config::{RedisBackendConfig, parse_url};
use crate::connection::{Connection, Connector};
use crate::slot::{SLOTS, slot_of};
use crate::tracking::Tracking;

mod errors;

/// The largest value Redis stores: 512 MiB (its `proto-max-bulk-len`
/// default). Larger values are refused before sending with
/// `Error::ValueTooLarge`.
pub const MAX_VALUE_SIZE: usize = 512 << 20;

/// The longest expiry sent, in milliseconds (about 31,700 years): Redis
/// refuses one that overflows its clock, so longer TTLs are clamped to it.
const MAX_PX: u64 = 1_000_000_000_000_000;

/// A shared, persistent cache on Redis (one server, or a Redis Cluster with
/// [`cluster_nodes`](RedisBackendConfig::cluster_nodes)), with TTL
/// inspection, touch, and locks with a lease and a fencing value.
///
/// Every call goes over one multiplexed connection that reconnects by
/// itself after the server restarts, and ends within the configured
/// `timeout`. Clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: RedisBackendConfig,
    connector: Connector,
    capabilities: Capabilities,
    /// The URL's password, masked out of error messages.
    password: Option<String>,
    /// With `l1_invalidation`: the notices of changes for L1 tiers.
    tracking: Option<Tracking>,
}

/// Without the password (the config's `Debug` masks the URL's).
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("connector", &self.connector)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// The backend's name, as in `CACHEKIT_BACKEND=redis`.
    pub const NAME: &'static str = "redis";

    /// What the backend declares without a key prefix; with one, keys are
    /// shorter by its length.
    pub const CAPABILITIES: Capabilities = Capabilities {
        ttl: true,
        ttl_inspect: true,
        touch: true,
        lock: true,
        persistent: true,
        shared: true,
        max_ttl: None,
        max_value_size: Some(MAX_VALUE_SIZE),
        max_key_len: MAX_KEY_LEN,
    };

    /// A backend for `config`, validated; it connects on first use, so
    /// building one needs no server.
    pub fn new(config: RedisBackendConfig) -> Result<Self> {
        config.validate()?;
        let connector = Connector::new(&config).map_err(|error| cachekit_core::Error::Config {
            setting: "redis.url".into(),
            origin: cachekit_core::ConfigOrigin::Code,
            reason: cachekit_core::backend::redact_url(&error.to_string()).into_owned(),
        })?;
        let password = parse_url(&config.url)
            .ok()
            .and_then(|info| info.redis_settings().password().map(String::from));
        let capabilities = Capabilities {
            max_key_len: MAX_KEY_LEN - config.key_prefix.len(),
            ..Self::CAPABILITIES
        };
        let tracking = match (config.l1_invalidation, parse_url(&config.url)) {
            (true, Ok(info)) => Some(
                Tracking::new(info, &config.key_prefix, config.connect_timeout).map_err(
                    |error| cachekit_core::Error::Config {
                        setting: "redis.l1_invalidation".into(),
                        origin: cachekit_core::ConfigOrigin::Code,
                        reason: cachekit_core::backend::redact_url(&error.to_string()).into_owned(),
                    },
                )?,
            ),
            _ => None,
        };
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                config,
                connector,
                capabilities,
                password,
                tracking,
            }),
        })
    }

    /// A backend configured by `CACHEKIT_REDIS_*` (the URL also by
    /// `REDIS_URL`) over `cachekit.toml` over the defaults.
    pub fn from_env() -> Result<Self> {
        Self::from_config(&ConfigSource::from_process()?)
    }

    /// A backend configured by `source`.
    pub fn from_config(source: &ConfigSource) -> Result<Self> {
        Self::new(RedisBackendConfig::from_source(source)?)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisBackendConfig {
        &self.inner.config
    }

    /// Validates `key` and puts the prefix in front of it.
    pub(crate) fn wire_key<'k>(&self, key: &'k str) -> Result<Cow<'k, str>> {
        validate_key(key, self.inner.capabilities.max_key_len)?;
        Ok(match self.inner.config.key_prefix.as_str() {
            "" => Cow::Borrowed(key),
            prefix => Cow::Owned(format!("{prefix}{key}")),
        })
    }

    /// Runs `call` on the connection (made first if need be) within the
    /// operation's timeout, and maps its error.
    pub(crate) async fn call<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let connector = &self.inner.connector;
        let generation = connector.generation();
        let attempt = async { call(connector.connect(&generation).await?).await };
        let outcome = tokio::time::timeout(self.timeout(), attempt).await;
        self.settle(operation, generation.number, outcome)
    }

    /// Sends `command` and reads its answer as `T`: [`RedisBackend::call`]
    /// written out, one future less on the path of every operation (about
    /// 260 instructions of some 13,000 per `get`, measured with callgrind;
    /// docs/benchmarks.md, "Redis").
    async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &redis::Cmd,
    ) -> Result<T> {
        let connector = &self.inner.connector;
        let generation = connector.generation();
        let attempt = async {
            let mut connection = connector.connect(&generation).await?;
            command.query_async(&mut connection).await
        };
        let outcome = tokio::time::timeout(self.timeout(), attempt).await;
        self.settle(operation, generation.number, outcome)
    }

    /// The result of an attempt on connection number `number`, bounded by
    /// the timeout. A timeout, or an error that the connection keeps
    /// answering, makes the next call connect anew.
    fn settle<T>(
        &self,
        operation: &'static str,
        number: u64,
        outcome: std::result::Result<RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if errors::needs_new_connection(&error) {
                    self.inner.connector.replace(number);
                    count_reconnect("data");
                } else if error.is_connection_dropped() || error.is_connection_refusal() {
                    // The connection manager connects anew by itself.
                    count_reconnect("data");
                }
                Err(self.failed(operation, error))
            }
            Err(_) => {
                self.inner.connector.replace(number);
                count_reconnect("data");
                Err(self.timed_out(operation))
            }
        }
    }
}

/// `SET`'s expiry in milliseconds: `None` for none (or zero), at least 1
/// (a sub-millisecond TTL still expires), at most [`MAX_PX`].
pub(crate) fn ttl_millis(ttl: Option<Duration>) -> Option<u64> {
    let ttl = RedisBackend::CAPABILITIES.clamp_ttl(ttl)?;
    let millis = ttl.as_millis() + u128::from(ttl.subsec_nanos() % 1_000_000 > 0);
    Some(u64::try_from(millis).unwrap_or(u64::MAX).clamp(1, MAX_PX))
}

/// The `SET` of `value` under `wire` expiring after `ttl`.
fn set_command(wire: &str, value: &[u8], ttl: Option<Duration>) -> redis::Cmd {
    let mut command = redis::cmd("SET");
    command.arg(wire).arg(value);
    if let Some(millis) = ttl_millis(ttl) {
        command.arg("PX").arg(millis);
    }
    command
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    fn invalidations(&self) -> Option<Invalidations> {
        self.inner.tracking.as_ref().map(Tracking::subscribe)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let wire = self.wire_key(key)?;
        let value: Option<Vec<u8>> = self.query("get", redis::cmd("GET").arg(&*wire)).await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let wire = self.wire_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(self.too_large(value.len()));
        }
        let answer: redis::Value = self.query("set", &set_command(&wire, &value, ttl)).await?;
        match answer {
            redis::Value::Okay => Ok(()),
            other => Err(self.unexpected("set", other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let wire = self.wire_key(key)?;
        let removed: u64 = self.query("delete", redis::cmd("DEL").arg(&*wire)).await?;
        Ok(removed > 0)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let wire = self.wire_key(key)?;
        let found: u64 = self
            .query("exists", redis::cmd("EXISTS").arg(&*wire))
            .await?;
        Ok(found > 0)
    }

    /// One server: `PING`, its one domain (the URL's `host:port`) up, or
    /// `Err`. A cluster: a `PING` to each configured node, all at once, each
    /// within `timeout`: up with its latency or down with the error; `Ok`
    /// when at least one answers.
    ///
    /// The nodes listed are the configured ones (the failure domains of
    /// [`Backend::failure_domain`]), each pinged at the address it is
    /// configured with: the cluster client reaches a node by the address
    /// the cluster announces, so a node configured under another name
    /// (a host name for an announced IP) is listed down, "not found".
    /// redis-rs does not expose the nodes it learned from the cluster.
    async fn health(&self) -> Result<Health> {
        let started = Instant::now();
        let nodes = &self.inner.config.cluster_nodes;
        if nodes.is_empty() {
            let answer: String = self.query("health", &redis::cmd("PING")).await?;
            if answer != "PONG" {
                return Err(self.unexpected("health", answer));
            }
            let server = parse_url(&self.inner.config.url)
                .map(|info| info.addr().to_string())
                .unwrap_or_default();
            let latency = started.elapsed();
            return Ok(Health::new(Self::NAME)
                .with_latency(latency)
                .with_domains(vec![DomainHealth::up(server, latency)]));
        }
        let pings = nodes.iter().map(|node| async move {
            let started = Instant::now();
            let (host, port) = host_port(node).expect("validated");
            let answer = self
                .call("health", |mut connection| async move {
                    connection.ping(host, port).await
                })
                .await;
            match answer {
                Ok(_) => DomainHealth::up(node, started.elapsed()),
                Err(error) => DomainHealth::down(node, error),
            }
        });
        let domains = futures_util::future::join_all(pings).await;
        Health::of_domains(Self::NAME, started.elapsed(), domains)
    }

    /// One `MGET`; on a cluster, the cluster client splits it by slot.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut command = redis::cmd("MGET");
        for key in keys {
            command.arg(&*self.wire_key(key)?);
        }
        let values: Vec<Option<Vec<u8>>> = self.query("get_many", &command).await?;
        if values.len() != keys.len() {
            return Err(self.unexpected("get_many", format!("{} values", values.len())));
        }
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    /// Every key and value is checked before anything is sent; then one
    /// pipeline of `SET`s on one server, or, on a cluster, the `SET`s at
    /// once (each to its slot's node, pipelined on that node's connection).
    /// Not atomic: on an error, some entries may be stored.
    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        let commands = entries
            .iter()
            .map(|(key, value)| {
                let wire = self.wire_key(key)?;
                if value.len() > MAX_VALUE_SIZE {
                    return Err(self.too_large(value.len()));
                }
                Ok(set_command(&wire, value, ttl))
            })
            .collect::<Result<Vec<_>>>()?;
        if commands.is_empty() {
            return Ok(());
        }
        let cluster = self.inner.connector.is_cluster();
        self.call("set_many", |mut connection| async move {
            if cluster {
                let sets = commands.iter().map(|command| {
                    let mut connection = connection.clone();
                    async move { command.query_async::<()>(&mut connection).await }
                });
                for outcome in futures_util::future::join_all(sets).await {
                    outcome?;
                }
                Ok(())
            } else {
                let mut pipeline = redis::pipe();
                for command in commands {
                    pipeline.add_command(command).ignore();
                }
                pipeline.query_async::<()>(&mut connection).await
            }
        })
        .await
    }

    /// The configured `timeout`: the backend bounds every call (connecting
    /// included) by it, so the reliability layer adds no timer of its own.
    fn operation_timeout(&self) -> Option<Duration> {
        Some(self.inner.config.timeout)
    }

    /// On a cluster, one per configured node: a master that fails does not
    /// open the circuit breaker for the keys of the others (see
    /// [`Backend::failure_domain`]).
    fn failure_domains(&self) -> usize {
        self.inner.config.cluster_nodes.len().max(1)
    }

    /// On a cluster, the key's slot's share of the slot range: with `n`
    /// nodes listed, slots `[i * 16384 / n, (i + 1) * 16384 / n)` are domain
    /// `i`. This is exactly the master of those slots when the cluster was
    /// made by `redis-cli --cluster create` with the nodes listed (it gives
    /// each master one contiguous, even range), and an approximation after
    /// resharding: redis-rs does not expose its slot table. Either way a
    /// whole cluster down fails every domain and opens the breaker.
    fn failure_domain(&self, key: &str) -> usize {
        let domains = self.failure_domains();
        if domains == 1 {
            return 0;
        }
        let slot = match self.wire_key(key) {
            Ok(wire) => slot_of(wire.as_bytes()),
            Err(_) => return 0,
        };
        usize::from(slot) * domains / usize::from(SLOTS)
    }

    fn key_prefix(&self) -> &str {
        &self.inner.config.key_prefix
    }

    /// Clones share the connection.
    fn identity(&self) -> Option<Identity> {
        Some(Identity::of(&self.inner))
    }

    fn as_ttl_inspect(&self) -> Option<&dyn TtlInspect> {
        Some(self)
    }

    fn as_touch(&self) -> Option<&dyn Touch> {
        Some(self)
    }

    fn as_lock(&self) -> Option<&dyn Lock> {
        Some(self)
    }
}

#[async_trait]
impl TtlInspect for RedisBackend {
    /// `PTTL`: -2 is a missing key, -1 one without expiry.
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let wire = self.wire_key(key)?;
        let millis: i64 = self.query("ttl", redis::cmd("PTTL").arg(&*wire)).await?;
        Ok(match millis {
            -2 => KeyTtl::Missing,
            -1 => KeyTtl::Forever,
            // A key about to expire may read 0: it is there, for now.
            millis => KeyTtl::Expires(Duration::from_millis(millis.max(0).unsigned_abs())),
        })
    }
}

#[async_trait]
impl Touch for RedisBackend {
    /// `PEXPIRE`, or `PERSIST` for no expiry.
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let wire = self.wire_key(key)?;
        match ttl_millis(ttl) {
            Some(millis) => {
                let set: u64 = self
                    .query("touch", redis::cmd("PEXPIRE").arg(&*wire).arg(millis))
                    .await?;
                Ok(set == 1)
            }
            None => {
                // PERSIST answers 0 both for a missing key and for one
                // without expiry: EXISTS tells them apart, in the same
                // round trip (both go to the key's slot on a cluster).
                let (_, found): (u64, u64) = self
                    .call("touch", |mut connection| async move {
                        redis::pipe()
                            .cmd("PERSIST")
                            .arg(&*wire)
                            .cmd("EXISTS")
                            .arg(&*wire)
                            .query_async(&mut connection)
                            .await
                    })
                    .await?;
                Ok(found == 1)
            }
        }
    }
}

/// Counts a connection lost, refused or dropped by the backend, after
/// which the next call (or the tracking task) connects anew:
/// `cachekit_redis_reconnects_total{connection}` in `cachekit::stats()`
/// and, with the `metrics` feature, the exported counter. While a server
/// is down, every attempt counts.
pub(crate) fn count_reconnect(connection: &'static str) {
    cachekit_core::backend::count_event(
        "cachekit_redis_reconnects_total",
        &[("connection", connection)],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_become_whole_milliseconds_rounded_up() {
        assert_eq!(ttl_millis(None), None);
        assert_eq!(ttl_millis(Some(Duration::ZERO)), None);
        assert_eq!(ttl_millis(Some(Duration::from_nanos(1))), Some(1));
        assert_eq!(ttl_millis(Some(Duration::from_micros(1500))), Some(2));
        assert_eq!(ttl_millis(Some(Duration::from_millis(1500))), Some(1500));
        assert_eq!(ttl_millis(Some(Duration::from_secs(60))), Some(60_000));
        assert_eq!(ttl_millis(Some(Duration::MAX)), Some(MAX_PX));
    }
}
