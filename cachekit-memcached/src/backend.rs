//! `MemcachedBackend`: the `Backend` over a fleet of memcached servers.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cachekit_core::ConfigSource;
use cachekit_core::backend::{
    Backend, Capabilities, DomainHealth, Error, Health, Identity, MAX_KEY_LEN, Result, Touch,
    validate_key,
};
use tokio::time::{Instant, timeout_at};

use crate::config::MemcachedBackendConfig;
use crate::connection::ConnectionError;
use crate::protocol::{Request, Response};
use crate::ring;
use crate::server::Server;
use crate::tls::Tls;

mod attempt;
mod errors;

use attempt::on_connection;
use errors::unavailable;

/// Longest TTL memcached takes as a duration; longer values are read as a
/// Unix timestamp, so cachekit clamps to it.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The bytes of a memcached item besides its key and value: the item header
/// with its CAS value, the key's terminating NUL and the value's `\r\n`.
/// memcached refuses an item larger than its item size (`-I`), so the
/// largest value it stores under a key of `n` bytes is the item size less
/// `n + ITEM_OVERHEAD` (measured on memcached 1.6.18, 64-bit, CAS on: 1 MiB
/// items take values up to 1,048,516 bytes under a 1-byte key, 1,048,267
/// under a 250-byte key).
const ITEM_OVERHEAD: usize = 59;

/// The largest value the backend sends with items of `max_item_size` bytes:
/// the item size less the longest wire key ([`MAX_KEY_LEN`], key prefix
/// included) and [`ITEM_OVERHEAD`]; 0 if the item size is smaller than that.
///
/// The same for every key, so that one limit, declared in the capabilities,
/// holds whatever the key: a value within it is stored under any key, and
/// a value over it is refused before sending (memcached would refuse it,
/// and drop the key's previous value, for some keys).
const fn max_value_size(max_item_size: usize) -> usize {
    max_item_size.saturating_sub(MAX_KEY_LEN + ITEM_OVERHEAD)
}

/// A shared, volatile cache over one or more memcached servers (>= 1.6, meta
/// protocol). Keys are placed by rendezvous hashing over the live servers;
/// each server has a pool of pipelined connections. A server failing
/// `eject_after` times in a row leaves the ring for `dead_time`.
///
/// No locking and no TTL inspection: [`Cache::lock`](cachekit_core::Cache::lock)
/// and [`Cache::ttl`](cachekit_core::Cache::ttl) return `Error::Unsupported`,
/// and cached functions rely on in-process single-flight.
#[derive(Debug, Clone)]
pub struct MemcachedBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: MemcachedBackendConfig,
    servers: Box<[Server]>,
    capabilities: Capabilities,
    /// The largest value sent: [`max_value_size`] of the configured
    /// `max_item_size`, as declared in `capabilities`.
    max_value_size: usize,
    /// Whether the warning that `max_item_size` exceeds the servers' was
    /// written (once: the cause is the configuration, not the call).
    warned_item_size: AtomicBool,
}

impl MemcachedBackend {
    /// The backend's name, as in `CACHEKIT_BACKEND=memcached`.
    pub const NAME: &'static str = "memcached";

    /// What the backend declares with the default configuration (1 MiB
    /// items: values up to 1,048,267 bytes); the value and key limits of an
    /// instance follow its `max_item_size` and `key_prefix`.
    pub const CAPABILITIES: Capabilities = Capabilities {
        ttl: true,
        ttl_inspect: false,
        touch: true,
        lock: false,
        persistent: false,
        shared: true,
        max_ttl: Some(MAX_TTL),
        max_value_size: Some(max_value_size(1 << 20)),
        max_key_len: MAX_KEY_LEN,
    };

    /// A backend for `config`, validated; connections open on first use.
    /// With `tls` on, the PEM files of the TLS settings are read now: one
    /// that cannot be read or holds no valid PEM is an `Error::Config`
    /// naming the setting and the path.
    pub fn new(config: MemcachedBackendConfig) -> Result<Self> {
        config.validate()?;
        let tls = Tls::new(&config)?;
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(index, name)| Server::new(index, name, &config, tls.as_ref()))
            .collect();
        let max_value_size = max_value_size(config.max_item_size);
        let capabilities = Capabilities {
            max_value_size: Some(max_value_size),
            max_key_len: MAX_KEY_LEN - config.key_prefix.len(),
            ..Self::CAPABILITIES
        };
        Ok(MemcachedBackend {
            inner: Arc::new(Inner {
                config,
                servers,
                capabilities,
                max_value_size,
                warned_item_size: AtomicBool::new(false),
            }),
        })
    }

    /// A backend configured by `CACHEKIT_MEMCACHED_*` over `cachekit.toml` over the defaults.
    pub fn from_env() -> Result<Self> {
        Self::from_config(&ConfigSource::from_process()?)
    }

    /// A backend configured by `source`. An error names where its setting
    /// came from, those of the TLS files read by [`new`](Self::new) included.
    pub fn from_config(source: &ConfigSource) -> Result<Self> {
        let config = MemcachedBackendConfig::from_source(source)?;
        Self::new(config).map_err(|error| crate::config::with_origin(error, source))
    }

    /// The configuration in use.
    pub fn config(&self) -> &MemcachedBackendConfig {
        &self.inner.config
    }

    /// The servers in the ring now (not ejected, or back from their dead time).
    pub fn live_servers(&self) -> Vec<&str> {
        self.inner
            .servers
            .iter()
            .filter(|s| s.is_live())
            .map(|s| s.name.as_str())
            .collect()
    }

    /// The server that `key` goes to now.
    pub fn server_for(&self, key: &str) -> &str {
        &self.pick(key).name
    }

    /// The owner of `key` among the live servers (among all, if none is live).
    fn pick(&self, key: &str) -> &Server {
        &self.inner.servers[self.owner_index(key)]
    }

    fn owner_index(&self, key: &str) -> usize {
        fn named((index, server): (usize, &Server)) -> (usize, &str) {
            (index, server.name.as_str())
        }
        if self.inner.servers.len() == 1 {
            return 0;
        }
        let servers = self.inner.servers.iter().enumerate();
        ring::owner(servers.clone().filter(|(_, s)| s.is_live()).map(named), key)
            .or_else(|| ring::owner(servers.map(named), key))
            .expect("a validated config has at least one server")
    }

    /// Validates `key` and puts the prefix in front of it.
    fn wire_key<'k>(&self, key: &'k str) -> Result<Cow<'k, str>> {
        validate_key(key, self.inner.capabilities.max_key_len)?;
        Ok(match self.inner.config.key_prefix.as_str() {
            "" => Cow::Borrowed(key),
            prefix => Cow::Owned(format!("{prefix}{key}")),
        })
    }

    /// Sends `requests` (the one for each of `keys`, in order) in one batch
    /// per owning server, all servers at once, within one `timeout`; returns
    /// the answers in order.
    async fn batch(
        &self,
        operation: &'static str,
        keys: &[&str],
        requests: Vec<Request<'_>>,
    ) -> Result<Vec<Response>> {
        // Positions of the keys each server owns.
        let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
        for (position, key) in keys.iter().enumerate() {
            let server = self.owner_index(key);
            match batches.iter_mut().find(|(s, _)| *s == server) {
                Some((_, positions)) => positions.push(position),
                None => batches.push((server, vec![position])),
            }
        }
        let deadline = Instant::now() + self.inner.config.timeout;
        let asks = batches.iter().map(|(server, positions)| {
            let server = &self.inner.servers[*server];
            let batch: Vec<Request<'_>> = positions.iter().map(|&p| requests[p]).collect();
            async move {
                let batch = &batch;
                let answers = timeout_at(
                    deadline,
                    on_connection(server, |connection| async move {
                        connection.call_many(batch).await
                    }),
                )
                .await;
                match answers {
                    Ok(Ok(answers)) => {
                        server.succeeded();
                        Ok(answers)
                    }
                    Ok(Err(error)) => {
                        server.failed();
                        Err(match error {
                            ConnectionError::TimedOut => self.timed_out(operation, server),
                            error => unavailable(server, error),
                        })
                    }
                    Err(_) => {
                        server.failed();
                        Err(self.timed_out(operation, server))
                    }
                }
            }
        });
        let answered = futures_util::future::join_all(asks).await;
        let mut ordered: Vec<Option<Response>> = (0..keys.len()).map(|_| None).collect();
        for ((_, positions), answers) in batches.into_iter().zip(answered) {
            // A connection answers each of its requests, in order.
            for (position, answer) in positions.into_iter().zip(answers?) {
                ordered[position] = Some(answer);
            }
        }
        ordered
            .into_iter()
            .map(|answer| {
                answer.ok_or_else(|| {
                    Error::unavailable(
                        Self::NAME,
                        format!("{operation}: fewer answers than requests"),
                    )
                })
            })
            .collect()
    }
}

impl MemcachedBackend {
    /// `server`'s answer to a no-op within `timeout`, for [`Backend::health`].
    /// Neither an answer nor a failure counts toward its ejection: the check
    /// observes the fleet and changes nothing.
    async fn ping(&self, server: &Server) -> DomainHealth {
        let started = Instant::now();
        let timeout = self.inner.config.timeout;
        let answer = timeout_at(
            started + timeout,
            on_connection(server, |connection| async move {
                connection.call(Request::Noop).await
            }),
        )
        .await;
        match answer {
            Ok(Ok(Response::Noop)) => DomainHealth::up(&server.name, started.elapsed()),
            Ok(Ok(other)) => {
                DomainHealth::down(&server.name, format!("unexpected answer {other:?}"))
            }
            Ok(Err(error)) => DomainHealth::down(&server.name, error),
            Err(_) => DomainHealth::down(&server.name, format!("no answer within {timeout:?}")),
        }
    }
}

/// Whole seconds for memcached: none is 0, anything under a second is 1,
/// and anything over 30 days is 30 days.
fn ttl_seconds(ttl: Option<Duration>) -> u32 {
    match MemcachedBackend::CAPABILITIES.clamp_ttl(ttl) {
        None => 0,
        Some(ttl) => u32::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(u32::MAX)
            .max(1),
    }
}

#[async_trait]
impl Backend for MemcachedBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let wire = self.wire_key(key)?;
        match self
            .execute("get", key, Request::Get { key: &wire })
            .await?
        {
            Response::Value(value) => Ok(Some(value)),
            Response::Miss => Ok(None),
            other => Err(self.unexpected("get", key, other)),
        }
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let wire = self.wire_key(key)?;
        if value.len() > self.inner.max_value_size {
            return Err(self.too_large(value.len()));
        }
        let ttl = ttl_seconds(ttl);
        match self
            .execute(
                "set",
                key,
                Request::Set {
                    key: &wire,
                    value: &value,
                    ttl,
                },
            )
            .await?
        {
            Response::Stored => Ok(()),
            Response::ServerError(message) if message.contains("too large") => {
                Err(self.refused_as_too_large("set", value.len()))
            }
            other => Err(self.unexpected("set", key, other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let wire = self.wire_key(key)?;
        self.hit_or_miss(
            "delete",
            key,
            self.execute("delete", key, Request::Delete { key: &wire })
                .await?,
        )
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let wire = self.wire_key(key)?;
        self.hit_or_miss(
            "exists",
            key,
            self.execute("exists", key, Request::Exists { key: &wire })
                .await?,
        )
    }

    /// Each server in the ring now is asked a `mn` (no-op), all at once,
    /// within `timeout`: up with its latency, or down with the error. An
    /// ejected server is listed with the time it left, and not asked: calls
    /// skip it until its dead time is over (unless every server is out, and
    /// then calls, and this check, go to all of them). `Ok` when at least
    /// one server answers.
    async fn health(&self) -> Result<Health> {
        let started = Instant::now();
        let servers = &self.inner.servers;
        let none_live = servers.iter().all(|server| !server.is_live());
        let checks = servers.iter().map(|server| async move {
            match server.ejected_since() {
                Some(since) if !none_live => DomainHealth::ejected(&server.name, since),
                _ => self.ping(server).await,
            }
        });
        let domains = futures_util::future::join_all(checks).await;
        Health::of_domains(Self::NAME, started.elapsed(), domains)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let wire_keys = keys
            .iter()
            .map(|key| self.wire_key(key))
            .collect::<Result<Vec<_>>>()?;
        let requests = wire_keys.iter().map(|key| Request::Get { key }).collect();
        self.batch("get_many", keys, requests)
            .await?
            .into_iter()
            .zip(keys)
            .map(|(answer, key)| match answer {
                Response::Value(value) => Ok(Some(value)),
                Response::Miss => Ok(None),
                other => Err(self.unexpected("get_many", key, other)),
            })
            .collect()
    }

    /// Every key and value is checked before anything is sent; the entries
    /// then go out in one batch per server, all servers at once. Not atomic:
    /// on an error, entries for other servers may be stored.
    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        let wire_keys = entries
            .iter()
            .map(|(key, value)| {
                // The key first, as `set` checks it.
                let wire = self.wire_key(key)?;
                if value.len() > self.inner.max_value_size {
                    return Err(self.too_large(value.len()));
                }
                Ok(wire)
            })
            .collect::<Result<Vec<_>>>()?;
        let ttl = ttl_seconds(ttl);
        let requests = wire_keys
            .iter()
            .zip(entries)
            .map(|(key, (_, value))| Request::Set { key, value, ttl })
            .collect();
        let keys: Vec<&str> = entries.iter().map(|(key, _)| *key).collect();
        let answers = self.batch("set_many", &keys, requests).await?;
        for (answer, (key, value)) in answers.into_iter().zip(entries) {
            match answer {
                Response::Stored => {}
                Response::ServerError(message) if message.contains("too large") => {
                    return Err(self.refused_as_too_large("set_many", value.len()));
                }
                other => return Err(self.unexpected("set_many", key, other)),
            }
        }
        Ok(())
    }

    /// The configured `timeout`. The backend keeps its own deadline rather
    /// than the reliability layer's timer: a call on a connection must fail
    /// that connection when it is late (the answer would be taken for the
    /// next request's), which only the connection can do (its watchdog,
    /// `watchdog.rs`).
    fn operation_timeout(&self) -> Option<Duration> {
        Some(self.inner.config.timeout)
    }

    /// The backend retries itself: a retry must go to the key's owner
    /// *then*, which is another server once the failing one is ejected, and
    /// count toward that server's ejection; the reliability layer knows
    /// neither the ring nor the servers.
    fn retries_itself(&self) -> bool {
        true
    }

    /// One failure domain per server: a server failing alone (and ejected
    /// by the backend) never opens the breaker for the others' keys.
    fn failure_domains(&self) -> usize {
        self.inner.servers.len()
    }

    /// The server the key goes to now.
    fn failure_domain(&self, key: &str) -> usize {
        self.owner_index(key)
    }

    fn key_prefix(&self) -> &str {
        &self.inner.config.key_prefix
    }

    /// Clones share the pools.
    fn identity(&self) -> Option<Identity> {
        Some(Identity::of(&self.inner))
    }

    fn as_touch(&self) -> Option<&dyn Touch> {
        Some(self)
    }
}

#[async_trait]
impl Touch for MemcachedBackend {
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let wire = self.wire_key(key)?;
        let ttl = ttl_seconds(ttl);
        self.hit_or_miss(
            "touch",
            key,
            self.execute("touch", key, Request::Touch { key: &wire, ttl })
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_become_whole_seconds_clamped_to_thirty_days() {
        assert_eq!(ttl_seconds(None), 0);
        assert_eq!(ttl_seconds(Some(Duration::ZERO)), 0);
        assert_eq!(ttl_seconds(Some(Duration::from_millis(1))), 1);
        assert_eq!(ttl_seconds(Some(Duration::from_millis(1500))), 2);
        assert_eq!(ttl_seconds(Some(Duration::from_secs(60))), 60);
        assert_eq!(ttl_seconds(Some(MAX_TTL)), 2_592_000);
        assert_eq!(ttl_seconds(Some(MAX_TTL * 12)), 2_592_000);
        assert_eq!(ttl_seconds(Some(Duration::from_secs(u64::MAX))), 2_592_000);
    }

    #[test]
    fn the_value_limit_leaves_room_for_the_longest_key_and_the_item_overhead() {
        // memcached 1.6.18's largest value for a 250-byte key with 1 MiB items.
        assert_eq!(max_value_size(1 << 20), 1_048_267);
        assert_eq!(
            MemcachedBackend::CAPABILITIES.max_value_size,
            Some(1_048_267)
        );
        assert_eq!(max_value_size(2048), 2048 - 250 - 59);
        assert_eq!(max_value_size(309), 0);
        assert_eq!(max_value_size(1), 0);
    }
}
