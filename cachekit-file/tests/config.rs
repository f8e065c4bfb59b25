//! Configuration: defaults, every variable, the `[file]` section, bad
//! values named with their setting and source, and selection by the
//! environment.

use std::path::PathBuf;
use std::time::Duration;

use cachekit_core::{Backend, Cache, ConfigOrigin, ConfigSource, Error};
use cachekit_file::{FileBackend, FileBackendConfig, SETTINGS};

fn from_vars(vars: &[(&str, &str)]) -> cachekit_core::Result<FileBackendConfig> {
    let source = ConfigSource::from_parts(None, vars.iter().map(|(k, v)| (*k, *v)))?;
    FileBackendConfig::from_source(&source)
}

fn config_error<T: std::fmt::Debug>(
    result: cachekit_core::Result<T>,
) -> (String, ConfigOrigin, String) {
    match result {
        Err(Error::Config {
            setting,
            origin,
            reason,
        }) => (setting, origin, reason),
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = FileBackendConfig::default();
    assert!(
        config.cache_dir.ends_with("cachekit")
            || config.cache_dir.to_string_lossy().contains("cachekit-")
    );
    assert_eq!(config.max_size, 1 << 30);
    assert_eq!(config.max_value_size, 100 << 20);
    assert_eq!(config.max_entries, 10_000);
    assert_eq!(config.lock_timeout, Duration::from_secs(5));
    assert!(config.fsync);
    assert_eq!(from_vars(&[]).unwrap(), config, "nothing set: the defaults");
    assert_eq!(SETTINGS.len(), 6);
    assert!(
        SETTINGS
            .iter()
            .all(|s| s.key.starts_with("file.") && s.env.starts_with("CACHEKIT_FILE_"))
    );
}

#[test]
fn every_variable_sets_its_field() {
    let config = from_vars(&[
        ("CACHEKIT_FILE_CACHE_DIR", "/var/cache/myapp"),
        ("CACHEKIT_FILE_MAX_SIZE", "2000000"),
        ("CACHEKIT_FILE_MAX_VALUE_SIZE", "1000"),
        ("CACHEKIT_FILE_MAX_ENTRIES", "77"),
        ("CACHEKIT_FILE_LOCK_TIMEOUT", "0.25"),
        ("CACHEKIT_FILE_FSYNC", "false"),
    ])
    .unwrap();
    assert_eq!(
        config,
        FileBackendConfig::default()
            .cache_dir("/var/cache/myapp")
            .max_size(2_000_000)
            .max_value_size(1000)
            .max_entries(77)
            .lock_timeout(Duration::from_millis(250))
            .fsync(false)
    );
}

#[test]
fn the_file_sets_every_field_and_variables_win() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("cachekit.toml");
    std::fs::write(
        &toml,
        "[file]\ncache_dir = \"/srv/cache\"\nmax_size = 5000000\nmax_value_size = 4000\nmax_entries = 12\nlock_timeout = 2.5\nfsync = false\n",
    )
    .unwrap();
    let source =
        ConfigSource::from_parts(Some(&toml), [("CACHEKIT_FILE_MAX_ENTRIES", "13")]).unwrap();
    let config = FileBackendConfig::from_source(&source).unwrap();
    assert_eq!(config.cache_dir, PathBuf::from("/srv/cache"));
    assert_eq!((config.max_size, config.max_value_size), (5_000_000, 4000));
    assert_eq!(config.max_entries, 13, "the variable wins");
    assert_eq!(config.lock_timeout, Duration::from_millis(2500));
    assert!(!config.fsync);
}

#[test]
fn bad_values_name_the_setting_and_its_source() {
    let (setting, origin, reason) =
        config_error(from_vars(&[("CACHEKIT_FILE_MAX_ENTRIES", "many")]));
    assert_eq!(setting, "file.max_entries");
    assert_eq!(
        origin,
        ConfigOrigin::Env("CACHEKIT_FILE_MAX_ENTRIES".into())
    );
    assert!(reason.contains("many"), "{reason}");
    let (setting, _, _) = config_error(from_vars(&[("CACHEKIT_FILE_MAX_ENTRIES", "0")]));
    assert_eq!(setting, "file.max_entries");
    let (setting, _, reason) = config_error(from_vars(&[("CACHEKIT_FILE_LOCK_TIMEOUT", "-1")]));
    assert_eq!(setting, "file.lock_timeout", "{reason}");
    let (setting, origin, _) = config_error(from_vars(&[("CACHEKIT_FILE_CACHE_DIR", "")]));
    assert_eq!(
        (setting.as_str(), origin),
        (
            "file.cache_dir",
            ConfigOrigin::Env("CACHEKIT_FILE_CACHE_DIR".into())
        )
    );
}

#[test]
fn a_bad_directory_names_cache_dir_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let source =
        ConfigSource::from_parts(None, [("CACHEKIT_FILE_CACHE_DIR", file.to_str().unwrap())])
            .unwrap();
    let (setting, origin, reason) = config_error(FileBackend::from_config(&source));
    assert_eq!(setting, "file.cache_dir");
    assert_eq!(origin, ConfigOrigin::Env("CACHEKIT_FILE_CACHE_DIR".into()));
    assert!(reason.contains("not a directory"), "{reason}");
}

#[test]
fn its_variable_selects_the_file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    let source =
        ConfigSource::from_parts(None, [("CACHEKIT_FILE_CACHE_DIR", path.to_str().unwrap())])
            .unwrap();
    let cache = Cache::builder().config(source).build().unwrap();
    assert_eq!(cache.backend().name(), "file");
    assert!(cache.capabilities().lock && cache.capabilities().persistent);
    assert!(path.join("entries").is_dir());
    let named = ConfigSource::from_parts(
        None,
        [
            ("CACHEKIT_BACKEND", "file"),
            ("CACHEKIT_FILE_CACHE_DIR", path.to_str().unwrap()),
        ],
    )
    .unwrap();
    assert_eq!(
        Cache::builder()
            .config(named)
            .build()
            .unwrap()
            .backend()
            .name(),
        "file"
    );
}

#[test]
fn capabilities_declare_what_the_backend_does() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::new(
        FileBackendConfig::default()
            .cache_dir(dir.path().join("c"))
            .max_value_size(1234),
    )
    .unwrap();
    let caps = backend.capabilities();
    assert!(
        caps.ttl && caps.ttl_inspect && caps.touch && caps.lock && caps.persistent && caps.shared
    );
    assert_eq!(caps.max_ttl, None);
    assert_eq!(caps.max_value_size, Some(1234));
    assert_eq!(backend.name(), "file");
    // A cache smaller than the value limit bounds values itself.
    let small = FileBackend::new(
        FileBackendConfig::default()
            .cache_dir(dir.path().join("s"))
            .max_size(1000),
    )
    .unwrap();
    assert_eq!(small.capabilities().max_value_size, Some(1000));
}
