//! The core conformance kit against real memcached: one server, a fleet of
//! three, and one server with a key prefix. The kit starts the servers.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cachekit_core::backend::testkit::{Conformance, ServerKind};
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};

/// A backend over `servers` with short timeouts for tests, changed by `tweak`.
fn backend(
    servers: &[String],
    tweak: fn(&mut MemcachedBackendConfig),
) -> cachekit_core::Result<Arc<dyn cachekit_core::Backend>> {
    let mut config = MemcachedBackendConfig {
        servers: servers.to_vec(),
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(500),
        ..Default::default()
    };
    tweak(&mut config);
    Ok(Arc::new(MemcachedBackend::new(config)?))
}

fn main() -> ExitCode {
    let memcached = ServerKind::Memcached;
    Conformance::run_all([
        Conformance::with_servers(memcached, 1, |a| backend(a, |_| {})).named("one_server"),
        Conformance::with_servers(memcached, 3, |a| backend(a, |_| {})).named("three_servers"),
        Conformance::with_servers(memcached, 1, |a| {
            backend(a, |c| c.key_prefix = "myapp:".into())
        })
        .named("prefixed"),
    ])
}
