//! Backend resolution: every rung of the priority, ambiguity, unknown names
//! and backends whose cargo feature is off.

use std::io::Write;
use std::sync::Arc;

use cachekit_core::__private::{ResolvedFrom, resolve_with};
use cachekit_core::ConfigSource;
use cachekit_core::backend::BackendFactory;
use cachekit_core::backend::testkit::PlainBackend;
use cachekit_core::{Backend, Cache, ConfigOrigin, Error, MemoryBackend};

static MEMORY: BackendFactory = BackendFactory {
    name: "memory",
    feature: "(always available)",
    selecting_vars: &[],
    build: Some(|_| Ok(Arc::new(MemoryBackend::new()))),
};
/// A compiled-in backend selected by its variable (built on memory, named "plain").
static ALPHA: BackendFactory = BackendFactory {
    name: "alpha",
    feature: "alpha",
    selecting_vars: &["CACHEKIT_ALPHA_SERVERS"],
    build: Some(|_| Ok(Arc::new(PlainBackend(MemoryBackend::new())))),
};
/// A backend whose feature is off, with a cachekit variable and a generic one.
static BETA: BackendFactory = BackendFactory {
    name: "beta",
    feature: "beta",
    selecting_vars: &["CACHEKIT_BETA_URL", "BETA_URL"],
    build: None,
};

fn factories() -> Vec<&'static BackendFactory> {
    vec![&MEMORY, &ALPHA, &BETA]
}

fn env(vars: &[(&str, &str)]) -> ConfigSource {
    ConfigSource::from_parts(None, vars.iter().map(|(k, v)| (*k, *v))).unwrap()
}

fn plain() -> Arc<dyn Backend> {
    Arc::new(PlainBackend(MemoryBackend::new()))
}

#[test]
fn explicit_beats_default_beats_environment() {
    let config = env(&[("CACHEKIT_BACKEND", "alpha")]);
    let explicit = resolve_with(
        Some(plain()),
        Some(Arc::new(MemoryBackend::new())),
        &config,
        &factories(),
    )
    .unwrap();
    assert_eq!(explicit.from, ResolvedFrom::Explicit);
    assert_eq!(explicit.backend.name(), "plain");
    let default = resolve_with(
        None,
        Some(Arc::new(MemoryBackend::new())),
        &config,
        &factories(),
    )
    .unwrap();
    assert_eq!(default.from, ResolvedFrom::ProcessDefault);
    assert_eq!(default.backend.name(), "memory");
    let configured = resolve_with(None, None, &config, &factories()).unwrap();
    assert_eq!(
        configured.from,
        ResolvedFrom::Configured(ConfigOrigin::Env("CACHEKIT_BACKEND".into()))
    );
    assert_eq!(configured.backend.name(), "plain");
}

#[test]
fn nothing_configured_is_l1_only() {
    let resolved = resolve_with(None, None, &env(&[]), &factories()).unwrap();
    assert_eq!(resolved.from, ResolvedFrom::L1Only);
    assert_eq!(resolved.backend.name(), "memory");
}

#[test]
fn the_one_backend_with_variables_set_is_detected() {
    let resolved = resolve_with(
        None,
        None,
        &env(&[("CACHEKIT_ALPHA_SERVERS", "x")]),
        &factories(),
    )
    .unwrap();
    assert_eq!(
        resolved.from,
        ResolvedFrom::Detected {
            variable: "CACHEKIT_ALPHA_SERVERS"
        }
    );
    assert_eq!(resolved.backend.name(), "plain");
}

#[test]
fn variables_of_two_backends_without_a_choice_are_an_error_naming_both() {
    let config = env(&[("CACHEKIT_ALPHA_SERVERS", "x"), ("CACHEKIT_BETA_URL", "y")]);
    let error = resolve_with(None, None, &config, &factories()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Config { .. }));
    assert!(
        message.contains("CACHEKIT_ALPHA_SERVERS")
            && message.contains("CACHEKIT_BETA_URL")
            && message.contains("CACHEKIT_BACKEND"),
        "{message}"
    );
    // Naming one settles it.
    let chosen = env(&[
        ("CACHEKIT_ALPHA_SERVERS", "x"),
        ("CACHEKIT_BETA_URL", "y"),
        ("CACHEKIT_BACKEND", "alpha"),
    ]);
    assert_eq!(
        resolve_with(None, None, &chosen, &factories())
            .unwrap()
            .backend
            .name(),
        "plain"
    );
}

#[test]
fn backend_whose_feature_is_off_names_the_feature() {
    for config in [
        env(&[("CACHEKIT_BACKEND", "beta")]),
        env(&[("CACHEKIT_BETA_URL", "y")]),
    ] {
        match resolve_with(None, None, &config, &factories()).unwrap_err() {
            Error::Config { origin, reason, .. } => {
                assert!(reason.contains("`beta` feature"), "{reason}");
                assert!(matches!(origin, ConfigOrigin::Env(_)), "{origin:?}");
            }
            other => panic!("expected Config, got {other:?}"),
        }
    }
}

#[test]
fn generic_variable_of_a_disabled_backend_is_ignored() {
    // BETA_URL (like REDIS_URL) often belongs to other code in the process.
    let resolved = resolve_with(None, None, &env(&[("BETA_URL", "y")]), &factories()).unwrap();
    assert_eq!(resolved.from, ResolvedFrom::L1Only);
}

#[test]
fn unknown_backend_name_lists_the_known_ones() {
    let error = resolve_with(
        None,
        None,
        &env(&[("CACHEKIT_BACKEND", "mongo")]),
        &factories(),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("mongo")
            && message.contains("alpha, beta")
            && message.contains("CACHEKIT_BACKEND"),
        "{message}"
    );
}

#[test]
fn backend_named_in_the_file_reports_the_file() {
    let mut toml = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    toml.write_all(b"backend = \"memory\"\n").unwrap();
    let config =
        ConfigSource::from_parts(Some(toml.path()), Vec::<(String, String)>::new()).unwrap();
    let resolved = resolve_with(None, None, &config, &factories()).unwrap();
    assert_eq!(
        resolved.from,
        ResolvedFrom::Configured(ConfigOrigin::File(toml.path().into()))
    );
}

#[tokio::test]
async fn process_default_is_used_by_caches_that_name_no_backend() {
    // The only test in this binary that touches the process default.
    cachekit_core::set_default_backend(plain());
    let cache = Cache::builder()
        .config(env(&[("CACHEKIT_BACKEND", "memory")]))
        .build()
        .unwrap();
    assert_eq!(cache.backend().name(), "plain");
    cachekit_core::clear_default_backend();
    let cache = Cache::builder().config(env(&[])).build().unwrap();
    assert_eq!(cache.backend().name(), "memory", "L1-only after clearing");
    cache.set("k", &1u8, None).await.unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    assert_eq!(
        cache.stats().l1_hits,
        0,
        "L1-only mode keeps one in-process copy, not two"
    );
}

#[test]
fn a_selecting_variable_set_to_nothing_selects_its_backend_not_memory() {
    // Selected, the backend then reads its (empty) settings: built on memory
    // here, memcached's own test sees its error name `memcached.servers`.
    let resolved = resolve_with(
        None,
        None,
        &env(&[("CACHEKIT_ALPHA_SERVERS", "")]),
        &factories(),
    )
    .unwrap();
    assert_eq!(
        resolved.from,
        ResolvedFrom::Detected {
            variable: "CACHEKIT_ALPHA_SERVERS"
        }
    );
    let error =
        resolve_with(None, None, &env(&[("CACHEKIT_BETA_URL", "")]), &factories()).unwrap_err();
    assert!(
        matches!(&error, Error::Config { origin, .. } if *origin == ConfigOrigin::Env("CACHEKIT_BETA_URL".into())),
        "{error:?}"
    );
    // A generic variable of a backend not compiled in belongs to other code.
    let resolved = resolve_with(None, None, &env(&[("BETA_URL", "")]), &factories()).unwrap();
    assert_eq!(resolved.from, ResolvedFrom::L1Only);
}

#[test]
fn require_shared_refuses_a_process_local_backend_from_configuration() {
    for vars in [
        vec![("CACHEKIT_REQUIRE_SHARED", "true")],
        vec![
            ("CACHEKIT_REQUIRE_SHARED", "true"),
            ("CACHEKIT_BACKEND", "memory"),
        ],
    ] {
        let error = resolve_with(None, None, &env(&vars), &factories()).unwrap_err();
        match error {
            Error::Config {
                setting,
                origin,
                reason,
            } => {
                assert_eq!(setting, "require_shared");
                assert_eq!(origin, ConfigOrigin::Env("CACHEKIT_REQUIRE_SHARED".into()));
                assert!(reason.contains("memory"), "{reason}");
            }
            other => panic!("{vars:?}: expected Config, got {other:?}"),
        }
    }
    // Named in code, a process-local backend is a choice, not an accident.
    let config = env(&[("CACHEKIT_REQUIRE_SHARED", "true")]);
    let explicit = resolve_with(Some(plain()), None, &config, &factories()).unwrap();
    assert_eq!(explicit.from, ResolvedFrom::Explicit);
}
