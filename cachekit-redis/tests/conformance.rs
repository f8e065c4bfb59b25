//! The core conformance kit against real Redis: one server, one server with
//! a key prefix, and a Redis Cluster of three masters. The kit starts the
//! servers.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cachekit_core::backend::testkit::{Conformance, ServerKind};
use cachekit_redis::{RedisBackend, RedisBackendConfig};

/// A backend over the server at `address`, changed by `tweak`. The timeouts
/// are long: `limits::max_value_size_boundary` moves 512 MiB values, which
/// take seconds on a loaded machine. The fault cases stop the server, which
/// refuses at once.
fn backend(
    address: &str,
    tweak: fn(RedisBackendConfig) -> RedisBackendConfig,
) -> cachekit_core::Result<Arc<dyn cachekit_core::Backend>> {
    let config = RedisBackendConfig::default()
        .url(format!("redis://{address}/0"))
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(20));
    Ok(Arc::new(RedisBackend::new(tweak(config))?))
}

/// A cluster backend over the nodes at `addresses` (each a seed), timeouts
/// as [`backend`]'s.
fn cluster(addresses: &[String]) -> cachekit_core::Result<Arc<dyn cachekit_core::Backend>> {
    let config = RedisBackendConfig::default()
        .cluster_nodes(addresses)
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(20));
    Ok(Arc::new(RedisBackend::new(config)?))
}

fn main() -> ExitCode {
    let redis = ServerKind::Redis;
    Conformance::run_all([
        Conformance::with_server(redis, |a| backend(a, |c| c)).named("one_server"),
        Conformance::with_server(redis, |a| backend(a, |c| c.key_prefix("myapp:")))
            .named("prefixed"),
        Conformance::with_servers(ServerKind::RedisCluster, 3, cluster).named("cluster"),
    ])
}
