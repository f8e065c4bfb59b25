//! `FileBackendConfig`: the settings, their defaults, variables and validation.

use std::path::PathBuf;
use std::time::Duration;

use cachekit_core::backend::{ConfigSource, Setting, SettingKind, seconds};
use cachekit_core::{ConfigOrigin, Error, Result};
use serde::{Deserialize, Serialize};

/// The file backend's settings: the `[file]` section of `cachekit.toml`
/// and the `CACHEKIT_FILE_*` variables.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "file.cache_dir",
        env: "CACHEKIT_FILE_CACHE_DIR",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"<the user's cache directory>/cachekit\"",
        description: "Directory of the entries, created 0700 if missing: the user's cache directory ($XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS) + cachekit, else <temp dir>/cachekit-<uid>. Never a symbolic link.",
    },
    Setting {
        key: "file.max_size",
        env: "CACHEKIT_FILE_MAX_SIZE",
        env_aliases: &[],
        kind: SettingKind::Integer {
            min: 1,
            max: 1 << 50,
        },
        default: "1073741824",
        description: "Bytes the entries may take on disk (headers included) before the least recently used are evicted. Also bounds a value, when lower than max_value_size.",
    },
    Setting {
        key: "file.max_value_size",
        env: "CACHEKIT_FILE_MAX_VALUE_SIZE",
        env_aliases: &[],
        kind: SettingKind::Integer {
            min: 1,
            max: 1 << 40,
        },
        default: "104857600",
        description: "Largest value in bytes; a larger one (or one larger than max_size) is refused (ValueTooLarge) before anything is written.",
    },
    Setting {
        key: "file.max_entries",
        env: "CACHEKIT_FILE_MAX_ENTRIES",
        env_aliases: &[],
        kind: SettingKind::Integer {
            min: 1,
            max: 1_000_000_000,
        },
        default: "10000",
        description: "Entries kept before the least recently used are evicted.",
    },
    Setting {
        key: "file.lock_timeout",
        env: "CACHEKIT_FILE_LOCK_TIMEOUT",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::from_millis(1),
            max: Duration::from_secs(3600),
        },
        default: "5.0",
        description: "Longest wait, seconds, for the file lock that guards a key's lock record (another process holding it that long is stuck); then the lock operation times out.",
    },
    Setting {
        key: "file.fsync",
        env: "CACHEKIT_FILE_FSYNC",
        env_aliases: &[],
        kind: SettingKind::Bool,
        default: "true",
        description: "Flush each entry to disk before it replaces the old one. Off: a power cut (not a crash of the process) may leave an entry empty or torn, which then reads as a miss.",
    },
];

/// Configuration of a [`FileBackend`](crate::FileBackend). Building one
/// touches nothing; [`FileBackend::new`](crate::FileBackend::new)
/// validates it and opens (or creates) the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileBackendConfig {
    /// Directory of the entries (default: the user's cache directory +
    /// `cachekit`, else `<temp dir>/cachekit-<uid>`). Created with mode
    /// 0700 if missing; refused if it is a symbolic link or belongs to
    /// another user.
    pub cache_dir: PathBuf,
    /// Bytes the entries may take, headers included (default 1 GiB); over
    /// it, the least recently used entries are evicted.
    pub max_size: u64,
    /// Largest value in bytes (default 100 MiB); a larger one, or one
    /// larger than [`max_size`](Self::max_size), is `Error::ValueTooLarge`
    /// before anything is written.
    pub max_value_size: u64,
    /// Entries kept (default 10,000); over it, the least recently used
    /// entries are evicted.
    pub max_entries: u64,
    /// Longest wait for the file lock guarding a key's lock record
    /// (default 5 s).
    #[serde(with = "seconds")]
    pub lock_timeout: Duration,
    /// Whether each entry is flushed to disk before it replaces the old one
    /// (default `true`).
    pub fsync: bool,
}

impl Default for FileBackendConfig {
    fn default() -> Self {
        FileBackendConfig {
            cache_dir: default_cache_dir(),
            max_size: 1 << 30,
            max_value_size: 100 << 20,
            max_entries: 10_000,
            lock_timeout: Duration::from_secs(5),
            fsync: true,
        }
    }
}

/// The user's cache directory + `cachekit`; without one (no home), the
/// temp directory + `cachekit-<uid>`, so that users of one host do not
/// share (or squat) one directory.
fn default_cache_dir() -> PathBuf {
    match dirs::cache_dir() {
        Some(dir) => dir.join("cachekit"),
        None => {
            std::env::temp_dir().join(format!("cachekit-{}", rustix::process::geteuid().as_raw()))
        }
    }
}

/// Builder-style setters, one per field: `FileBackendConfig::default()
/// .cache_dir("/var/cache/myapp").max_entries(50_000)`.
impl FileBackendConfig {
    /// Sets [`cache_dir`](Self::cache_dir).
    pub fn cache_dir(mut self, cache_dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = cache_dir.into();
        self
    }

    /// Sets [`max_size`](Self::max_size).
    pub fn max_size(mut self, max_size: u64) -> Self {
        self.max_size = max_size;
        self
    }

    /// Sets [`max_value_size`](Self::max_value_size).
    pub fn max_value_size(mut self, max_value_size: u64) -> Self {
        self.max_value_size = max_value_size;
        self
    }

    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Sets [`lock_timeout`](Self::lock_timeout).
    pub fn lock_timeout(mut self, lock_timeout: Duration) -> Self {
        self.lock_timeout = lock_timeout;
        self
    }

    /// Sets [`fsync`](Self::fsync).
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }
}

impl FileBackendConfig {
    /// Reads `[file]` and the `CACHEKIT_FILE_*` variables from `source`,
    /// and validates.
    pub fn from_source(source: &ConfigSource) -> Result<Self> {
        let config: Self = source.extract(Some("file"), SETTINGS)?;
        config.validate_with(|field| source.origin(setting(field)))?;
        Ok(config)
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<()> {
        self.validate_with(|_| ConfigOrigin::Code)
    }

    pub(crate) fn validate_with(&self, origin: impl Fn(&str) -> ConfigOrigin) -> Result<()> {
        let fail = |field: &str, reason: String| Error::Config {
            setting: format!("file.{field}"),
            origin: origin(field),
            reason,
        };
        if self.cache_dir.as_os_str().is_empty() {
            return Err(fail(
                "cache_dir",
                "is empty; name a directory, such as /var/cache/myapp".into(),
            ));
        }
        let numbers = [
            ("max_size", self.max_size as f64),
            ("max_value_size", self.max_value_size as f64),
            ("max_entries", self.max_entries as f64),
            ("lock_timeout", self.lock_timeout.as_secs_f64()),
        ];
        for (field, value) in numbers {
            setting(field)
                .check(value)
                .map_err(|reason| fail(field, reason))?;
        }
        Ok(())
    }
}

impl FileBackendConfig {
    /// The largest value accepted: `max_value_size`, or `max_size` when
    /// lower (a larger value could never be kept). A lower `max_size`
    /// alone is then enough to bound values; it is not an error.
    pub(crate) fn value_limit(&self) -> u64 {
        self.max_value_size.min(self.max_size)
    }
}

/// The declaration of `field` (`max_size` for `file.max_size`).
pub(crate) fn setting(field: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key.strip_prefix("file.") == Some(field))
        .expect("every field is declared")
}
