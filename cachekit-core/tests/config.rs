//! Config layering (defaults < file < environment), every variable name, and
//! errors that name the setting and where its value came from.

use std::io::Write;
use std::time::Duration;

use cachekit_core::__private::CoreSettings;
use cachekit_core::ConfigSource;
use cachekit_core::ReliabilityConfig;
use cachekit_core::backend::CORE_SETTINGS;
use cachekit_core::backend::RELIABILITY_SETTINGS;
use cachekit_core::backend::SettingKind;
use cachekit_core::{ConfigOrigin, Error, L1Config};

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

fn env(vars: &[(&str, &str)]) -> ConfigSource {
    ConfigSource::from_parts(None, vars.iter().map(|(k, v)| (*k, *v))).unwrap()
}

#[test]
fn defaults_match_the_declarations() {
    let settings: CoreSettings = ConfigSource::defaults_only()
        .extract(None, CORE_SETTINGS)
        .unwrap();
    assert_eq!(settings, CoreSettings::default());
    let defaults = figment::Figment::from(figment::providers::Serialized::defaults(
        CoreSettings::default(),
    ));
    for setting in CORE_SETTINGS {
        let declared: figment::value::Value = setting.default.parse().unwrap();
        let actual = defaults.find_value(setting.key).unwrap();
        let same = match (
            declared.to_num().and_then(|n| n.to_f64()),
            actual.to_num().and_then(|n| n.to_f64()),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => declared.as_str() == actual.as_str(),
        };
        assert!(
            same,
            "{}: declared default {:?} but the code defaults to {actual:?}",
            setting.key, setting.default
        );
    }
}

#[test]
fn every_variable_sets_exactly_its_declared_key() {
    for setting in CORE_SETTINGS {
        let sample = match setting.kind {
            SettingKind::Text => "some_value-1",
            SettingKind::Integer { max, .. } if max < 12345 => "42",
            SettingKind::Integer { .. } => "12345",
            SettingKind::Seconds { .. } => "7.5",
            SettingKind::Bool => "true",
            SettingKind::List => "[\"a\"]",
            SettingKind::Secret => "00",
        };
        let source = env(&[(setting.env, sample)]);
        let settings: CoreSettings = source.extract(None, CORE_SETTINGS).unwrap();
        let mut expected = CoreSettings::default();
        match setting.key {
            "backend" => expected.backend = sample.into(),
            "namespace" => expected.namespace = sample.into(),
            "default_ttl" => expected.default_ttl = Duration::from_secs_f64(7.5),
            "l1_max_entries" => expected.l1_max_entries = 12345,
            "l1_max_bytes" => expected.l1_max_bytes = 12345,
            "l1_ttl" => expected.l1_ttl = Duration::from_secs_f64(7.5),
            "require_shared" => expected.require_shared = true,
            "ttl_jitter" => expected.ttl_jitter = 42,
            other => panic!("setting {other} has no case in this test: add one"),
        }
        assert_eq!(
            settings, expected,
            "{} must set {}",
            setting.env, setting.key
        );
        assert_eq!(
            source.origin(setting),
            ConfigOrigin::Env(setting.env.into())
        );
    }
}

#[test]
fn text_variables_are_taken_verbatim() {
    let settings: CoreSettings = env(&[("CACHEKIT_NAMESPACE", "123")])
        .extract(None, CORE_SETTINGS)
        .unwrap();
    assert_eq!(
        settings.namespace, "123",
        "a numeric-looking namespace stays text"
    );
}

#[test]
fn file_overrides_defaults_and_environment_overrides_file() {
    let toml = file("namespace = \"from-file\"\ndefault_ttl = 10\nl1_ttl = 5\n");
    let source =
        ConfigSource::from_parts(Some(toml.path()), [("CACHEKIT_DEFAULT_TTL", "20")]).unwrap();
    let settings: CoreSettings = source.extract(None, CORE_SETTINGS).unwrap();
    assert_eq!(settings.namespace, "from-file");
    assert_eq!(
        settings.default_ttl,
        Duration::from_secs(20),
        "env beats file"
    );
    assert_eq!(
        settings.l1_ttl,
        Duration::from_secs(5),
        "file beats default"
    );
    assert_eq!(
        settings.l1_max_entries, 10_000,
        "default when neither sets it"
    );
    let by_key = |key: &str| CORE_SETTINGS.iter().find(|s| s.key == key).unwrap();
    assert_eq!(
        source.origin(by_key("namespace")),
        ConfigOrigin::File(toml.path().into())
    );
    assert_eq!(
        source.origin(by_key("default_ttl")),
        ConfigOrigin::Env("CACHEKIT_DEFAULT_TTL".into())
    );
    assert_eq!(source.origin(by_key("l1_max_bytes")), ConfigOrigin::Default);
}

#[test]
fn bad_environment_value_names_the_setting_the_variable_and_the_value() {
    let error = env(&[("CACHEKIT_L1_MAX_ENTRIES", "lots")])
        .extract::<CoreSettings>(None, CORE_SETTINGS)
        .unwrap_err();
    match &error {
        Error::Config {
            setting,
            origin,
            reason,
        } => {
            assert_eq!(setting, "l1_max_entries");
            assert_eq!(origin, &ConfigOrigin::Env("CACHEKIT_L1_MAX_ENTRIES".into()));
            assert!(reason.contains("lots"), "{reason}");
        }
        other => panic!("expected Config, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("CACHEKIT_L1_MAX_ENTRIES") && message.contains("l1_max_entries"),
        "{message}"
    );
}

#[test]
fn bad_file_value_names_the_file() {
    let toml = file("l1_ttl = -1.0\n");
    let source =
        ConfigSource::from_parts(Some(toml.path()), Vec::<(String, String)>::new()).unwrap();
    match source
        .extract::<CoreSettings>(None, CORE_SETTINGS)
        .unwrap_err()
    {
        Error::Config {
            setting,
            origin,
            reason,
        } => {
            assert_eq!(setting, "l1_ttl");
            assert_eq!(origin, ConfigOrigin::File(toml.path().into()));
            assert!(reason.contains("must be from 0 to 86400"), "{reason}");
            assert!(reason.contains("-1"), "{reason}");
        }
        other => panic!("expected Config, got {other:?}"),
    }
}

#[test]
fn missing_config_file_is_an_error() {
    let error = ConfigSource::from_parts(Some("/nonexistent/cachekit.toml".as_ref()), [("A", "B")])
        .unwrap_err();
    assert!(
        matches!(&error, Error::Config { setting, .. } if setting == "config file"),
        "{error:?}"
    );
    assert!(error.to_string().contains("/nonexistent/cachekit.toml"));
}

#[test]
fn a_variable_set_to_nothing_is_an_error_not_the_default() {
    for (var, setting) in [
        ("CACHEKIT_NAMESPACE", "namespace"),
        ("CACHEKIT_L1_TTL", "l1_ttl"),
        ("CACHEKIT_DEFAULT_TTL", "default_ttl"),
        ("CACHEKIT_REQUIRE_SHARED", "require_shared"),
    ] {
        for empty in ["", "  "] {
            let error = env(&[(var, empty)])
                .extract::<CoreSettings>(None, CORE_SETTINGS)
                .unwrap_err();
            match &error {
                Error::Config {
                    setting: named,
                    origin,
                    reason,
                } => {
                    assert_eq!(named, setting);
                    assert_eq!(origin, &ConfigOrigin::Env(var.into()));
                    assert!(reason.contains("set but empty"), "{reason}");
                }
                other => panic!("{var}: expected Config, got {other:?}"),
            }
        }
    }
    // Even a setting whose default is empty: unset it to mean the default.
    let (setting, origin, _) = config_error(&env(&[("CACHEKIT_BACKEND", "")]));
    assert_eq!(setting, "backend");
    assert_eq!(origin, ConfigOrigin::Env("CACHEKIT_BACKEND".into()));
}

/// `source`'s error for the core settings: setting, origin and reason.
fn config_error(source: &ConfigSource) -> (String, ConfigOrigin, String) {
    match source.extract::<CoreSettings>(None, CORE_SETTINGS) {
        Err(Error::Config {
            setting,
            origin,
            reason,
        }) => (setting, origin, reason),
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn numbers_out_of_range_name_the_setting_the_source_and_the_value() {
    for (var, value) in [
        ("CACHEKIT_L1_MAX_ENTRIES", "18446744073709551615"),
        ("CACHEKIT_L1_MAX_BYTES", "18446744073709551615"),
        ("CACHEKIT_L1_MAX_ENTRIES", "-1"),
        ("CACHEKIT_DEFAULT_TTL", "1e30"),
        ("CACHEKIT_L1_TTL", "inf"),
        ("CACHEKIT_DEFAULT_TTL", "NaN"),
        ("CACHEKIT_L1_TTL", "-0.5"),
        ("CACHEKIT_TTL_JITTER", "51"),
    ] {
        let (setting, origin, reason) = config_error(&env(&[(var, value)]));
        let declared = CORE_SETTINGS.iter().find(|s| s.env == var).unwrap();
        assert_eq!(setting, declared.key);
        assert_eq!(origin, ConfigOrigin::Env(var.into()));
        assert!(reason.contains("must be from"), "{var}={value}: {reason}");
        assert!(reason.contains(value), "{var}={value}: {reason}");
    }
    let toml = file("l1_max_entries = 1000000000000\n");
    let source =
        ConfigSource::from_parts(Some(toml.path()), Vec::<(String, String)>::new()).unwrap();
    let (setting, origin, reason) = config_error(&source);
    assert_eq!(setting, "l1_max_entries");
    assert_eq!(origin, ConfigOrigin::File(toml.path().into()));
    assert!(reason.contains("1000000000000"), "{reason}");
}

#[test]
fn seconds_may_be_written_with_an_exponent() {
    let settings: CoreSettings = env(&[("CACHEKIT_L1_TTL", "2.5e-1")])
        .extract(None, CORE_SETTINGS)
        .unwrap();
    assert_eq!(settings.l1_ttl, Duration::from_millis(250));
    for (var, value, expected) in [
        ("CACHEKIT_L1_MAX_ENTRIES", "12.5", "whole number"),
        ("CACHEKIT_REQUIRE_SHARED", "maybe", "true or false"),
        ("CACHEKIT_L1_TTL", "soon", "number of seconds"),
    ] {
        let (_, origin, reason) = config_error(&env(&[(var, value)]));
        assert_eq!(origin, ConfigOrigin::Env(var.into()));
        assert!(
            reason.contains(expected) && reason.contains(value),
            "{reason}"
        );
    }
}

#[test]
fn every_default_is_within_its_declared_range() {
    for setting in CORE_SETTINGS {
        let number = setting.default.parse::<f64>();
        if let Ok(number) = number {
            assert!(setting.check(number).is_ok(), "{}", setting.key);
        }
    }
}

#[test]
fn reliability_settings_come_from_their_section_and_variables() {
    let toml = file("[reliability]\nfailure_threshold = 7\ncool_down = 0.5\n");
    let source = ConfigSource::from_parts(
        Some(toml.path()),
        [
            ("CACHEKIT_RELIABILITY_RETRIES", "0"),
            ("CACHEKIT_RELIABILITY_TIMEOUT", "1e-1"),
        ],
    )
    .unwrap();
    let config: ReliabilityConfig = source
        .extract(Some("reliability"), RELIABILITY_SETTINGS)
        .unwrap();
    assert_eq!(
        config,
        ReliabilityConfig {
            failure_threshold: 7,
            cool_down: Duration::from_millis(500),
            retries: 0,
            timeout: Duration::from_millis(100),
            ..ReliabilityConfig::default()
        }
    );
    let (setting, origin, _) = match env(&[("CACHEKIT_RELIABILITY_PROBES", "0")])
        .extract::<ReliabilityConfig>(Some("reliability"), RELIABILITY_SETTINGS)
    {
        Err(Error::Config {
            setting,
            origin,
            reason,
        }) => (setting, origin, reason),
        other => panic!("expected a Config error, got {other:?}"),
    };
    assert_eq!(setting, "reliability.probes");
    assert_eq!(
        origin,
        ConfigOrigin::Env("CACHEKIT_RELIABILITY_PROBES".into())
    );
    // The variable's name outside the section sets it too.
    let config: ReliabilityConfig = env(&[("CACHEKIT_OPERATION_TIMEOUT", "0.25")])
        .extract(Some("reliability"), RELIABILITY_SETTINGS)
        .unwrap();
    assert_eq!(config.timeout, Duration::from_millis(250));
    for setting in RELIABILITY_SETTINGS {
        if let Ok(number) = setting.default.parse::<f64>() {
            assert!(setting.check(number).is_ok(), "{}", setting.key);
        }
    }
}

#[test]
fn config_structs_have_a_setter_per_field() {
    let reliability = ReliabilityConfig::default()
        .timeout(Duration::from_millis(100))
        .retries(1)
        .retry_backoff(Duration::from_millis(2))
        .failure_threshold(3)
        .cool_down(Duration::from_secs(1))
        .probes(2);
    assert_eq!(
        reliability,
        ReliabilityConfig {
            timeout: Duration::from_millis(100),
            retries: 1,
            retry_backoff: Duration::from_millis(2),
            failure_threshold: 3,
            cool_down: Duration::from_secs(1),
            probes: 2,
        }
    );
    let l1 = L1Config::default()
        .max_entries(5)
        .max_bytes(1 << 10)
        .max_ttl(Duration::from_secs(3));
    assert_eq!(
        l1,
        L1Config {
            max_entries: 5,
            max_bytes: 1 << 10,
            max_ttl: Duration::from_secs(3),
        }
    );
}

#[test]
fn secrets_never_appear_in_debug_or_error_text() {
    let source = env(&[
        ("CACHEKIT_REDIS_URL", "redis://app:s3cret@cache:6379"),
        ("CACHEKIT_L1_TTL", "redis://app:s3cret@cache:6379"),
    ]);
    let shown = format!("{source:?}");
    assert!(shown.contains("CACHEKIT_REDIS_URL"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let error = source
        .extract::<CoreSettings>(None, CORE_SETTINGS)
        .expect_err("a URL is no number of seconds");
    let text = error.to_string();
    assert!(text.contains("redis://app:***@cache:6379"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{error:?}").contains("s3cret"));
}
