//! Helpers shared by the integration tests: real servers and backends over them.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use cachekit_core::backend::testkit::ServerProcess;
use cachekit_redis::{RedisBackend, RedisBackendConfig};

/// A backend over `server` with short timeouts for tests, changed by `tweak`.
pub fn backend(
    server: &ServerProcess,
    tweak: impl FnOnce(RedisBackendConfig) -> RedisBackendConfig,
) -> RedisBackend {
    let config = RedisBackendConfig::default()
        .url(format!("redis://{}/0", server.address()))
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_millis(500));
    RedisBackend::new(tweak(config)).expect("valid config")
}

/// Sends one command with a client of its own (not the backend's) and
/// returns the answer, for checks behind the backend's back.
pub async fn raw<T: redis::FromRedisValue>(server: &ServerProcess, command: &redis::Cmd) -> T {
    let client = redis::Client::open(format!("redis://{}/0", server.address())).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    command.query_async(&mut connection).await.unwrap()
}
