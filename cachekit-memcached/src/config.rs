//! `MemcachedBackendConfig`: the settings, their defaults, variables and validation.

use std::path::PathBuf;
use std::time::Duration;

use cachekit_core::backend::{ConfigSource, Setting, SettingKind, host_port, seconds, server_list};
use cachekit_core::{ConfigOrigin, Error, Result, key};
use serde::{Deserialize, Serialize};

/// The Memcached backend's settings: the `[memcached]` section of
/// `cachekit.toml` and the `CACHEKIT_MEMCACHED_*` variables.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "memcached.servers",
        env: "CACHEKIT_MEMCACHED_SERVERS",
        env_aliases: &[],
        kind: SettingKind::List,
        default: "[\"127.0.0.1:11211\"]",
        description: "Servers as host:port, a JSON array ('[\"mc1:11211\", \"mc2:11211\"]') or a comma-separated list.",
    },
    Setting {
        key: "memcached.connect_timeout",
        env: "CACHEKIT_MEMCACHED_CONNECT_TIMEOUT",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(300),
        },
        default: "2.0",
        description: "Connect timeout, seconds.",
    },
    Setting {
        key: "memcached.timeout",
        env: "CACHEKIT_MEMCACHED_TIMEOUT",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(300),
        },
        default: "1.0",
        description: "Timeout of one operation, retries included, seconds.",
    },
    Setting {
        key: "memcached.max_pool_size",
        env: "CACHEKIT_MEMCACHED_MAX_POOL_SIZE",
        env_aliases: &[],
        kind: SettingKind::Integer { min: 1, max: 1_000 },
        default: "10",
        description: "Most connections per server; more open as load needs them (each carries up to 32 pipelined requests before the next opens).",
    },
    Setting {
        key: "memcached.retry_attempts",
        env: "CACHEKIT_MEMCACHED_RETRY_ATTEMPTS",
        env_aliases: &[],
        kind: SettingKind::Integer { min: 0, max: 10 },
        default: "2",
        description: "Retries of a failed operation (each on the key's server then: another one once the failing one is ejected).",
    },
    Setting {
        key: "memcached.eject_after",
        env: "CACHEKIT_MEMCACHED_EJECT_AFTER",
        env_aliases: &[],
        kind: SettingKind::Integer { min: 1, max: 100 },
        default: "2",
        description: "Consecutive failures after which a server leaves the ring for dead_time.",
    },
    Setting {
        key: "memcached.key_prefix",
        env: "CACHEKIT_MEMCACHED_KEY_PREFIX",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"\"",
        description: "Prefix put in front of every key on the wire.",
    },
    Setting {
        key: "memcached.max_item_size",
        env: "CACHEKIT_MEMCACHED_MAX_ITEM_SIZE",
        env_aliases: &[],
        kind: SettingKind::Integer {
            min: 1 << 10,
            max: 1 << 30,
        },
        default: "1048576",
        description: "The servers' item size, bytes (memcached's -I). The largest value sent is this less 309 (the longest key, 250 bytes, and memcached's 59 bytes of item overhead): 1048267 by default; larger ones are refused before sending.",
    },
    Setting {
        key: "memcached.dead_time",
        env: "CACHEKIT_MEMCACHED_DEAD_TIME",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(86_400),
        },
        default: "30.0",
        description: "How long an ejected server stays out of the ring before it is tried again, seconds.",
    },
    Setting {
        key: "memcached.tls",
        env: "CACHEKIT_MEMCACHED_TLS",
        env_aliases: &[],
        kind: SettingKind::Bool,
        default: "false",
        description: "Connect to every server over TLS (rustls; memcached's -Z).",
    },
    Setting {
        key: "memcached.tls_ca_file",
        env: "CACHEKIT_MEMCACHED_TLS_CA_FILE",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"<unset>\"",
        description: "PEM file of the CA certificates that sign the servers' certificates. Unset: the platform's (rustls-native-certs).",
    },
    Setting {
        key: "memcached.tls_cert_file",
        env: "CACHEKIT_MEMCACHED_TLS_CERT_FILE",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"<unset>\"",
        description: "PEM file of the client certificate (chain) for mutual TLS; needs tls_key_file.",
    },
    Setting {
        key: "memcached.tls_key_file",
        env: "CACHEKIT_MEMCACHED_TLS_KEY_FILE",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"<unset>\"",
        description: "PEM file of the client certificate's private key for mutual TLS; needs tls_cert_file.",
    },
    Setting {
        key: "memcached.tls_server_name",
        env: "CACHEKIT_MEMCACHED_TLS_SERVER_NAME",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"<unset>\"",
        description: "The name the servers' certificates are checked against, when it is not the host of each server.",
    },
    Setting {
        key: "memcached.tls_danger_accept_invalid_certs",
        env: "CACHEKIT_MEMCACHED_TLS_DANGER_ACCEPT_INVALID_CERTS",
        env_aliases: &[],
        kind: SettingKind::Bool,
        default: "false",
        description: "For tests only: accept any server certificate, unchecked (anyone on the path can read and change the traffic).",
    },
];

/// Configuration of a [`MemcachedBackend`](crate::MemcachedBackend). Building
/// one needs no server; [`MemcachedBackend::new`](crate::MemcachedBackend::new)
/// validates it and connects lazily.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemcachedBackendConfig {
    /// Servers as `host:port`; keys are spread over them by rendezvous hashing.
    #[serde(with = "server_list")]
    pub servers: Vec<String>,
    /// Connect timeout (default 2 s): the TCP connect, and over TLS the
    /// handshake and a first round trip. A connection keeps opening after
    /// the operation that asked for it gives up, for up to this long.
    #[serde(with = "seconds")]
    pub connect_timeout: Duration,
    /// Timeout of one operation, retries included (default 1 s).
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Most connections per server (default 10). Connections open as load
    /// needs them: a new one once each open one has 32 requests in flight.
    pub max_pool_size: usize,
    /// Retries of a failed operation (default 2), each on the key's server
    /// then: another one once the failing one is ejected.
    pub retry_attempts: u32,
    /// Consecutive failures after which a server leaves the ring for
    /// `dead_time` (default 2).
    pub eject_after: u32,
    /// Prefix put in front of every key on the wire (default none).
    pub key_prefix: String,
    /// The servers' item size in bytes, memcached's `-I` (default 1 MiB,
    /// memcached's default). An item holds the key, the value and 59 bytes of
    /// memcached's own (its header with the CAS value, the key's NUL and the
    /// value's `\r\n`), so the largest value sent is this less 309 (the
    /// longest key, 250 bytes with `key_prefix`, and those 59): 1,048,267
    /// bytes by default, whatever the key. Larger values are refused before
    /// sending with `Error::ValueTooLarge`.
    pub max_item_size: usize,
    /// How long an ejected server stays out before it is tried again (default 30 s).
    #[serde(with = "seconds")]
    pub dead_time: Duration,
    /// Whether connections use TLS (default `false`): rustls, the servers
    /// started with memcached's `-Z`. The TLS handshake counts against
    /// `connect_timeout`.
    pub tls: bool,
    /// PEM file of the CA certificates that sign the servers' certificates
    /// (default none: the platform's CA certificates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS (default
    /// none); set with [`tls_key_file`](Self::tls_key_file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (default none); set
    /// with [`tls_cert_file`](Self::tls_cert_file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// The name the servers' certificates are checked against (default
    /// none: the host of each server's `host:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// For tests only: accepts any server certificate without checking it
    /// (default `false`). Anyone on the path can then read and change the
    /// traffic; the backend logs a warning when it is built with this on.
    pub tls_danger_accept_invalid_certs: bool,
}

impl Default for MemcachedBackendConfig {
    fn default() -> Self {
        MemcachedBackendConfig {
            servers: vec!["127.0.0.1:11211".into()],
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            max_pool_size: 10,
            retry_attempts: 2,
            eject_after: 2,
            key_prefix: String::new(),
            max_item_size: 1 << 20,
            dead_time: Duration::from_secs(30),
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_server_name: None,
            tls_danger_accept_invalid_certs: false,
        }
    }
}

/// Builder-style setters, one per field: `MemcachedBackendConfig::default()
/// .servers(["mc1:11211", "mc2:11211"]).timeout(Duration::from_millis(500))`.
impl MemcachedBackendConfig {
    /// Sets [`servers`](Self::servers).
    pub fn servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.servers = servers.into_iter().map(Into::into).collect();
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

    /// Sets [`max_pool_size`](Self::max_pool_size).
    pub fn max_pool_size(mut self, max_pool_size: usize) -> Self {
        self.max_pool_size = max_pool_size;
        self
    }

    /// Sets [`retry_attempts`](Self::retry_attempts).
    pub fn retry_attempts(mut self, retry_attempts: u32) -> Self {
        self.retry_attempts = retry_attempts;
        self
    }

    /// Sets [`eject_after`](Self::eject_after).
    pub fn eject_after(mut self, eject_after: u32) -> Self {
        self.eject_after = eject_after;
        self
    }

    /// Sets [`key_prefix`](Self::key_prefix).
    pub fn key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Sets [`max_item_size`](Self::max_item_size).
    pub fn max_item_size(mut self, max_item_size: usize) -> Self {
        self.max_item_size = max_item_size;
        self
    }

    /// Sets [`dead_time`](Self::dead_time).
    pub fn dead_time(mut self, dead_time: Duration) -> Self {
        self.dead_time = dead_time;
        self
    }

    /// Sets [`tls`](Self::tls).
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`tls_ca_file`](Self::tls_ca_file).
    pub fn tls_ca_file(mut self, tls_ca_file: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(tls_ca_file.into());
        self
    }

    /// Sets [`tls_cert_file`](Self::tls_cert_file).
    pub fn tls_cert_file(mut self, tls_cert_file: impl Into<PathBuf>) -> Self {
        self.tls_cert_file = Some(tls_cert_file.into());
        self
    }

    /// Sets [`tls_key_file`](Self::tls_key_file).
    pub fn tls_key_file(mut self, tls_key_file: impl Into<PathBuf>) -> Self {
        self.tls_key_file = Some(tls_key_file.into());
        self
    }

    /// Sets [`tls_server_name`](Self::tls_server_name).
    pub fn tls_server_name(mut self, tls_server_name: impl Into<String>) -> Self {
        self.tls_server_name = Some(tls_server_name.into());
        self
    }

    /// Sets [`tls_danger_accept_invalid_certs`](Self::tls_danger_accept_invalid_certs):
    /// for tests only.
    pub fn tls_danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls_danger_accept_invalid_certs = accept;
        self
    }
}

impl MemcachedBackendConfig {
    /// Reads `[memcached]` and the `CACHEKIT_MEMCACHED_*` variables from `source`, and validates.
    pub fn from_source(source: &ConfigSource) -> Result<Self> {
        let config: Self = source.extract(Some("memcached"), SETTINGS)?;
        config.validate_with(|field| source.origin(setting(field)))?;
        Ok(config)
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<()> {
        self.validate_with(|_| ConfigOrigin::Code)
    }

    fn validate_with(&self, origin: impl Fn(&str) -> ConfigOrigin) -> Result<()> {
        let fail = |field: &str, reason: String| Error::Config {
            setting: format!("memcached.{field}"),
            origin: origin(field),
            reason,
        };
        if self.servers.is_empty() {
            return Err(fail(
                "servers",
                "the server list is empty; give at least one host:port".into(),
            ));
        }
        for server in &self.servers {
            host_port(server).map_err(|reason| fail("servers", reason))?;
        }
        // The declared ranges, for a config built in code as for one read.
        let numbers = [
            ("connect_timeout", self.connect_timeout.as_secs_f64()),
            ("timeout", self.timeout.as_secs_f64()),
            ("dead_time", self.dead_time.as_secs_f64()),
            ("max_pool_size", self.max_pool_size as f64),
            ("retry_attempts", f64::from(self.retry_attempts)),
            ("eject_after", f64::from(self.eject_after)),
            ("max_item_size", self.max_item_size as f64),
        ];
        for (field, value) in numbers {
            setting(field)
                .check(value)
                .map_err(|reason| fail(field, reason))?;
        }
        let room = key::MAX_KEY_LEN - key::MIN_BACKEND_KEY_LEN;
        if self.key_prefix.len() > room
            || !self.key_prefix.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(fail(
                "key_prefix",
                format!(
                    "{:?} must be printable ASCII without spaces and at most {room} bytes",
                    self.key_prefix
                ),
            ));
        }
        // A TLS setting with TLS off would send everything in the clear
        // while the operator believes otherwise.
        let tls_settings = [
            ("tls_ca_file", self.tls_ca_file.is_some()),
            ("tls_cert_file", self.tls_cert_file.is_some()),
            ("tls_key_file", self.tls_key_file.is_some()),
            ("tls_server_name", self.tls_server_name.is_some()),
            (
                "tls_danger_accept_invalid_certs",
                self.tls_danger_accept_invalid_certs,
            ),
        ];
        if let Some((given, _)) = tls_settings.iter().find(|(_, set)| *set && !self.tls) {
            return Err(fail(
                "tls",
                format!(
                    "{given} is set but memcached.tls is off, so traffic would go in the clear: set memcached.tls = true, or remove {given}"
                ),
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            let (missing, given) = if self.tls_cert_file.is_some() {
                ("tls_key_file", "tls_cert_file")
            } else {
                ("tls_cert_file", "tls_key_file")
            };
            return Err(fail(
                missing,
                format!("{given} is set without {missing}: mutual TLS needs both"),
            ));
        }
        if let Some(name) = &self.tls_server_name {
            rustls::pki_types::ServerName::try_from(name.as_str()).map_err(|_| {
                fail(
                    "tls_server_name",
                    format!("{name:?} is not a DNS name or an IP address"),
                )
            })?;
        }
        Ok(())
    }
}

/// `error` with, when it is a config error of a `memcached.*` setting, that
/// setting's origin in `source` (for errors found after the settings were
/// read, such as a TLS file that does not parse).
pub(crate) fn with_origin(error: Error, source: &ConfigSource) -> Error {
    let Error::Config {
        setting: name,
        origin,
        reason,
    } = error
    else {
        return error;
    };
    let declared = SETTINGS.iter().find(|s| s.key == name);
    Error::Config {
        origin: declared.map_or(origin, |declared| source.origin(declared)),
        setting: name,
        reason,
    }
}

/// The declaration of `field` (`timeout` for `memcached.timeout`).
fn setting(field: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key.strip_prefix("memcached.") == Some(field))
        .expect("every field is declared")
}
