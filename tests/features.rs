//! The facade registers every backend whose feature is off, so that selecting
//! one by configuration says which feature to enable. `cargo xtask test` runs
//! this file with `--no-default-features` as well, where all three are off.

use cachekit::ConfigSource;
use cachekit::{Cache, Error};

fn build_with(vars: &[(&str, &str)]) -> cachekit::Result<Cache> {
    let config = ConfigSource::from_parts(None, vars.iter().map(|(k, v)| (*k, *v)))?;
    Cache::builder().config(config).build()
}

#[cfg_attr(
    all(feature = "memcached", feature = "redis", feature = "file"),
    allow(dead_code)
)]
fn assert_names_feature(vars: &[(&str, &str)], feature: &str) {
    match build_with(vars) {
        Err(Error::Config { reason, .. }) => {
            assert!(reason.contains(&format!("`{feature}` feature")), "{reason}");
        }
        other => panic!("{vars:?}: expected a Config error naming the feature, got {other:?}"),
    }
}

#[test]
fn in_process_memory_needs_no_feature() {
    assert_eq!(build_with(&[]).unwrap().backend().name(), "memory");
    assert_eq!(
        build_with(&[("CACHEKIT_BACKEND", "memory")])
            .unwrap()
            .backend()
            .name(),
        "memory"
    );
}

#[cfg(not(feature = "memcached"))]
#[test]
fn memcached_without_its_feature_names_the_feature() {
    assert_names_feature(&[("CACHEKIT_BACKEND", "memcached")], "memcached");
    assert_names_feature(
        &[("CACHEKIT_MEMCACHED_SERVERS", "[\"127.0.0.1:11211\"]")],
        "memcached",
    );
}

#[cfg(not(feature = "redis"))]
#[test]
fn redis_without_its_feature_names_the_feature() {
    assert_names_feature(&[("CACHEKIT_BACKEND", "redis")], "redis");
    assert_names_feature(&[("CACHEKIT_REDIS_URL", "redis://127.0.0.1:6379")], "redis");
    // REDIS_URL alone often belongs to other code: it selects nothing then.
    assert_eq!(
        build_with(&[("REDIS_URL", "redis://127.0.0.1:6379")])
            .unwrap()
            .backend()
            .name(),
        "memory"
    );
}

#[cfg(not(feature = "file"))]
#[test]
fn file_without_its_feature_names_the_feature() {
    assert_names_feature(&[("CACHEKIT_BACKEND", "file")], "file");
    assert_names_feature(&[("CACHEKIT_FILE_CACHE_DIR", "/tmp/cachekit")], "file");
}

#[cfg(feature = "memcached")]
#[test]
fn memcached_is_selected_by_its_variable_through_the_facade() {
    use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
    let cache = build_with(&[("CACHEKIT_MEMCACHED_SERVERS", "[\"127.0.0.1:11211\"]")]).unwrap();
    assert_eq!(cache.backend().name(), MemcachedBackend::NAME);
    MemcachedBackend::new(MemcachedBackendConfig::default())
        .expect("no server needed to build one");
}
