//! `RedisBackendConfig`: the settings, their defaults, variables and validation.

use std::fmt;
use std::time::Duration;

use cachekit_core::backend::{
    ConfigSource, Setting, SettingKind, host_port, redact_url, seconds, server_list,
};
use cachekit_core::{ConfigOrigin, Error, Result, key};
use redis::IntoConnectionInfo;
use serde::{Deserialize, Serialize};

/// The Redis backend's settings: the `[redis]` section of `cachekit.toml`
/// and the `CACHEKIT_REDIS_*` variables.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "redis.url",
        env: "CACHEKIT_REDIS_URL",
        env_aliases: &["REDIS_URL"],
        kind: SettingKind::Text,
        default: "\"redis://127.0.0.1:6379\"",
        description: "Server URL: redis://[user][:password@]host[:port][/db], rediss:// for TLS (rustls). With cluster_nodes, only its scheme, user and password count.",
    },
    Setting {
        key: "redis.connect_timeout",
        env: "CACHEKIT_REDIS_CONNECT_TIMEOUT",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(300),
        },
        default: "2.0",
        description: "Connect timeout, seconds.",
    },
    Setting {
        key: "redis.timeout",
        env: "CACHEKIT_REDIS_TIMEOUT",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(300),
        },
        default: "1.0",
        description: "Timeout of one operation, connecting included, seconds.",
    },
    Setting {
        key: "redis.key_prefix",
        env: "CACHEKIT_REDIS_KEY_PREFIX",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"\"",
        description: "Prefix put in front of every key on the wire (no braces: a hash tag there would put every key in one cluster slot).",
    },
    Setting {
        key: "redis.cluster_nodes",
        env: "CACHEKIT_REDIS_CLUSTER_NODES",
        env_aliases: &[],
        kind: SettingKind::List,
        default: "[]",
        description: "Redis Cluster seed nodes as host:port, a JSON array ('[\"r1:6379\", \"r2:6379\"]') or a comma-separated list. Empty: one server, at url.",
    },
    Setting {
        key: "redis.l1_invalidation",
        env: "CACHEKIT_REDIS_L1_INVALIDATION",
        env_aliases: &[],
        kind: SettingKind::Bool,
        default: "false",
        description: "Drop in-process L1 copies when another process changes or deletes the key (Redis client-side caching invalidations).",
    },
];

/// Configuration of a [`RedisBackend`](crate::RedisBackend). Building one
/// needs no server; [`RedisBackend::new`](crate::RedisBackend::new)
/// validates it and connects on first use.
///
/// There is no pool size: every call goes over one multiplexed connection
/// per server (redis-rs's `ConnectionManager`, or the cluster client's one
/// per node), which pipelines requests from any number of tasks; more
/// connections would add round trips, not throughput.
///
/// Its `Debug` masks the password of the URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedisBackendConfig {
    /// Server URL (default `redis://127.0.0.1:6379`):
    /// `redis://[user][:password@]host[:port][/db]`, or `rediss://` for TLS.
    /// With [`cluster_nodes`](Self::cluster_nodes), its scheme, user and
    /// password apply to every node and its host is not used.
    pub url: String,
    /// Connect timeout (default 2 s).
    #[serde(with = "seconds")]
    pub connect_timeout: Duration,
    /// Timeout of one operation, connecting included (default 1 s).
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Prefix put in front of every key on the wire (default none).
    pub key_prefix: String,
    /// Redis Cluster seed nodes as `host:port` (default none). Non-empty:
    /// the backend uses the cluster client, which finds every node from
    /// these and routes keys by slot.
    #[serde(with = "server_list")]
    pub cluster_nodes: Vec<String>,
    /// Whether L1 copies are dropped when another process changes or
    /// deletes the key (default `false`).
    pub l1_invalidation: bool,
}

impl Default for RedisBackendConfig {
    fn default() -> Self {
        RedisBackendConfig {
            url: "redis://127.0.0.1:6379".into(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            key_prefix: String::new(),
            cluster_nodes: Vec::new(),
            l1_invalidation: false,
        }
    }
}

impl fmt::Debug for RedisBackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendConfig")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .field("cluster_nodes", &self.cluster_nodes)
            .field("l1_invalidation", &self.l1_invalidation)
            .finish()
    }
}

/// Builder-style setters, one per field: `RedisBackendConfig::default()
/// .url("redis://cache:6379/0").timeout(Duration::from_millis(500))`.
impl RedisBackendConfig {
    /// Sets [`url`](Self::url).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`key_prefix`](Self::key_prefix).
    pub fn key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Sets [`cluster_nodes`](Self::cluster_nodes).
    pub fn cluster_nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.cluster_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`l1_invalidation`](Self::l1_invalidation).
    pub fn l1_invalidation(mut self, l1_invalidation: bool) -> Self {
        self.l1_invalidation = l1_invalidation;
        self
    }
}

impl RedisBackendConfig {
    /// Reads `[redis]` and the `CACHEKIT_REDIS_*` variables (and `REDIS_URL`)
    /// from `source`, and validates.
    pub fn from_source(source: &ConfigSource) -> Result<Self> {
        let config: Self = source.extract(Some("redis"), SETTINGS)?;
        config.validate_with(|field| source.origin(setting(field)))?;
        Ok(config)
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<()> {
        self.validate_with(|_| ConfigOrigin::Code)
    }

    /// Whether the backend talks to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }

    fn validate_with(&self, origin: impl Fn(&str) -> ConfigOrigin) -> Result<()> {
        let fail = |field: &str, reason: String| Error::Config {
            setting: format!("redis.{field}"),
            origin: origin(field),
            reason,
        };
        let info = parse_url(&self.url).map_err(|reason| fail("url", reason))?;
        for node in &self.cluster_nodes {
            host_port(node).map_err(|reason| fail("cluster_nodes", reason))?;
        }
        if self.is_cluster() && info.redis_settings().db() != 0 {
            return Err(fail(
                "url",
                format!(
                    "{} selects database {}, but a Redis Cluster has only database 0; remove the /db part",
                    redact_url(&self.url),
                    info.redis_settings().db()
                ),
            ));
        }
        if self.is_cluster() && self.l1_invalidation {
            return Err(fail(
                "l1_invalidation",
                "L1 invalidation tracks keys on one connection, which a Redis Cluster splits over its masters; it is not supported with `cluster_nodes` yet: turn it off (copies then live `l1_ttl`)".into(),
            ));
        }
        let numbers = [
            ("connect_timeout", self.connect_timeout.as_secs_f64()),
            ("timeout", self.timeout.as_secs_f64()),
        ];
        for (field, value) in numbers {
            setting(field)
                .check(value)
                .map_err(|reason| fail(field, reason))?;
        }
        let room = key::MAX_KEY_LEN - key::MIN_BACKEND_KEY_LEN;
        if self.key_prefix.len() > room
            || !self
                .key_prefix
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'{' && b != b'}')
        {
            return Err(fail(
                "key_prefix",
                format!(
                    "{:?} must be printable ASCII without spaces or braces and at most {room} bytes",
                    self.key_prefix
                ),
            ));
        }
        Ok(())
    }
}

/// The declaration of `field` (`timeout` for `redis.timeout`).
fn setting(field: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key.strip_prefix("redis.") == Some(field))
        .expect("every field is declared")
}

/// The connection settings of `url`, or why it does not parse (the URL
/// shown with its password masked).
pub(crate) fn parse_url(url: &str) -> std::result::Result<redis::ConnectionInfo, String> {
    let shown = redact_url(url);
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(
        scheme,
        Some("redis" | "rediss" | "valkey" | "valkeys" | "redis+unix" | "unix")
    ) {
        return Err(format!(
            "{shown:?} is not a Redis URL; write redis://host:port/db (rediss:// for TLS)"
        ));
    }
    url.into_connection_info().map_err(|error| {
        format!("{shown:?} is not a valid Redis URL ({error}); write redis://[user][:password@]host[:port][/db]")
    })
}
