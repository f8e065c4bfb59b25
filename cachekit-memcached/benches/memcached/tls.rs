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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A raw `mg` client over one TLS connection.
pub(crate) struct RawTls {
    read: BufReader<ReadHalf<TlsStream<TcpStream>>>,
    write: WriteHalf<TlsStream<TcpStream>>,
    command: Vec<u8>,
    line: String,
    data: Vec<u8>,
}

impl RawTls {
    /// Connects to `server`, trusting the CA in `ca`, to read `key`.
    pub(crate) async fn connect(server: &str, ca: &Path, key: &str) -> Self {
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
        RawTls {
            read: BufReader::new(read),
            write,
            command: format!("mg {key} v\r\n").into_bytes(),
            line: String::new(),
            data: Vec::new(),
        }
    }

    /// One `mg` hit, read whole.
    pub(crate) async fn get(&mut self) {
        self.write.write_all(&self.command).await.unwrap();
        self.write.flush().await.unwrap();
        self.line.clear();
        self.read.read_line(&mut self.line).await.unwrap();
        let len: usize = self
            .line
            .trim_end()
            .strip_prefix("VA ")
            .unwrap()
            .parse()
            .unwrap();
        self.data.resize(len + 2, 0);
        self.read.read_exact(&mut self.data).await.unwrap();
        std::hint::black_box(&self.data);
    }
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
