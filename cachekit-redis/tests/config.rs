//! Configuration: defaults, every variable, both node-list forms, the
//! `REDIS_URL` fallback, bad values named with their variable, validation,
//! selection by the environment, and passwords kept out of `Debug` and
//! error text.

use std::time::Duration;

use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::ServerProcess;
use cachekit_core::{Backend, Cache, ConfigOrigin, ConfigSource, Error};
use cachekit_redis::{RedisBackend, RedisBackendConfig, SETTINGS};

fn from_vars(vars: &[(&str, &str)]) -> cachekit_core::Result<RedisBackendConfig> {
    let source = ConfigSource::from_parts(None, vars.iter().map(|(k, v)| (*k, *v)))?;
    RedisBackendConfig::from_source(&source)
}

fn config_error(
    result: cachekit_core::Result<RedisBackendConfig>,
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

/// `error` and every cause under it, as one text.
fn full_text(error: &dyn std::error::Error) -> String {
    let mut text = format!("{error} / {error:?}");
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(&format!(" / {current} / {current:?}"));
        cause = current.source();
    }
    text
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = RedisBackendConfig::default();
    assert_eq!(config.url, "redis://127.0.0.1:6379");
    assert_eq!(config.connect_timeout, Duration::from_secs(2));
    assert_eq!(config.timeout, Duration::from_secs(1));
    assert_eq!(config.key_prefix, "");
    assert!(config.cluster_nodes.is_empty());
    assert!(!config.l1_invalidation);
    assert_eq!(from_vars(&[]).unwrap(), config, "nothing set: the defaults");
    // Needs no server, and no runtime.
    let backend = RedisBackend::new(config).unwrap();
    assert_eq!(backend.name(), "redis");
    assert_eq!(backend.capabilities(), RedisBackend::CAPABILITIES);
}

#[test]
fn every_variable_sets_its_field() {
    let config = from_vars(&[
        ("CACHEKIT_REDIS_URL", "rediss://app:pw@cache:6380"),
        ("CACHEKIT_REDIS_CONNECT_TIMEOUT", "0.25"),
        ("CACHEKIT_REDIS_TIMEOUT", "1.5"),
        ("CACHEKIT_REDIS_KEY_PREFIX", "myapp:"),
        ("CACHEKIT_REDIS_CLUSTER_NODES", r#"["r1:6379", "r2:6379"]"#),
    ])
    .unwrap();
    assert_eq!(
        config,
        RedisBackendConfig::default()
            .url("rediss://app:pw@cache:6380")
            .connect_timeout(Duration::from_millis(250))
            .timeout(Duration::from_millis(1500))
            .key_prefix("myapp:")
            .cluster_nodes(["r1:6379", "r2:6379"])
    );
    // Coherent L1 is for a single server (a cluster is refused with it).
    let config = from_vars(&[("CACHEKIT_REDIS_L1_INVALIDATION", "true")]).unwrap();
    assert_eq!(config, RedisBackendConfig::default().l1_invalidation(true));
    let declared: Vec<&str> = SETTINGS.iter().map(|s| s.env).collect();
    assert_eq!(
        declared.len(),
        6,
        "a new setting needs a line in this test: {declared:?}"
    );
}

#[test]
fn the_file_sets_every_field_and_variables_win() {
    let dir = std::env::temp_dir().join(format!("cachekit-redis-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cachekit.toml");
    std::fs::write(
        &file,
        r#"
[redis]
url = "redis://file-host:6379/2"
connect_timeout = 0.5
timeout = 3
key_prefix = "fromfile:"
cluster_nodes = "n1:7000, n2:7001"
l1_invalidation = false
"#,
    )
    .unwrap();
    let read = |vars: &[(&str, &str)]| {
        let source = ConfigSource::from_parts(Some(&file), vars.iter().copied()).unwrap();
        RedisBackendConfig::from_source(&source)
    };
    // A cluster has only database 0: the file's /2 is refused, naming the file.
    let (setting, origin, reason) = config_error(read(&[]));
    assert_eq!(setting, "redis.url");
    assert_eq!(origin, ConfigOrigin::File(file.clone()));
    assert!(reason.contains("database 2"), "{reason}");

    let config = read(&[("CACHEKIT_REDIS_URL", "redis://env-host:6379")]).unwrap();
    assert_eq!(config.url, "redis://env-host:6379", "the variable wins");
    assert_eq!(config.connect_timeout, Duration::from_millis(500));
    assert_eq!(config.timeout, Duration::from_secs(3));
    assert_eq!(config.key_prefix, "fromfile:");
    assert_eq!(config.cluster_nodes, ["n1:7000", "n2:7001"]);
    assert!(!config.l1_invalidation);
    // Coherent L1 with a cluster is refused, naming the variable that asked.
    let (setting, origin, _) = config_error(read(&[
        ("CACHEKIT_REDIS_URL", "redis://env-host:6379"),
        ("CACHEKIT_REDIS_L1_INVALIDATION", "true"),
    ]));
    assert_eq!(setting, "redis.l1_invalidation");
    assert_eq!(
        origin,
        ConfigOrigin::Env("CACHEKIT_REDIS_L1_INVALIDATION".into())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn redis_url_is_the_fallback_of_the_url() {
    let config = from_vars(&[("REDIS_URL", "redis://fallback:6379/3")]).unwrap();
    assert_eq!(config.url, "redis://fallback:6379/3");
    let config = from_vars(&[
        ("REDIS_URL", "redis://fallback:6379/3"),
        ("CACHEKIT_REDIS_URL", "redis://own:6379/1"),
    ])
    .unwrap();
    assert_eq!(config.url, "redis://own:6379/1", "CACHEKIT_REDIS_URL first");
    // A bad REDIS_URL is named as such.
    let (setting, origin, _) = config_error(from_vars(&[("REDIS_URL", "http://x")]));
    assert_eq!(setting, "redis.url");
    assert_eq!(origin, ConfigOrigin::Env("REDIS_URL".into()));
}

#[test]
fn node_list_takes_json_or_commas() {
    for text in [
        r#"["r1:6379","r2:6379"]"#,
        "r1:6379,r2:6379",
        " r1:6379 , r2:6379 ",
    ] {
        let config = from_vars(&[("CACHEKIT_REDIS_CLUSTER_NODES", text)]).unwrap();
        assert_eq!(config.cluster_nodes, ["r1:6379", "r2:6379"], "{text:?}");
    }
}

#[test]
fn bad_values_name_the_setting_the_variable_and_the_value() {
    let cases = [
        ("CACHEKIT_REDIS_TIMEOUT", "soon", "redis.timeout"),
        ("CACHEKIT_REDIS_TIMEOUT", "-1", "redis.timeout"),
        ("CACHEKIT_REDIS_TIMEOUT", "0", "redis.timeout"),
        ("CACHEKIT_REDIS_TIMEOUT", "1e30", "redis.timeout"),
        (
            "CACHEKIT_REDIS_CONNECT_TIMEOUT",
            "fast",
            "redis.connect_timeout",
        ),
        ("CACHEKIT_REDIS_URL", "cache:6379", "redis.url"),
        ("CACHEKIT_REDIS_URL", "http://cache:6379", "redis.url"),
        ("CACHEKIT_REDIS_URL", "redis://cache:port", "redis.url"),
        ("CACHEKIT_REDIS_KEY_PREFIX", "my app", "redis.key_prefix"),
        ("CACHEKIT_REDIS_KEY_PREFIX", "{tag}", "redis.key_prefix"),
        (
            "CACHEKIT_REDIS_CLUSTER_NODES",
            r#"["r1"]"#,
            "redis.cluster_nodes",
        ),
        (
            "CACHEKIT_REDIS_CLUSTER_NODES",
            "r1:0",
            "redis.cluster_nodes",
        ),
        (
            "CACHEKIT_REDIS_CLUSTER_NODES",
            r#"["r1:6379""#,
            "redis.cluster_nodes",
        ),
        (
            "CACHEKIT_REDIS_L1_INVALIDATION",
            "maybe",
            "redis.l1_invalidation",
        ),
        // Set to nothing is not unset.
        ("CACHEKIT_REDIS_URL", "", "redis.url"),
        ("CACHEKIT_REDIS_TIMEOUT", " ", "redis.timeout"),
    ];
    for (var, value, setting) in cases {
        let (named, origin, reason) = config_error(from_vars(&[(var, value)]));
        assert_eq!(named, setting, "{var}={value}: {reason}");
        assert_eq!(origin, ConfigOrigin::Env(var.into()), "{var}={value}");
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
fn validation_names_the_field() {
    type Breaker = fn(RedisBackendConfig) -> RedisBackendConfig;
    let cases: [(Breaker, &str); 7] = [
        (|c| c.url("nope"), "redis.url"),
        (|c| c.timeout(Duration::ZERO), "redis.timeout"),
        (
            |c| c.connect_timeout(Duration::MAX),
            "redis.connect_timeout",
        ),
        (|c| c.key_prefix("x".repeat(200)), "redis.key_prefix"),
        (|c| c.key_prefix("a{b}"), "redis.key_prefix"),
        (
            |c| c.cluster_nodes(["r1:6379", "nope"]),
            "redis.cluster_nodes",
        ),
        (
            |c| c.url("redis://h:6379/5").cluster_nodes(["r1:6379"]),
            "redis.url",
        ),
    ];
    for (break_it, field) in cases {
        match RedisBackend::new(break_it(RedisBackendConfig::default())) {
            Err(Error::Config {
                setting,
                origin: ConfigOrigin::Code,
                ..
            }) => assert_eq!(setting, field),
            other => panic!("{field}: expected a Config error, got {other:?}"),
        }
    }
    for url in [
        "redis://[::1]:6379",
        "rediss://user:pw@cache.example:6380/2",
        "redis://:pw@cache",
    ] {
        RedisBackend::new(RedisBackendConfig::default().url(url)).unwrap();
    }
    RedisBackend::new(RedisBackendConfig::default().cluster_nodes(["[::1]:7000", "r1:7001"]))
        .unwrap();
}

#[test]
fn its_own_variables_select_redis_and_redis_url_alone_does_not() {
    for var in ["CACHEKIT_REDIS_URL", "CACHEKIT_REDIS_CLUSTER_NODES"] {
        let value = if var.ends_with("URL") {
            "redis://127.0.0.1:1"
        } else {
            "127.0.0.1:1"
        };
        let source = ConfigSource::from_parts(None, [(var, value)]).unwrap();
        let cache = Cache::builder().config(source).build().unwrap();
        assert_eq!(cache.backend().name(), "redis", "{var}");
    }
    let source = ConfigSource::from_parts(None, [("REDIS_URL", "redis://127.0.0.1:1")]).unwrap();
    let cache = Cache::builder().config(source).build().unwrap();
    assert_eq!(cache.backend().name(), "memory", "REDIS_URL alone");
    let named = ConfigSource::from_parts(
        None,
        [
            ("CACHEKIT_BACKEND", "redis"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    )
    .unwrap();
    let cache = Cache::builder().config(named).build().unwrap();
    assert_eq!(cache.backend().name(), "redis");
    assert!(cache.capabilities().lock);
}

#[test]
fn passwords_stay_out_of_debug_and_config_errors() {
    let config = RedisBackendConfig::default().url("redis://app:s3cret@cache:6379/0");
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("redis://app:***@cache:6379/0"), "{shown}");
    let backend = RedisBackend::new(config).unwrap();
    let shown = format!("{backend:?}");
    assert!(!shown.contains("s3cret"), "{shown}");

    for url in [
        "redis://app:s3cret@cache:port/0",
        "redis://:s3cret@cache/notadb",
        "https://:s3cret@cache",
    ] {
        let error = RedisBackend::new(RedisBackendConfig::default().url(url)).unwrap_err();
        let text = full_text(&error);
        assert!(!text.contains("s3cret"), "{url}: {text}");
        let error = from_vars(&[("CACHEKIT_REDIS_URL", url)]).unwrap_err();
        let text = full_text(&error);
        assert!(!text.contains("s3cret"), "{url}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_stay_out_of_operation_errors() {
    let mut server = ServerProcess::redis();
    let address = server.address();
    // The server has no password: AUTH fails.
    let backend = RedisBackend::new(
        RedisBackendConfig::default()
            .url(format!("redis://app:s3cret@{address}/0"))
            .timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let error = backend
        .set("k", Bytes::from_static(b"v"), None)
        .await
        .unwrap_err();
    let text = full_text(&error);
    assert!(!text.contains("s3cret"), "{text}");
    // And with the server gone.
    server.stop();
    let error = backend.get("k").await.unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    let text = full_text(&error);
    assert!(!text.contains("s3cret"), "{text}");
}
