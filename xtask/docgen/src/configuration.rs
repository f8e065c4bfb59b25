//! `docs/configuration.md`: every setting, from the `Setting` declarations
//! the config loader reads, and a `cachekit.toml` that spells out every
//! default.

use std::fmt::Write;

use cachekit::backend::{
    CORE_SETTINGS, ENCRYPTION_SETTINGS, RELIABILITY_SETTINGS, Setting, SettingKind,
};
use cachekit::backends::{file, memcached, redis};

use crate::markdown::{self, GENERATED, code};

/// Where the page goes.
pub(crate) const PATH: &str = "docs/configuration.md";

/// The groups of settings, each a section of the page: its title (the
/// anchor other pages link to), the `cachekit.toml` table it lives in, what
/// it configures, and its declarations.
pub(crate) const GROUPS: &[Group] = &[
    Group {
        title: "Framework",
        table: None,
        about: "Every cache and cached function: which backend, the namespace, the default TTL and the in-process L1 tier. Top-level keys of `cachekit.toml`.",
        settings: CORE_SETTINGS,
    },
    Group {
        title: "Reliability",
        table: Some("reliability"),
        about: "The layer around every backend: operation timeout, retries and the circuit breaker ([reliability.md](reliability.md)).",
        settings: RELIABILITY_SETTINGS,
    },
    Group {
        title: "Encryption",
        table: Some("encryption"),
        about: "Encryption of entries at rest with AES-256-GCM, compatible with cachekit-py ([interop.md](interop.md#encryption)).",
        settings: ENCRYPTION_SETTINGS,
    },
    Group {
        title: "Memcached",
        table: Some("memcached"),
        about: "The Memcached backend, feature `memcached` ([backends/memcached.md](backends/memcached.md)).",
        settings: memcached::SETTINGS,
    },
    Group {
        title: "Redis",
        table: Some("redis"),
        about: "The Redis backend, feature `redis` ([backends/redis.md](backends/redis.md)).",
        settings: redis::SETTINGS,
    },
    Group {
        title: "File",
        table: Some("file"),
        about: "The file backend, feature `file` ([backends/file.md](backends/file.md)).",
        settings: file::SETTINGS,
    },
];

/// A section of the page.
pub(crate) struct Group {
    /// The section's title.
    pub(crate) title: &'static str,
    /// Its table in `cachekit.toml`; `None` for top-level keys.
    pub(crate) table: Option<&'static str>,
    /// What it configures, one sentence.
    about: &'static str,
    /// Its settings.
    pub(crate) settings: &'static [Setting],
}

/// The page.
pub(crate) fn page() -> String {
    let mut out = format!(
        "{GENERATED}\n\n# Configuration\n\n\
         Every setting of cachekit and of its backends. Each is read, lowest\n\
         priority first, from its default, from `cachekit.toml` in the working\n\
         directory (or the file `CACHEKIT_CONFIG` names, which must exist), and\n\
         from its `CACHEKIT_*` environment variable. A builder setter in code\n\
         takes the place of all three for the cache or backend it builds.\n\n\
         A value of the wrong type or outside its range, and a variable set to\n\
         nothing, are an `Error::Config` naming the setting, where the value\n\
         came from and the value; `cachekit::init()` at startup returns it.\n\
         Seconds are decimal numbers (`0.5`); lists are JSON-style arrays\n\
         (`[\"a:1\", \"b:2\"]`) and, in variables, may also be comma-separated.\n\n"
    );
    for group in GROUPS {
        section(&mut out, group);
    }
    out.push_str(
        "## Every default, as a file\n\n\
         A `cachekit.toml` that sets each setting to its default (commented\n\
         out where the default depends on the machine):\n\n```toml\n",
    );
    out.push_str(&defaults_file());
    out.push_str("```\n");
    out
}

/// One group's section: what it is and its table.
fn section(out: &mut String, group: &Group) {
    let _ = write!(out, "## {}\n\n{}\n\n", group.title, group.about);
    let rows = group.settings.iter().map(|setting| {
        let mut variable = code(setting.env);
        for alias in setting.env_aliases {
            let _ = write!(variable, ", else {}", code(alias));
        }
        vec![
            code(setting.key),
            variable,
            kind(setting.kind),
            code(setting.default),
            setting.description.to_string(),
        ]
    });
    out.push_str(&markdown::table(
        &[
            "key in `cachekit.toml`",
            "variable",
            "type",
            "default",
            "meaning",
        ],
        rows,
    ));
    out.push('\n');
}

/// How a value of `kind` is written, and its range.
fn kind(kind: SettingKind) -> String {
    match kind {
        SettingKind::Text => "text".into(),
        SettingKind::Bool => "`true` or `false`".into(),
        SettingKind::List => "list".into(),
        SettingKind::Secret => "secret text".into(),
        SettingKind::Integer { min, max } => format!("integer, {min} to {max}"),
        SettingKind::Seconds { min, max } => {
            format!("seconds, {} to {}", min.as_secs_f64(), max.as_secs_f64())
        }
    }
}

/// Whether a declared default stands for a value that depends on the
/// machine (`"<the user's cache directory>/cachekit"`) rather than being one.
pub(crate) fn is_placeholder(default: &str) -> bool {
    default.contains('<')
}

/// A `cachekit.toml` with every setting at its declared default.
pub(crate) fn defaults_file() -> String {
    let mut out = String::new();
    for group in GROUPS {
        if let Some(table) = group.table {
            let _ = write!(out, "\n[{table}]\n");
        }
        for setting in group.settings {
            let name = match group.table {
                Some(table) => setting
                    .key
                    .strip_prefix(table)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .unwrap_or_else(|| panic!("{} is not in [{table}]", setting.key)),
                None => setting.key,
            };
            let comment = if is_placeholder(setting.default) {
                "# "
            } else {
                ""
            };
            let _ = writeln!(out, "{comment}{name} = {}", setting.default);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use cachekit::backends::file::FileBackendConfig;
    use cachekit::backends::memcached::MemcachedBackendConfig;
    use cachekit::backends::redis::RedisBackendConfig;
    use cachekit::{ConfigSource, ReliabilityConfig};
    use cachekit_core::__private::{CoreSettings, EncryptionSettings};

    use super::*;

    /// The defaults the page states are the ones the code uses: a file that
    /// sets every setting to its declared default configures exactly what
    /// no file does.
    #[test]
    fn declared_defaults_are_the_defaults() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("cachekit.toml");
        std::fs::write(&path, defaults_file()).expect("write the file");
        let written = ConfigSource::from_parts(Some(&path), [("HOME", "/nonexistent")])
            .expect("the defaults file is a valid config");
        let nothing =
            ConfigSource::from_parts(None, [("HOME", "/nonexistent")]).expect("an empty config");
        for source in [&written, &nothing] {
            assert!(source.var("CACHEKIT_BACKEND").is_none());
        }
        let core = |source: &ConfigSource| -> CoreSettings {
            source.extract(None, CORE_SETTINGS).expect("core settings")
        };
        assert_eq!(core(&written), core(&nothing), "[core]");
        let reliability = |source: &ConfigSource| -> ReliabilityConfig {
            source
                .extract(Some("reliability"), RELIABILITY_SETTINGS)
                .expect("reliability settings")
        };
        assert_eq!(
            reliability(&written),
            reliability(&nothing),
            "[reliability]"
        );
        let encryption = |source: &ConfigSource| -> EncryptionSettings {
            source
                .extract(Some("encryption"), ENCRYPTION_SETTINGS)
                .expect("encryption settings")
        };
        assert!(
            encryption(&written) == encryption(&nothing),
            "[encryption] differs from the defaults"
        );
        assert_eq!(
            MemcachedBackendConfig::from_source(&written).expect("[memcached]"),
            MemcachedBackendConfig::from_source(&nothing).expect("memcached defaults"),
        );
        assert!(
            RedisBackendConfig::from_source(&written).expect("[redis]")
                == RedisBackendConfig::from_source(&nothing).expect("redis defaults"),
            "[redis] differs from the defaults"
        );
        assert_eq!(
            FileBackendConfig::from_source(&written).expect("[file]"),
            FileBackendConfig::from_source(&nothing).expect("file defaults"),
        );
    }

    #[test]
    fn every_group_is_one_table_of_the_file() {
        for group in GROUPS {
            for setting in group.settings {
                let table = setting.key.split_once('.').map(|(table, _)| table);
                assert_eq!(table, group.table, "{} in {}", setting.key, group.title);
            }
        }
    }
}
