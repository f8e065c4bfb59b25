//! Configuration: defaults, every variable, both server-list forms, bad
//! values and validation; selection by the environment.

use std::time::Duration;

use cachekit_core::ConfigSource;
use cachekit_core::{Cache, ConfigOrigin, Error};
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig, SETTINGS};

fn from_vars(vars: &[(&str, &str)]) -> cachekit_core::Result<MemcachedBackendConfig> {
    let source = ConfigSource::from_parts(None, vars.iter().map(|(k, v)| (*k, *v)))?;
    MemcachedBackendConfig::from_source(&source)
}

fn config_error(
    result: cachekit_core::Result<MemcachedBackendConfig>,
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
    let config = MemcachedBackendConfig::default();
    assert_eq!(config.servers, ["127.0.0.1:11211"]);
    assert_eq!(config.connect_timeout, Duration::from_secs(2));
    assert_eq!(config.timeout, Duration::from_secs(1));
    assert_eq!(config.max_pool_size, 10);
    assert_eq!(config.retry_attempts, 2);
    assert_eq!(config.key_prefix, "");
    assert_eq!(config.max_item_size, 1 << 20);
    assert_eq!(config.dead_time, Duration::from_secs(30));
    assert!(!config.tls);
    assert_eq!(config.tls_ca_file, None);
    assert_eq!(config.tls_cert_file, None);
    assert_eq!(config.tls_key_file, None);
    assert_eq!(config.tls_server_name, None);
    assert!(!config.tls_danger_accept_invalid_certs);
    assert_eq!(from_vars(&[]).unwrap(), config, "nothing set: the defaults");
    // Needs no server.
    MemcachedBackend::new(config).unwrap();
}

#[test]
fn every_variable_sets_its_field() {
    let config = from_vars(&[
        (
            "CACHEKIT_MEMCACHED_SERVERS",
            r#"["mc1:11211", "mc2:11211"]"#,
        ),
        ("CACHEKIT_MEMCACHED_CONNECT_TIMEOUT", "0.25"),
        ("CACHEKIT_MEMCACHED_TIMEOUT", "1.5"),
        ("CACHEKIT_MEMCACHED_MAX_POOL_SIZE", "20"),
        ("CACHEKIT_MEMCACHED_RETRY_ATTEMPTS", "5"),
        ("CACHEKIT_MEMCACHED_KEY_PREFIX", "myapp:"),
        ("CACHEKIT_MEMCACHED_MAX_ITEM_SIZE", "2097152"),
        ("CACHEKIT_MEMCACHED_DEAD_TIME", "3"),
        ("CACHEKIT_MEMCACHED_EJECT_AFTER", "4"),
        ("CACHEKIT_MEMCACHED_TLS", "true"),
        ("CACHEKIT_MEMCACHED_TLS_CA_FILE", "/etc/mc/ca.pem"),
        ("CACHEKIT_MEMCACHED_TLS_CERT_FILE", "/etc/mc/client.pem"),
        ("CACHEKIT_MEMCACHED_TLS_KEY_FILE", "/etc/mc/client-key.pem"),
        ("CACHEKIT_MEMCACHED_TLS_SERVER_NAME", "mc.internal"),
        ("CACHEKIT_MEMCACHED_TLS_DANGER_ACCEPT_INVALID_CERTS", "true"),
    ])
    .unwrap();
    assert_eq!(
        config,
        MemcachedBackendConfig {
            servers: vec!["mc1:11211".into(), "mc2:11211".into()],
            connect_timeout: Duration::from_millis(250),
            timeout: Duration::from_millis(1500),
            max_pool_size: 20,
            retry_attempts: 5,
            eject_after: 4,
            key_prefix: "myapp:".into(),
            max_item_size: 2 << 20,
            dead_time: Duration::from_secs(3),
            tls: true,
            tls_ca_file: Some("/etc/mc/ca.pem".into()),
            tls_cert_file: Some("/etc/mc/client.pem".into()),
            tls_key_file: Some("/etc/mc/client-key.pem".into()),
            tls_server_name: Some("mc.internal".into()),
            tls_danger_accept_invalid_certs: true,
        }
    );
    let declared: Vec<&str> = SETTINGS.iter().map(|s| s.env).collect();
    assert_eq!(
        declared.len(),
        15,
        "a new setting needs a line in this test: {declared:?}"
    );
}

#[test]
fn server_list_takes_json_or_commas() {
    for text in [
        r#"["mc1:11211","mc2:11211"]"#,
        "mc1:11211,mc2:11211",
        " mc1:11211 , mc2:11211 ",
    ] {
        let config = from_vars(&[("CACHEKIT_MEMCACHED_SERVERS", text)]).unwrap();
        assert_eq!(config.servers, ["mc1:11211", "mc2:11211"], "{text:?}");
    }
    let single = from_vars(&[("CACHEKIT_MEMCACHED_SERVERS", "mc1:11211")]).unwrap();
    assert_eq!(single.servers, ["mc1:11211"]);
}

#[test]
fn bad_values_name_the_setting_the_variable_and_the_value() {
    let cases = [
        ("CACHEKIT_MEMCACHED_TIMEOUT", "soon", "memcached.timeout"),
        ("CACHEKIT_MEMCACHED_TIMEOUT", "-1", "memcached.timeout"),
        ("CACHEKIT_MEMCACHED_TIMEOUT", "0", "memcached.timeout"),
        (
            "CACHEKIT_MEMCACHED_CONNECT_TIMEOUT",
            "fast",
            "memcached.connect_timeout",
        ),
        (
            "CACHEKIT_MEMCACHED_MAX_POOL_SIZE",
            "0",
            "memcached.max_pool_size",
        ),
        (
            "CACHEKIT_MEMCACHED_MAX_POOL_SIZE",
            "many",
            "memcached.max_pool_size",
        ),
        (
            "CACHEKIT_MEMCACHED_RETRY_ATTEMPTS",
            "-2",
            "memcached.retry_attempts",
        ),
        (
            "CACHEKIT_MEMCACHED_MAX_ITEM_SIZE",
            "1MB",
            "memcached.max_item_size",
        ),
        (
            "CACHEKIT_MEMCACHED_SERVERS",
            r#"["mc1"]"#,
            "memcached.servers",
        ),
        ("CACHEKIT_MEMCACHED_SERVERS", "mc1:0", "memcached.servers"),
        (
            "CACHEKIT_MEMCACHED_SERVERS",
            "mc1:70000",
            "memcached.servers",
        ),
        (
            "CACHEKIT_MEMCACHED_SERVERS",
            r#"["mc1:11211""#,
            "memcached.servers",
        ),
        (
            "CACHEKIT_MEMCACHED_KEY_PREFIX",
            "my app",
            "memcached.key_prefix",
        ),
        // Out of range: these panicked, allocated without bound or never ejected.
        (
            "CACHEKIT_MEMCACHED_MAX_POOL_SIZE",
            "18446744073709551615",
            "memcached.max_pool_size",
        ),
        (
            "CACHEKIT_MEMCACHED_MAX_POOL_SIZE",
            "1000000",
            "memcached.max_pool_size",
        ),
        (
            "CACHEKIT_MEMCACHED_RETRY_ATTEMPTS",
            "4294967295",
            "memcached.retry_attempts",
        ),
        ("CACHEKIT_MEMCACHED_TIMEOUT", "1e30", "memcached.timeout"),
        ("CACHEKIT_MEMCACHED_DEAD_TIME", "inf", "memcached.dead_time"),
        (
            "CACHEKIT_MEMCACHED_MAX_ITEM_SIZE",
            "100",
            "memcached.max_item_size",
        ),
        // Set to nothing is not unset.
        ("CACHEKIT_MEMCACHED_SERVERS", "", "memcached.servers"),
        ("CACHEKIT_MEMCACHED_TIMEOUT", " ", "memcached.timeout"),
    ];
    for (var, value, setting) in cases {
        let (named, origin, reason) = config_error(from_vars(&[(var, value)]));
        assert_eq!(named, setting, "{var}={value}: {reason}");
        assert_eq!(origin, ConfigOrigin::Env(var.into()), "{var}={value}");
        // The value as written (a server list's reason quotes the bad server).
        if !value.trim().is_empty() && var != "CACHEKIT_MEMCACHED_SERVERS" {
            assert!(reason.contains(value), "{var}={value}: {reason}");
        }
        let message = Error::Config {
            setting: named,
            origin,
            reason,
        }
        .to_string();
        assert!(message.contains(var), "{message}");
    }
}

#[test]
fn a_bad_setting_is_an_error_everywhere_it_is_read_never_a_panic() {
    let vars = [("CACHEKIT_MEMCACHED_MAX_POOL_SIZE", "18446744073709551615")];
    let source = || ConfigSource::from_parts(None, vars).unwrap();
    assert!(matches!(
        MemcachedBackend::from_config(&source()),
        Err(Error::Config { .. })
    ));
    let built = Cache::builder()
        .config(
            ConfigSource::from_parts(None, [("CACHEKIT_BACKEND", "memcached"), vars[0]]).unwrap(),
        )
        .build();
    assert!(matches!(built, Err(Error::Config { .. })), "{built:?}");
    // An empty server list does not fall back to memory.
    let empty = ConfigSource::from_parts(None, [("CACHEKIT_MEMCACHED_SERVERS", "")]).unwrap();
    let built = Cache::builder().config(empty).build();
    match built {
        Err(Error::Config {
            setting, origin, ..
        }) => {
            assert_eq!(setting, "memcached.servers");
            assert_eq!(
                origin,
                ConfigOrigin::Env("CACHEKIT_MEMCACHED_SERVERS".into())
            );
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn validation_names_the_field() {
    type Breaker = fn(&mut MemcachedBackendConfig);
    let cases: [(Breaker, &str); 16] = [
        (|c| c.servers.clear(), "memcached.servers"),
        (
            |c| c.servers = vec!["mc1:11211".into(), "nope".into()],
            "memcached.servers",
        ),
        (|c| c.timeout = Duration::ZERO, "memcached.timeout"),
        (
            |c| c.connect_timeout = Duration::ZERO,
            "memcached.connect_timeout",
        ),
        (|c| c.max_pool_size = 0, "memcached.max_pool_size"),
        (|c| c.max_pool_size = 1_000_000, "memcached.max_pool_size"),
        (|c| c.retry_attempts = u32::MAX, "memcached.retry_attempts"),
        (|c| c.eject_after = 0, "memcached.eject_after"),
        (|c| c.dead_time = Duration::MAX, "memcached.dead_time"),
        (|c| c.max_item_size = 0, "memcached.max_item_size"),
        (|c| c.key_prefix = "x".repeat(200), "memcached.key_prefix"),
        (
            |c| {
                c.tls = true;
                c.tls_cert_file = Some("client.pem".into());
            },
            "memcached.tls_key_file",
        ),
        (
            |c| {
                c.tls = true;
                c.tls_key_file = Some("client-key.pem".into());
            },
            "memcached.tls_cert_file",
        ),
        (
            |c| {
                c.tls = true;
                c.tls_server_name = Some("not a name".into());
            },
            "memcached.tls_server_name",
        ),
        // A TLS setting with TLS off: everything would go in the clear.
        (|c| c.tls_ca_file = Some("ca.pem".into()), "memcached.tls"),
        (
            |c| c.tls_danger_accept_invalid_certs = true,
            "memcached.tls",
        ),
    ];
    for (break_it, field) in cases {
        let mut config = MemcachedBackendConfig::default();
        break_it(&mut config);
        match MemcachedBackend::new(config) {
            Err(Error::Config {
                setting,
                origin: ConfigOrigin::Code,
                ..
            }) => assert_eq!(setting, field),
            other => panic!("{field}: expected a Config error, got {other:?}"),
        }
    }
    let ipv6 = MemcachedBackendConfig {
        servers: vec!["[::1]:11211".into()],
        ..Default::default()
    };
    MemcachedBackend::new(ipv6).unwrap();
}

#[test]
fn servers_variable_alone_selects_memcached() {
    let source =
        ConfigSource::from_parts(None, [("CACHEKIT_MEMCACHED_SERVERS", "127.0.0.1:1")]).unwrap();
    let cache = Cache::builder().config(source).build().unwrap();
    assert_eq!(cache.backend().name(), "memcached");
    let named = ConfigSource::from_parts(None, [("CACHEKIT_BACKEND", "memcached")]).unwrap();
    let cache = Cache::builder().config(named).build().unwrap();
    assert_eq!(cache.backend().name(), "memcached");
    assert_eq!(
        cache.capabilities().max_ttl,
        Some(Duration::from_secs(2_592_000))
    );
}

#[test]
fn setters_build_what_a_literal_builds() {
    let built = MemcachedBackendConfig::default()
        .servers(["mc1:11211", "mc2:11211"])
        .connect_timeout(Duration::from_millis(250))
        .timeout(Duration::from_millis(500))
        .max_pool_size(20)
        .retry_attempts(1)
        .eject_after(3)
        .key_prefix("myapp:")
        .max_item_size(2 << 20)
        .dead_time(Duration::from_secs(5))
        .tls(true)
        .tls_ca_file("ca.pem")
        .tls_cert_file("client.pem")
        .tls_key_file("client-key.pem")
        .tls_server_name("mc.internal")
        .tls_danger_accept_invalid_certs(true);
    assert_eq!(
        built,
        MemcachedBackendConfig {
            servers: vec!["mc1:11211".into(), "mc2:11211".into()],
            connect_timeout: Duration::from_millis(250),
            timeout: Duration::from_millis(500),
            max_pool_size: 20,
            retry_attempts: 1,
            eject_after: 3,
            key_prefix: "myapp:".into(),
            max_item_size: 2 << 20,
            dead_time: Duration::from_secs(5),
            tls: true,
            tls_ca_file: Some("ca.pem".into()),
            tls_cert_file: Some("client.pem".into()),
            tls_key_file: Some("client-key.pem".into()),
            tls_server_name: Some("mc.internal".into()),
            tls_danger_accept_invalid_certs: true,
        }
    );
}

#[test]
fn the_tls_settings_are_read_from_the_config_file_under_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cachekit.toml");
    std::fs::write(
        &file,
        "[memcached]\ntls = true\ntls_ca_file = \"/etc/mc/ca.pem\"\n\
         tls_cert_file = \"/etc/mc/client.pem\"\ntls_key_file = \"/etc/mc/client-key.pem\"\n\
         tls_server_name = \"mc.internal\"\n",
    )
    .unwrap();
    let source = ConfigSource::from_parts(
        Some(&file),
        [("CACHEKIT_MEMCACHED_TLS_SERVER_NAME", "mc.other")],
    )
    .unwrap();
    let config = MemcachedBackendConfig::from_source(&source).unwrap();
    assert!(config.tls);
    assert_eq!(config.tls_ca_file, Some("/etc/mc/ca.pem".into()));
    assert_eq!(config.tls_cert_file, Some("/etc/mc/client.pem".into()));
    assert_eq!(config.tls_key_file, Some("/etc/mc/client-key.pem".into()));
    assert_eq!(
        config.tls_server_name.as_deref(),
        Some("mc.other"),
        "a variable wins over the file"
    );
    assert!(!config.tls_danger_accept_invalid_certs);
}

#[test]
fn a_client_certificate_without_its_key_names_the_missing_setting_and_its_origin() {
    let (setting, origin, reason) = config_error(from_vars(&[
        ("CACHEKIT_MEMCACHED_TLS", "true"),
        ("CACHEKIT_MEMCACHED_TLS_CERT_FILE", "/etc/mc/client.pem"),
    ]));
    assert_eq!(setting, "memcached.tls_key_file");
    assert_eq!(
        origin,
        ConfigOrigin::Default,
        "the missing setting was left at its default"
    );
    assert!(reason.contains("tls_cert_file"), "{reason}");
    let (_, _, reason) = config_error(from_vars(&[("CACHEKIT_MEMCACHED_TLS", "maybe")]));
    assert!(reason.contains("maybe"), "{reason}");
    // A CA file with TLS off would mean plaintext: refused, on `tls`.
    let (setting, origin, reason) = config_error(from_vars(&[(
        "CACHEKIT_MEMCACHED_TLS_CA_FILE",
        "/etc/mc/ca.pem",
    )]));
    assert_eq!(setting, "memcached.tls");
    assert_eq!(origin, ConfigOrigin::Default, "tls was left off");
    assert!(reason.contains("in the clear"), "{reason}");
}

#[test]
fn an_unreadable_tls_file_names_the_variable_that_set_it() {
    let missing = tempfile::tempdir().unwrap().path().join("missing-ca.pem");
    let source = ConfigSource::from_parts(
        None,
        [
            ("CACHEKIT_MEMCACHED_TLS", "true"),
            ("CACHEKIT_MEMCACHED_TLS_CA_FILE", missing.to_str().unwrap()),
        ],
    )
    .unwrap();
    match MemcachedBackend::from_config(&source) {
        Err(Error::Config {
            setting,
            origin,
            reason,
        }) => {
            assert_eq!(setting, "memcached.tls_ca_file");
            assert_eq!(
                origin,
                ConfigOrigin::Env("CACHEKIT_MEMCACHED_TLS_CA_FILE".into())
            );
            assert!(reason.contains("missing-ca.pem"), "{reason}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
