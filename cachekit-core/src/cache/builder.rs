//! `CacheBuilder`: a cache's options, with the configuration for the unset ones.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::MAX_TTL_JITTER;
use super::encrypting::Choice;
use super::{Cache, Format, Inner, Wire};
use crate::backend::Invalidation;
use crate::coherence::{self, Coherence};
use crate::config::{CORE_SETTINGS, ConfigSource, CoreSettings};
use crate::encryption::MasterKey;
use crate::flight::Flights;
use crate::l1::L1;
use crate::layer::{self, RELIABILITY_SETTINGS, ReliabilityConfig};
use crate::resolve;
use crate::stats::Counters;
use crate::{
    Backend, ConfigOrigin, Error, L1Config, MemoryBackend, Result, cached_fn, interop, key,
};

/// Builds a [`Cache`]. Unset options come from the configuration: the
/// one given to [`CacheBuilder::config`], else this process's (`CACHEKIT_*`
/// variables, `cachekit.toml` and the defaults), read once, as for cached
/// functions. A cache that names no backend and reads this process's
/// configuration uses the backend cached functions use (one instance: one
/// set of connections, one circuit breaker).
#[derive(Debug, Default)]
#[must_use]
pub struct CacheBuilder {
    backend: Option<Arc<dyn Backend>>,
    namespace: Option<String>,
    version: u32,
    default_ttl: Option<Duration>,
    ttl_jitter: Option<u32>,
    l1: Option<Option<L1Config>>,
    lock_lease: Option<Duration>,
    config: Option<ConfigSource>,
    /// Set for the cache of a cached function: its counters carry the
    /// function's name, and the function reports them (not the cache).
    function: Option<String>,
    /// Entries in interop format (see [`CacheBuilder::interop`]).
    interop: bool,
    /// What the builder says of encryption.
    encryption: Choice,
}

impl CacheBuilder {
    /// Stores entries in `backend`, ahead of the process default and the
    /// environment. It gets the reliability layer with the configured
    /// settings; to choose them, apply [`ReliabilityLayer`](crate::layer::ReliabilityLayer)
    /// yourself and give the result to [`CacheBuilder::shared_backend`].
    pub fn backend(self, backend: impl Backend + 'static) -> Self {
        self.shared_backend(Arc::new(backend))
    }

    /// Like [`CacheBuilder::backend`], for a backend shared with other
    /// caches: they share its reliability layer (one breaker).
    pub fn shared_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The first part of every key (default: the `namespace` setting, `cachekit`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// A version of the cached data (default 0: none). Entries are read
    /// only by caches of the same version: raise it when what is stored
    /// changes meaning without changing type, to break with the entries
    /// written before (they are never read, and expire with their TTL).
    /// Changes of type need no version: an entry written by another type is
    /// a miss anyway.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// TTL for entries stored without one; zero means no expiry.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Spreads every TTL this cache writes by up to `percent` either way
    /// (default: the `ttl_jitter` setting, 0), so that entries written
    /// together do not expire together. At most 50; more is an
    /// [`Error::Config`] from [`CacheBuilder::build`].
    pub fn ttl_jitter(mut self, percent: u32) -> Self {
        self.ttl_jitter = Some(percent);
        self
    }

    /// Limits of the in-process L1 tier.
    pub fn l1(mut self, config: L1Config) -> Self {
        self.l1 = Some(Some(config));
        self
    }

    /// No L1 tier: every read goes to the backend.
    pub fn without_l1(mut self) -> Self {
        self.l1 = Some(None);
        self
    }

    /// Lease of the backend lock taken while loading a miss (default 30 s).
    /// The loading process restarts the lease every third of it while its
    /// loader runs, so other processes wait for the value however long the
    /// loader takes (up to ten leases), and only a lease's time for a
    /// process that died while loading.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = Some(lease);
        self
    }

    /// Writes and reads entries as cachekit-py does in interop mode, so that
    /// Python services share them: each value is one canonical MessagePack
    /// document (see [`interop`](crate::interop)), and keys are
    /// `{namespace}:{key}` as given, where an interop key is
    /// `{operation}:{hash}` from [`interop::call_key`](crate::interop::call_key).
    ///
    /// The namespace must be an interop segment (`^[a-z0-9][a-z0-9._-]{0,63}$`,
    /// not `ns` or `nsapi`), the version 0, and the backend without a
    /// `key_prefix` (Python refuses one too): otherwise
    /// [`CacheBuilder::build`] returns an [`Error::Config`]. Interop entries
    /// have no room for a stale window or tags: such writes fail with an
    /// [`Error::Codec`].
    pub fn interop(mut self) -> Self {
        self.interop = true;
        self
    }

    /// Encrypts entries with AES-256-GCM (`true`), or not (`false`),
    /// whatever the `encryption.enabled` setting says; the master key comes
    /// from [`CacheBuilder::master_key`] or the `encryption.master_key`
    /// setting (`CACHEKIT_MASTER_KEY`). An entry is bound to its key: bytes
    /// copied under another key do not decrypt. L1 keeps values decrypted.
    pub fn encrypt(mut self, on: bool) -> Self {
        self.encryption.enabled = Some(on);
        self
    }

    /// The master key entries are encrypted under (default: the
    /// `encryption.master_key` setting). Setting one does not turn
    /// encryption on: say so with [`CacheBuilder::encrypt`] or the
    /// `encryption.enabled` setting.
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.encryption.master_key = Some(key);
        self
    }

    /// Earlier master keys (at most 3), tried in order when the current one
    /// does not open an entry; never used to encrypt (default: the
    /// `encryption.previous_master_keys` setting).
    pub fn previous_master_keys(mut self, keys: Vec<MasterKey>) -> Self {
        self.encryption.previous = Some(keys);
        self
    }

    /// The deployment that keys are derived for, a lowercase hyphenated
    /// UUID (default: the `encryption.deployment_uuid` setting, else the
    /// tenant `default`, as in cachekit-py).
    pub fn deployment_uuid(mut self, uuid: impl Into<String>) -> Self {
        self.encryption.deployment_uuid = Some(uuid.into());
        self
    }

    /// Whether an entry that does not decrypt is an error rather than a
    /// miss (default: the `encryption.fail_closed` setting, `false`).
    pub fn fail_closed(mut self, on: bool) -> Self {
        self.encryption.fail_closed = Some(on);
        self
    }

    /// Reads unset options from `config` instead of this process's environment and file.
    pub fn config(mut self, config: ConfigSource) -> Self {
        self.config = Some(config);
        self
    }

    /// Builds the cache of the cached function `name`: its counters carry
    /// that name, and the function reports them.
    pub(crate) fn for_function(mut self, name: String) -> Self {
        self.function = Some(name);
        self
    }

    /// Builds the cache, resolving the backend if none was given: the
    /// process default ([`set_default_backend`](crate::set_default_backend)),
    /// else the one the configuration selects, else in-process memory.
    pub fn build(self) -> Result<Cache> {
        let explicit = self.backend.is_some();
        let (config, backend) = match (self.config, self.backend) {
            (Some(config), backend) => {
                let backend = resolve::resolve(backend, &config)?.backend;
                (config, backend)
            }
            (None, Some(backend)) => (cached_fn::process()?.config.clone(), backend),
            // The backend cached functions use: one instance, one breaker.
            (None, None) => {
                let process = cached_fn::process()?;
                (process.config.clone(), process.backend()?)
            }
        };
        let settings: CoreSettings = config.extract(None, CORE_SETTINGS)?;
        let in_process_only = !explicit && backend.name() == MemoryBackend::NAME;
        let l1 = match self.l1 {
            Some(l1) => l1,
            // An L1 in front of in-process memory would only hold a second copy.
            None if in_process_only || settings.l1_max_entries == 0 => None,
            None => Some(L1Config {
                max_entries: settings.l1_max_entries,
                max_bytes: settings.l1_max_bytes,
                max_ttl: settings.l1_ttl,
            }),
        };
        let reliability: ReliabilityConfig =
            config.extract(Some("reliability"), RELIABILITY_SETTINGS)?;
        let layer = layer::reliable(&backend, reliability);
        let backend: Arc<dyn Backend> = layer.clone();
        let capabilities = backend.capabilities();
        let backend_key_len = capabilities.max_key_len.min(key::MAX_KEY_LEN);
        if backend_key_len < key::MIN_BACKEND_KEY_LEN {
            return Err(Error::Config {
                setting: "max_key_len".into(),
                origin: ConfigOrigin::Code,
                reason: format!(
                    "the {} backend allows keys of {backend_key_len} bytes; cachekit needs at least {} (shorten the key prefix)",
                    backend.name(),
                    key::MIN_BACKEND_KEY_LEN
                ),
            });
        }
        let default_ttl = self
            .default_ttl
            .or(Some(settings.default_ttl))
            .filter(|ttl| !ttl.is_zero());
        let ttl_jitter = self.ttl_jitter.unwrap_or(settings.ttl_jitter);
        if ttl_jitter > MAX_TTL_JITTER {
            return Err(Error::Config {
                setting: "ttl_jitter".into(),
                origin: ConfigOrigin::Code,
                reason: format!(
                    "{ttl_jitter}% must be from 0 to {MAX_TTL_JITTER}: a TTL spread by more could end at once"
                ),
            });
        }
        let namespace_origin = match self.namespace {
            Some(_) => ConfigOrigin::Code,
            None => config.origin(&CORE_SETTINGS[NAMESPACE]),
        };
        let namespace = self.namespace.unwrap_or(settings.namespace);
        let format = match self.interop {
            true => {
                check_interop(&*backend, &namespace, namespace_origin, self.version)?;
                Format::Interop
            }
            false => Format::Native,
        };
        let seal = self.encryption.seal(&config)?;
        // Room for the lock mark that lock keys add.
        let max_key_len = backend_key_len - key::LOCK_MARK.len();
        let l1 = l1.map(|config| Arc::new(L1::new(config))).filter(|l1| {
            let tier = Arc::downgrade(l1);
            let coherence = coherence::listen(&*backend, move |notice| {
                let Some(l1) = tier.upgrade() else {
                    return false;
                };
                match notice {
                    Invalidation::Key(key) => l1.invalidate(key),
                    _ => l1.invalidate_all(),
                }
                true
            });
            coherence != Coherence::Impossible
        });
        let counters = match self.function {
            Some(function) => Counters::new(&function),
            None => {
                let counters = Counters::new(&namespace);
                crate::stats::register_cache(&counters, l1.as_ref());
                counters
            }
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                layer,
                capabilities,
                prefix: key::Prefix::new(&namespace, self.version, max_key_len),
                tag_prefix: key::Prefix::new(&namespace, 0, max_key_len),
                namespace,
                default_ttl,
                ttl_jitter,
                l1,
                flights: Flights::default(),
                lock_lease: self.lock_lease.unwrap_or(Duration::from_secs(30)),
                counters,
                said_no_lock: AtomicBool::new(false),
                refreshing: Default::default(),
                wire: Wire { format, seal },
                backend,
            }),
        })
    }
}

/// Index of `namespace` in [`CORE_SETTINGS`].
const NAMESPACE: usize = 1;

/// Refuses what interop mode cannot serve: a namespace that is not an
/// interop segment, a version (which Python keys do not have), and a
/// backend that prefixes keys (Python's clients would not see the prefix).
fn check_interop(
    backend: &dyn Backend,
    namespace: &str,
    origin: ConfigOrigin,
    version: u32,
) -> Result<()> {
    if let Err(problem) = interop::validate_segment("namespace", namespace) {
        return Err(Error::Config {
            setting: "namespace".into(),
            origin,
            reason: problem.to_string(),
        });
    }
    if version != 0 {
        return Err(Error::Config {
            setting: "version".into(),
            origin: ConfigOrigin::Code,
            reason: format!(
                "version {version} with interop: interop keys have no version, so other languages could not read the entries; leave the version at 0 and change the namespace or operation instead"
            ),
        });
    }
    let prefix = backend.key_prefix();
    if !prefix.is_empty() {
        return Err(Error::Config {
            setting: format!("{}.key_prefix", backend.name()),
            origin: ConfigOrigin::Code,
            reason: format!(
                "interop mode cannot be used with a key-prefixing backend ({} has key_prefix {prefix:?}): the prefix would be invisible to other SDKs and break cross-SDK reads; remove the prefix, or tell services apart by namespace",
                backend.name()
            ),
        });
    }
    Ok(())
}
