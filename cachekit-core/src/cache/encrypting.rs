//! Whether a cache encrypts its entries, and with which keys: the
//! builder's choices over the `[encryption]` settings.
//!
//! As in cachekit-py, a master key with no stated intent is an error:
//! `encryption.enabled` (or the builder, or `#[cache(encrypt)]`) must say
//! whether it is meant, so that a key set for some caches never leaves the
//! others writing plaintext by surprise, nor the reverse.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use super::Seal;
use crate::config::{ConfigSource, Setting, SettingKind};
use crate::encryption::{EncryptionError, Keyring, MasterKey, tenant_of};
use crate::{ConfigOrigin, Error, Result};

/// The settings of encryption at rest, in `[encryption]`. The variables
/// of the master keys and the deployment are cachekit-py's.
pub const ENCRYPTION_SETTINGS: &[Setting] = &[
    Setting {
        key: "encryption.enabled",
        env: "CACHEKIT_ENCRYPTION",
        env_aliases: &["CACHEKIT_ENCRYPT"],
        kind: SettingKind::Bool,
        default: "\"<unset>\"",
        description: "Encrypt the entries of every cache (`true`), or only of those that ask (`false`: `#[cache(encrypt)]`, `CacheBuilder::encrypt`). Must be set when a master key is: a key with no stated intent is an error.",
    },
    Setting {
        key: "encryption.master_key",
        env: "CACHEKIT_MASTER_KEY",
        env_aliases: &[],
        kind: SettingKind::Secret,
        default: "\"<unset>\"",
        description: "The master key, in hex, at least 32 bytes (64 digits): entries are sealed with AES-256-GCM under a key derived from it (HKDF-SHA256).",
    },
    Setting {
        key: "encryption.previous_master_keys",
        env: "CACHEKIT_PREVIOUS_MASTER_KEYS",
        env_aliases: &[],
        kind: SettingKind::Secret,
        default: "\"\"",
        description: "Up to 3 earlier master keys, comma-separated hex, tried in order when the current one does not open an entry (decrypt only): for rotating keys without losing the cache.",
    },
    Setting {
        key: "encryption.deployment_uuid",
        env: "CACHEKIT_DEPLOYMENT_UUID",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"<unset>\"",
        description: "The tenant that keys are derived for and entries bound to, a lowercase hyphenated UUID; unset: `default`, as in cachekit-py.",
    },
    Setting {
        key: "encryption.fail_closed",
        env: "CACHEKIT_ENCRYPTION_FAIL_CLOSED",
        env_aliases: &["CACHEKIT_FAIL_CLOSED"],
        kind: SettingKind::Bool,
        default: "false",
        description: "An entry that does not decrypt (tampered, plaintext, unknown key) is an `Error::Undecryptable` for `Cache::get`, and a backend failure for cached calls (they run uncached and keep the entry), instead of a miss that is overwritten.",
    },
];

/// The values of [`ENCRYPTION_SETTINGS`]. Its `Debug` never shows a key,
/// and the keys' text is wiped when it is dropped.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncryptionSettings {
    /// `encryption.enabled`; `None`: not said.
    pub enabled: Option<bool>,
    /// `encryption.master_key`, in hex.
    pub master_key: Option<Zeroizing<String>>,
    /// `encryption.previous_master_keys`, in hex.
    #[serde(deserialize_with = "key_list")]
    pub previous_master_keys: Vec<Zeroizing<String>>,
    /// `encryption.deployment_uuid`.
    pub deployment_uuid: Option<String>,
    /// `encryption.fail_closed`.
    pub fail_closed: bool,
}

impl fmt::Debug for EncryptionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionSettings")
            .field("enabled", &self.enabled)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("previous_master_keys", &self.previous_master_keys.len())
            .field("deployment_uuid", &self.deployment_uuid)
            .field("fail_closed", &self.fail_closed)
            .finish()
    }
}

/// A list of keys written as comma-separated text (a variable, or a
/// string in the file) or as an array of strings.
fn key_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<Zeroizing<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(Zeroizing<String>),
        List(Vec<Zeroizing<String>>),
    }
    // Trimmed copies, wiped on drop as the originals are.
    let trimmed = |key: &str| Zeroizing::new(key.trim().to_owned());
    let keys: Vec<Zeroizing<String>> = match Written::deserialize(deserializer)? {
        Written::Text(text) => text.split(',').map(trimmed).collect(),
        Written::List(keys) => keys.iter().map(|key| trimmed(key)).collect(),
    };
    Ok(keys.into_iter().filter(|key| !key.is_empty()).collect())
}

/// What a [`CacheBuilder`](super::CacheBuilder) says of encryption; unset
/// parts come from the settings.
#[derive(Default)]
pub(crate) struct Choice {
    pub(crate) enabled: Option<bool>,
    pub(crate) master_key: Option<MasterKey>,
    pub(crate) previous: Option<Vec<MasterKey>>,
    pub(crate) deployment_uuid: Option<String>,
    pub(crate) fail_closed: Option<bool>,
}

impl fmt::Debug for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Choice")
            .field("enabled", &self.enabled)
            .field("master_key", &self.master_key)
            .field("previous", &self.previous.as_ref().map(Vec::len))
            .field("deployment_uuid", &self.deployment_uuid)
            .field("fail_closed", &self.fail_closed)
            .finish()
    }
}

/// Index of each setting in [`ENCRYPTION_SETTINGS`].
const ENABLED: usize = 0;
const MASTER_KEY: usize = 1;
const PREVIOUS: usize = 2;
const DEPLOYMENT: usize = 3;

impl Choice {
    /// The seal of a cache: `None` when it does not encrypt. Every
    /// inconsistency is an [`Error::Config`] naming the setting and its
    /// source, and never showing a key.
    pub(crate) fn seal(self, config: &ConfigSource) -> Result<Option<Seal>> {
        let settings: EncryptionSettings =
            config.extract(Some("encryption"), ENCRYPTION_SETTINGS)?;
        let origin = |index: usize| config.origin(&ENCRYPTION_SETTINGS[index]);
        let error = |index: usize, origin: ConfigOrigin, reason: String| Error::Config {
            setting: ENCRYPTION_SETTINGS[index].key.into(),
            origin,
            reason,
        };
        let (master, master_origin) = match (self.master_key, &settings.master_key) {
            (Some(key), _) => (Some(Ok(key)), ConfigOrigin::Code),
            (None, Some(hex)) => (Some(MasterKey::from_hex(hex)), origin(MASTER_KEY)),
            (None, None) => (None, ConfigOrigin::Default),
        };
        let enabled = match (self.enabled, settings.enabled, &master) {
            (Some(enabled), _, _) | (None, Some(enabled), _) => enabled,
            (None, None, Some(_)) => {
                return Err(error(
                    ENABLED,
                    master_origin,
                    "a master key is set, but nothing says whether to encrypt: set `encryption.enabled` (CACHEKIT_ENCRYPTION) to true to encrypt every cache's entries, or to false to encrypt only those that ask (`#[cache(encrypt)]`, `CacheBuilder::encrypt`)".into(),
                ));
            }
            (None, None, None) => false,
        };
        if !enabled {
            return Ok(None);
        }
        let enabled_origin = match self.enabled {
            Some(_) => ConfigOrigin::Code,
            None => origin(ENABLED),
        };
        let master = match master {
            Some(Ok(key)) => key,
            Some(Err(problem)) => {
                return Err(error(MASTER_KEY, master_origin, problem.to_string()));
            }
            None => {
                return Err(error(
                    MASTER_KEY,
                    enabled_origin,
                    "encryption is on but no master key is set: set CACHEKIT_MASTER_KEY to at least 64 hex digits (32 bytes), such as the output of `openssl rand -hex 32`".into(),
                ));
            }
        };
        let previous = match self.previous {
            Some(keys) => keys,
            None => settings
                .previous_master_keys
                .iter()
                .map(|hex| MasterKey::from_hex(hex))
                .collect::<std::result::Result<_, _>>()
                .map_err(|problem| error(PREVIOUS, origin(PREVIOUS), problem.to_string()))?,
        };
        let (uuid, uuid_origin) = match self.deployment_uuid {
            Some(uuid) => (Some(uuid), ConfigOrigin::Code),
            None => (settings.deployment_uuid, origin(DEPLOYMENT)),
        };
        let tenant = tenant_of(uuid.as_deref())
            .map_err(|problem| error(DEPLOYMENT, uuid_origin, problem.to_string()))?;
        let keyring =
            Keyring::new(&master, &previous, &tenant).map_err(|problem: EncryptionError| {
                error(PREVIOUS, origin(PREVIOUS), problem.to_string())
            })?;
        Ok(Some(Seal {
            keyring,
            fail_closed: self.fail_closed.unwrap_or(settings.fail_closed),
        }))
    }
}
