//! Configuration: defaults < `cachekit.toml` (or the file named by
//! `CACHEKIT_CONFIG`) < `CACHEKIT_*` environment variables.
//!
//! Every setting is declared once, as a [`Setting`]: its key in the file, its
//! environment variable, its default and a one-line description. The
//! environment is read through these declarations only, never by splitting
//! variable names on `_` (figment's `Env::split("_")` would turn
//! `CACHEKIT_L1_MAX_ENTRIES` into `l1.max.entries` and lose it silently), so
//! every variable maps to exactly the key it declares. The docs generator
//! reads the same declarations.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::redact::redact_url;
use crate::{ConfigOrigin, Error, Result};

/// The variable that names the config file.
pub(crate) const CONFIG_FILE_VAR: &str = "CACHEKIT_CONFIG";
/// The config file read from the working directory when `CACHEKIT_CONFIG` is unset.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "cachekit.toml";
/// How figment names the environment provider in metadata.
const ENV_PROVIDER: &str = "cachekit environment";

/// One configuration setting, declared once for the loader and the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Dotted key in the config file (`memcached.timeout`).
    pub key: &'static str,
    /// The environment variable that sets it.
    pub env: &'static str,
    /// Other variables that set it when `env` is unset (`REDIS_URL`).
    pub env_aliases: &'static [&'static str],
    /// How the value is written.
    pub kind: SettingKind,
    /// The default, as written in the file (`2.0`, `"cachekit"`).
    pub default: &'static str,
    /// What it does, in one line.
    pub description: &'static str,
}

/// How a setting's value is written, in the file and in its variable, and
/// the values it may take. A value out of range is an [`Error::Config`],
/// whatever its source: a sane bound keeps a typo (or `u64::MAX`) from
/// allocating without limit or overflowing a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// Text, taken verbatim from the variable.
    Text,
    /// A whole number from `min` to `max`.
    Integer {
        /// The least value.
        min: u64,
        /// The greatest value.
        max: u64,
    },
    /// Seconds, a decimal number (`0.5`, `1e-3`), from `min` to `max`.
    Seconds {
        /// The least value.
        min: Duration,
        /// The greatest value.
        max: Duration,
    },
    /// `true` or `false`.
    Bool,
    /// A list: a JSON-style array (`["a", "b"]`).
    List,
    /// Text that is never shown: not in errors, `Debug` output or the docs
    /// (a key).
    Secret,
}

impl Setting {
    /// Checks a value set in code against the declared range: the reason,
    /// naming the bounds and the value, when it is outside.
    pub fn check(&self, value: f64) -> std::result::Result<(), String> {
        let (min, max, unit) = match self.kind {
            SettingKind::Integer { min, max } => (min as f64, max as f64, ""),
            SettingKind::Seconds { min, max } => (min.as_secs_f64(), max.as_secs_f64(), " seconds"),
            SettingKind::Text | SettingKind::Bool | SettingKind::List | SettingKind::Secret => {
                return Ok(());
            }
        };
        if value.is_finite() && (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(format!("must be from {min} to {max}{unit}, found {value}"))
        }
    }
}

/// The core's own settings.
pub const CORE_SETTINGS: &[Setting] = &[
    Setting {
        key: "backend",
        env: "CACHEKIT_BACKEND",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"\"",
        description: "Backend for caches that name none: memory, memcached, redis or file. Empty: the one backend whose variables are set, else in-process memory.",
    },
    Setting {
        key: "namespace",
        env: "CACHEKIT_NAMESPACE",
        env_aliases: &[],
        kind: SettingKind::Text,
        default: "\"cachekit\"",
        description: "Namespace of caches that name none; the first part of every key.",
    },
    Setting {
        key: "default_ttl",
        env: "CACHEKIT_DEFAULT_TTL",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::ZERO,
            max: Duration::from_secs(10 * 365 * 86_400),
        },
        default: "0",
        description: "TTL in seconds for entries stored without one; 0 means no expiry.",
    },
    Setting {
        key: "l1_max_entries",
        env: "CACHEKIT_L1_MAX_ENTRIES",
        env_aliases: &[],
        kind: SettingKind::Integer {
            min: 0,
            max: 100_000_000,
        },
        default: "10000",
        description: "Most entries in the in-process L1 tier of each cache and of each cached function without `l1_capacity`; 0 turns L1 off.",
    },
    Setting {
        key: "l1_max_bytes",
        env: "CACHEKIT_L1_MAX_BYTES",
        env_aliases: &[],
        kind: SettingKind::Integer {
            min: 0,
            max: 1 << 40,
        },
        default: "67108864",
        description: "Most bytes in the in-process L1 tier of each cache and of each cached function.",
    },
    Setting {
        key: "l1_ttl",
        env: "CACHEKIT_L1_TTL",
        env_aliases: &[],
        kind: SettingKind::Seconds {
            min: Duration::ZERO,
            max: Duration::from_secs(86_400),
        },
        default: "60",
        description: "Longest an L1 copy lives, in seconds: bounds staleness after another process changes an entry.",
    },
    Setting {
        key: "require_shared",
        env: "CACHEKIT_REQUIRE_SHARED",
        env_aliases: &[],
        kind: SettingKind::Bool,
        default: "false",
        description: "Refuse a backend that is not shared across processes (in-process memory) unless named in code: for services whose instances must see one cache.",
    },
    // Appended: settings are found by index elsewhere (`resolve`).
    Setting {
        key: "ttl_jitter",
        env: "CACHEKIT_TTL_JITTER",
        env_aliases: &[],
        kind: SettingKind::Integer {
            min: 0,
            max: crate::cache::MAX_TTL_JITTER as u64,
        },
        default: "0",
        description: "Spreads every TTL a cache writes by up to this many percent either way (0 to 50), so that entries written together do not expire together; 0: TTLs as given.",
    },
];

/// The values of [`CORE_SETTINGS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoreSettings {
    /// `backend`.
    pub backend: String,
    /// `namespace`.
    pub namespace: String,
    /// `default_ttl`; zero: no expiry.
    #[serde(with = "seconds")]
    pub default_ttl: Duration,
    /// `l1_max_entries`.
    pub l1_max_entries: usize,
    /// `l1_max_bytes`.
    pub l1_max_bytes: usize,
    /// `l1_ttl`.
    #[serde(with = "seconds")]
    pub l1_ttl: Duration,
    /// `require_shared`.
    pub require_shared: bool,
    /// `ttl_jitter`, in percent.
    pub ttl_jitter: u32,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            backend: String::new(),
            namespace: "cachekit".into(),
            default_ttl: Duration::ZERO,
            l1_max_entries: 10_000,
            l1_max_bytes: 64 << 20,
            l1_ttl: Duration::from_secs(60),
            require_shared: false,
            ttl_jitter: 0,
        }
    }
}

/// Where settings come from: an optional config file and a snapshot of the
/// environment. Backends read their own section from it. Its `Debug` shows
/// the file and the names of the `CACHEKIT_` variables, never a value (the
/// environment holds secrets).
#[derive(Clone)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .vars
            .keys()
            .map(String::as_str)
            .filter(|name| name.starts_with("CACHEKIT_"))
            .collect();
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .field("variables", &names)
            .finish_non_exhaustive()
    }
}

impl ConfigSource {
    /// This process's config: the file named by `CACHEKIT_CONFIG` (which must
    /// exist), else `./cachekit.toml` if present, and the environment.
    pub fn from_process() -> Result<Self> {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let file = match vars.get(CONFIG_FILE_VAR) {
            Some(path) if path.trim().is_empty() => {
                return Err(Error::Config {
                    setting: "config file".into(),
                    origin: ConfigOrigin::Env(CONFIG_FILE_VAR.into()),
                    reason: format!(
                        "{CONFIG_FILE_VAR} is set but empty; unset it to read ./{DEFAULT_CONFIG_FILE} if present, or name a file"
                    ),
                });
            }
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        Self::from_parts(file.as_deref(), vars)
    }

    /// Config from an explicit file (which must exist) and variables; for
    /// tests and for services that keep their settings elsewhere.
    pub fn from_parts<K, V>(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let source = ConfigSource {
            file: file.map(Path::to_path_buf),
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        };
        match &source.file {
            Some(path) if !path.is_file() => {
                let named_by_var = source
                    .var(CONFIG_FILE_VAR)
                    .is_some_and(|v| Path::new(v) == path);
                Err(Error::Config {
                    setting: "config file".into(),
                    origin: if named_by_var {
                        ConfigOrigin::Env(CONFIG_FILE_VAR.into())
                    } else {
                        ConfigOrigin::Code
                    },
                    reason: format!("{} does not exist or is not a file", path.display()),
                })
            }
            _ => Ok(source),
        }
    }

    /// Defaults only: no file, no environment.
    pub fn defaults_only() -> Self {
        ConfigSource {
            file: None,
            vars: BTreeMap::new(),
        }
    }

    /// The config file in use, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The non-empty value of environment variable `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether environment variable `name` is set, but to nothing (or blanks).
    pub(crate) fn is_set_but_empty(&self, name: &str) -> bool {
        self.vars.get(name).is_some_and(|v| v.trim().is_empty())
    }

    /// The value of `setting` from its variable or, failing that, an alias;
    /// with the name of the variable that held it.
    pub fn setting_var(&self, setting: &Setting) -> Option<(&'static str, &str)> {
        std::iter::once(setting.env)
            .chain(setting.env_aliases.iter().copied())
            .find_map(|name| self.var(name).map(|value| (name, value)))
    }

    /// Extracts `T` from the section `section` (`None`: the top level),
    /// layering `T::default()`, the file and the variables of `settings`.
    /// A bad value is an [`Error::Config`] naming the setting, its origin
    /// and the value: a variable set to nothing, a number that does not
    /// parse, or one out of its declared range.
    pub fn extract<T>(&self, section: Option<&str>, settings: &[Setting]) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        self.check_variables(settings)?;
        let figment = self.figment(section, T::default(), settings);
        self.check_ranges(&figment, settings)?;
        let result = match section {
            Some(section) => figment.extract_inner(section),
            None => figment.extract(),
        };
        result.map_err(|error| self.config_error(error, section, settings))
    }

    /// Checks the variables of `settings` before they are layered: each
    /// set one must hold a value of its kind.
    fn check_variables(&self, settings: &[Setting]) -> Result<()> {
        for setting in settings {
            let names = std::iter::once(setting.env).chain(setting.env_aliases.iter().copied());
            for name in names {
                // Set to nothing is not unset: a template that left a value
                // out must not quietly mean the default.
                if self.is_set_but_empty(name) {
                    return Err(Error::Config {
                        setting: setting.key.into(),
                        origin: ConfigOrigin::Env(name.into()),
                        reason: format!(
                            "{name} is set but empty; unset it to use the default ({}), or give a value",
                            setting.default
                        ),
                    });
                }
            }
            let Some((name, raw)) = self.setting_var(setting) else {
                continue;
            };
            if let Err(reason) = parse_variable(setting.kind, raw) {
                return Err(Error::Config {
                    setting: setting.key.into(),
                    origin: ConfigOrigin::Env(name.into()),
                    reason: format!("{reason} (value {:?})", redact_url(raw)),
                });
            }
        }
        Ok(())
    }

    /// Checks every numeric setting against its declared range, whatever
    /// its source. Values of the wrong type are left to the extraction, which
    /// says so.
    fn check_ranges(&self, figment: &Figment, settings: &[Setting]) -> Result<()> {
        for setting in settings {
            let number = figment.find_value(setting.key).ok().and_then(|value| {
                let num = value.to_num()?;
                num.to_f64()
                    .or_else(|| num.to_u128().map(|n| n as f64))
                    .or_else(|| num.to_i128().map(|n| n as f64))
            });
            if let Some(reason) = number.and_then(|number| setting.check(number).err()) {
                let origin = self.origin(setting);
                // The value as written, which a float may not show exactly.
                let reason = match self.setting_var(setting) {
                    Some((_, raw)) if matches!(origin, ConfigOrigin::Env(_)) => {
                        format!("{reason} (value {:?})", redact_url(raw))
                    }
                    _ => reason,
                };
                return Err(Error::Config {
                    setting: setting.key.into(),
                    origin,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Where the value of `setting` comes from.
    pub fn origin(&self, setting: &Setting) -> ConfigOrigin {
        if let Some((name, _)) = self.setting_var(setting) {
            return ConfigOrigin::Env(name.into());
        }
        match &self.file {
            Some(path)
                if Figment::from(Toml::file_exact(path))
                    .find_value(setting.key)
                    .is_ok() =>
            {
                ConfigOrigin::File(path.clone())
            }
            _ => ConfigOrigin::Default,
        }
    }

    fn figment<T: Serialize>(
        &self,
        section: Option<&str>,
        defaults: T,
        settings: &[Setting],
    ) -> Figment {
        let defaults = match section {
            Some(section) => Serialized::defaults(defaults).key(section),
            None => Serialized::defaults(defaults),
        };
        let mut figment = Figment::from(defaults);
        if let Some(path) = &self.file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(DeclaredEnv {
            source: self,
            settings,
        })
    }

    fn config_error(
        &self,
        error: figment::Error,
        section: Option<&str>,
        settings: &[Setting],
    ) -> Error {
        // Figment puts the section of `extract_inner` at either end of the path.
        let inner: Vec<&str> = error
            .path
            .iter()
            .map(String::as_str)
            .filter(|part| Some(*part) != section)
            .collect();
        let key = match section {
            Some(section) => format!("{section}.{}", inner.join(".")),
            None => inner.join("."),
        };
        let setting = settings.iter().find(|s| s.key == key);
        let origin = match (&error.metadata, setting) {
            (Some(meta), Some(setting)) if meta.name == ENV_PROVIDER => self.origin(setting),
            (
                Some(Metadata {
                    source: Some(Source::File(path)),
                    ..
                }),
                _,
            ) => ConfigOrigin::File(path.clone()),
            (_, Some(setting)) => self.origin(setting),
            _ => ConfigOrigin::Default,
        };
        let reason = match (&origin, setting) {
            (_, Some(setting)) if setting.kind == SettingKind::Secret => {
                "not a valid value (not shown: the setting is secret)".to_owned()
            }
            (ConfigOrigin::Env(var), _) => {
                format!(
                    "{} (value {:?})",
                    error.kind,
                    self.var(var).unwrap_or_default()
                )
            }
            _ => without_quoted_lines(&error.kind.to_string()),
        };
        Error::Config {
            setting: setting.map_or(key, |s| s.key.to_owned()),
            origin,
            reason,
        }
    }
}

/// A parser's message without the lines it quotes from the file (TOML's
/// `3 | master_key = 0011...`): the file may hold secrets (a master key, a
/// password in a URL), and the line and column say where to look.
fn without_quoted_lines(message: &str) -> String {
    let quoted = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    let kept: Vec<&str> = message
        .lines()
        .filter(|line| !quoted(line) && !line.trim().is_empty())
        .collect();
    kept.join("; ")
}

/// A figment provider for the variables of declared settings, each mapped to
/// its declared key (never split on `_`).
struct DeclaredEnv<'a> {
    source: &'a ConfigSource,
    settings: &'a [Setting],
}

impl Provider for DeclaredEnv<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_PROVIDER)
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for setting in self.settings {
            let Some((_, raw)) = self.source.setting_var(setting) else {
                continue;
            };
            // Checked by `check_variables`: a value that did not parse is not here.
            let Ok(value) = parse_variable(setting.kind, raw) else {
                continue;
            };
            if let Value::Dict(_, nested) = figment::util::nest(setting.key, value) {
                merge_into(&mut dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// The value of a variable of `kind`: numbers and booleans parsed as such
/// (`1e3` is a number of seconds, not text), text verbatim, a list as an
/// array if written as one (else as text, for the setting to split).
fn parse_variable(kind: SettingKind, raw: &str) -> std::result::Result<Value, String> {
    let trimmed = raw.trim();
    match kind {
        SettingKind::Text | SettingKind::Secret => Ok(Value::from(raw.to_owned())),
        SettingKind::Integer { .. } => {
            if let Ok(n) = trimmed.parse::<u64>() {
                Ok(Value::from(n))
            } else if let Ok(n) = trimmed.parse::<i64>() {
                Ok(Value::from(n))
            } else {
                Err("expected a whole number".into())
            }
        }
        SettingKind::Seconds { .. } => trimmed
            .parse::<f64>()
            .map(Value::from)
            .map_err(|_| "expected a number of seconds (such as 2, 0.5 or 1e-3)".into()),
        SettingKind::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::from(true)),
            "false" | "0" | "no" | "off" => Ok(Value::from(false)),
            _ => Err("expected true or false".into()),
        },
        SettingKind::List => Ok(trimmed
            .parse()
            .expect("parsing a figment value is infallible")),
    }
}

/// Merges `from` into `into`, descending into tables present in both.
fn merge_into(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
                merge_into(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Serde for a [`Duration`] written as seconds (`2`, `0.5`); negative, NaN
/// and infinite values are refused.
pub mod seconds {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `duration` as seconds.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }

    /// Reads seconds into a [`Duration`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            D::Error::custom(format!("expected a number of seconds >= 0, found {secs}"))
        })
    }
}
