//! The core conformance kit against real memcached: one server, a fleet of
//! three, and one server with a key prefix, over plain TCP; one server and a
//! fleet of three over TLS (memcached's `-Z`, certificates made by the
//! test). The kit starts the servers.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cachekit_core::backend::testkit::{Conformance, ServerKind};
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};
use common::tls::Pki;

/// A backend over `servers` with short timeouts for tests, changed by `tweak`.
fn backend(
    servers: &[String],
    tweak: impl FnOnce(&mut MemcachedBackendConfig),
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

/// The kit over `count` memcached servers serving TLS with `pki`'s server
/// certificate, the backend trusting `pki`'s CA.
fn over_tls(pki: &Pki, count: usize) -> Conformance {
    let ca: PathBuf = pki.path("ca.pem");
    Conformance::with_servers(ServerKind::Memcached, count, move |a| {
        backend(a, |c| {
            c.tls = true;
            c.tls_ca_file = Some(ca.clone());
        })
    })
    .server_args(pki.server_args())
}

fn main() -> ExitCode {
    let memcached = ServerKind::Memcached;
    // Kept until the trials end: the servers read their certificates at start.
    let pki = Pki::new();
    Conformance::run_all([
        Conformance::with_servers(memcached, 1, |a| backend(a, |_| {})).named("one_server"),
        Conformance::with_servers(memcached, 3, |a| backend(a, |_| {})).named("three_servers"),
        Conformance::with_servers(memcached, 1, |a| {
            backend(a, |c| c.key_prefix = "myapp:".into())
        })
        .named("prefixed"),
        over_tls(&pki, 1).named("tls_one_server"),
        over_tls(&pki, 3).named("tls_three_servers"),
    ])
}
