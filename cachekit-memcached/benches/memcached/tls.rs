//! The TLS rows of the memcached benchmark: three more servers, started by
//! xtask with `-Z` and a certificate signed by a throwaway CA
//! (`CACHEKIT_BENCH_MEMCACHED_TLS`, `CACHEKIT_BENCH_MEMCACHED_TLS_CA`).
//!
//! A raw TLS `mg` loop (rustls through tokio-rustls, one connection, the
//! same ring provider cachekit uses) and `Cache::get` over TLS take turns
//! operation by operation, as the plain rows do with the raw `mg` loop;
//! then 64 tasks run `Cache::get` over the three TLS servers and over the
//! three plain ones, in turns by slices.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachekit_core::Cache;
use cachekit_core::ConfigSource;
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A raw `mg` client over one TLS connection.
pub(crate) type RawTls =
    crate::RawClient<ReadHalf<TlsStream<TcpStream>>, WriteHalf<TlsStream<TcpStream>>>;

/// Connects to `server`, trusting the CA in `ca`, to read `key`.
pub(crate) async fn connect(server: &str, ca: &Path, key: &str) -> RawTls {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let host = server.rsplit_once(':').unwrap().0.to_owned();
    let name = ServerName::try_from(host).unwrap();
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (read, write) = tokio::io::split(stream);
    crate::RawClient::over(read, write, key)
}

/// A cache over `servers` with TLS on, trusting the CA in `ca`, L1 off.
pub(crate) fn cache(servers: &[String], ca: &Path) -> Cache {
    let config = MemcachedBackendConfig {
        servers: servers.to_vec(),
        ..Default::default()
    }
    .tls(true)
    .tls_ca_file(ca);
    Cache::builder()
        .backend(MemcachedBackend::new(config).unwrap())
        .namespace("bench")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

/// Per-operation latencies of the raw TLS loop and of `Cache::get` over
/// TLS, taking turns: (raw, cache), after `warmup` rounds.
pub(crate) async fn sequential(
    raw: &mut RawTls,
    cache: &Cache,
    key: &str,
    warmup: usize,
    ops: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut raw_samples, mut cache_samples) = (Vec::new(), Vec::new());
    for round in 0..warmup + ops {
        let start = Instant::now();
        raw.get().await;
        let middle = Instant::now();
        std::hint::black_box(cache.get::<String>(key).await.unwrap().unwrap());
        let end = Instant::now();
        if round >= warmup {
            raw_samples.push(middle - start);
            cache_samples.push(end - middle);
        }
    }
    (raw_samples, cache_samples)
}
