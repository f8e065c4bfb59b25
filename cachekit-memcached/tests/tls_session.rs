//! The TLS session a connection drives on its own TCP stream, under events
//! real memcached does not make on demand: a TLS-terminating proxy in front
//! of a plain memcached injects them on the client's connection (a key
//! update, a `close_notify`, a record that does not decrypt, a stall), idle
//! or with requests in flight.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachekit_core::Backend;
use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::ServerProcess;
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};
use common::tls::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Bounds every wait of these tests.
const PATIENCE: Duration = Duration::from_secs(20);

/// What the proxy does to the client's connection.
#[derive(Clone, Copy, Debug)]
enum Inject {
    /// A TLS 1.3 KeyUpdate (a post-handshake message, no application data).
    KeyUpdate,
    /// A `close_notify`, the TCP connection left open.
    CloseNotify,
    /// An application-data record that does not decrypt.
    Garbage,
    /// A `close_notify` instead of the next response from the server.
    CloseNotifyForNextResponse,
    /// A record that does not decrypt instead of the next response.
    GarbageForNextResponse,
    /// Stops reading from the client for this long.
    Stall(Duration),
}

/// A TLS-terminating proxy to a plain memcached.
struct Proxy {
    /// Where it listens.
    address: String,
    /// Client connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Client connections that ended with a `close_notify`.
    clean_closes: Arc<AtomicUsize>,
    /// One sender per connection accepted.
    injectors: Arc<Mutex<Vec<mpsc::UnboundedSender<Inject>>>>,
    /// Accepts the clients.
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port, serving the test certificate of
    /// `pki`, and passes each client to `upstream`.
    async fn start(pki: &Pki, upstream: String) -> Proxy {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.path("server.pem"))
                .expect("server.pem")
                .collect::<Result<_, _>>()
                .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(pki.path("server-key.pem")).expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let address = listener.local_addr().expect("an address").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let injectors = Arc::new(Mutex::new(Vec::new()));
        let clean_closes = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let clean_closes = Arc::clone(&clean_closes);
            let accepted = Arc::clone(&accepted);
            let injectors = Arc::clone(&injectors);
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (inject, injected) = mpsc::unbounded_channel();
                    injectors.lock().unwrap().push(inject);
                    tokio::spawn(serve(
                        acceptor.clone(),
                        client,
                        upstream.clone(),
                        injected,
                        Arc::clone(&clean_closes),
                    ));
                }
            }
        });
        Proxy {
            address,
            accepted,
            clean_closes,
            injectors,
            task,
        }
    }

    /// Injects `what` on every connection.
    fn inject(&self, what: Inject) {
        for injector in self.injectors.lock().unwrap().iter() {
            let _ = injector.send(what);
        }
    }

    /// Client connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A record that does not decrypt: application data, 32 bytes of noise.
const GARBAGE: [u8; 37] = {
    let mut record = [0xA5_u8; 37];
    record[0] = 0x17;
    record[1] = 0x03;
    record[2] = 0x03;
    record[3] = 0x00;
    record[4] = 32;
    record
};

/// Serves one client: terminates its TLS, passes the bytes to and from
/// `upstream`, and does what `injected` says.
async fn serve(
    acceptor: tokio_rustls::TlsAcceptor,
    client: TcpStream,
    upstream: String,
    mut injected: mpsc::UnboundedReceiver<Inject>,
    clean_closes: Arc<AtomicUsize>,
) {
    let Ok(mut tls) = acceptor.accept(client).await else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let mut from_client = vec![0_u8; 64 * 1024];
    let mut from_server = vec![0_u8; 64 * 1024];
    let mut instead_of_next: Option<Inject> = None;
    loop {
        tokio::select! {
            read = tls.read(&mut from_client) => match read {
                Ok(0) => {
                    clean_closes.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Err(_) => return,
                Ok(n) => {
                    if server.write_all(&from_client[..n]).await.is_err() {
                        return;
                    }
                }
            },
            read = server.read(&mut from_server) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => match instead_of_next.take() {
                    Some(Inject::CloseNotifyForNextResponse) => {
                        tls.get_mut().1.send_close_notify();
                        let _ = tls.flush().await;
                    }
                    Some(_) => {
                        let _ = tls.get_mut().0.write_all(&GARBAGE).await;
                    }
                    None => {
                        if tls.write_all(&from_server[..n]).await.is_err()
                            || tls.flush().await.is_err()
                        {
                            return;
                        }
                    }
                },
            },
            Some(inject) = injected.recv() => match inject {
                Inject::KeyUpdate => {
                    tls.get_mut().1.refresh_traffic_keys().expect("a TLS 1.3 key update");
                    let _ = tls.flush().await;
                }
                Inject::CloseNotify => {
                    tls.get_mut().1.send_close_notify();
                    let _ = tls.flush().await;
                }
                Inject::Garbage => {
                    let _ = tls.get_mut().0.write_all(&GARBAGE).await;
                }
                Inject::CloseNotifyForNextResponse | Inject::GarbageForNextResponse => {
                    instead_of_next = Some(inject);
                }
                Inject::Stall(pause) => tokio::time::sleep(pause).await,
            },
        }
    }
}

/// A memcached behind the proxy, and a backend over the proxy (without
/// retries, configured by `tweak`) whose connection is open: it stored
/// `k` = `v`.
struct Setup {
    /// The proxy, which the tests inject events through.
    proxy: Proxy,
    /// The backend under test, shared with the tasks of a test.
    backend: Arc<MemcachedBackend>,
    /// Kept alive for the proxy.
    _upstream: ServerProcess,
    /// Kept alive for the certificates' files.
    _pki: Pki,
}

impl Setup {
    async fn start(tweak: impl FnOnce(&mut MemcachedBackendConfig)) -> Setup {
        let pki = Pki::new();
        let upstream = ServerProcess::memcached();
        let proxy = Proxy::start(&pki, upstream.address()).await;
        let mut config = MemcachedBackendConfig {
            servers: vec![proxy.address.clone()],
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
            retry_attempts: 0,
            ..Default::default()
        };
        pki.client(&mut config);
        tweak(&mut config);
        let backend = MemcachedBackend::new(config).expect("valid config");
        timeout(PATIENCE, backend.set("k", Bytes::from_static(b"v"), None))
            .await
            .expect("bounded")
            .expect("stored");
        Setup {
            proxy,
            backend: Arc::new(backend),
            _upstream: upstream,
            _pki: pki,
        }
    }
}

/// Lets an injected event reach the client before its next call.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_update_on_an_idle_connection_is_not_unsolicited_data() {
    let setup = Setup::start(|_| {}).await;
    let (proxy, backend) = (&setup.proxy, &setup.backend);
    for round in 0..3 {
        proxy.inject(Inject::KeyUpdate);
        settle().await;
        let value = timeout(PATIENCE, backend.get("k")).await.expect("bounded");
        assert_eq!(
            value.expect("read").as_deref(),
            Some(&b"v"[..]),
            "round {round}"
        );
    }
    assert_eq!(
        proxy.accepted(),
        1,
        "the key updates did not cost the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_while_requests_are_in_flight_lose_nothing() {
    let setup = Setup::start(|_| {}).await;
    let (proxy, backend) = (&setup.proxy, &setup.backend);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let backend = Arc::clone(backend);
            tokio::spawn(async move {
                for i in 0..200 {
                    let key = format!("t{task}-{i}");
                    let value = Bytes::from(format!("value of {key}").into_bytes());
                    backend
                        .set(&key, value.clone(), None)
                        .await
                        .expect("stored");
                    let read = backend.get(&key).await.expect("read");
                    assert_eq!(read.as_deref(), Some(&value[..]), "{key}");
                }
            })
        })
        .collect();
    for _ in 0..20 {
        proxy.inject(Inject::KeyUpdate);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for task in tasks {
        timeout(PATIENCE, task)
            .await
            .expect("bounded")
            .expect("the task succeeded");
    }
    assert_eq!(proxy.accepted(), 1, "no connection failed");
}

/// Injects `event` on the idle connection of a fresh setup, then reads `k`:
/// it must be answered on a new connection (the broken one found before
/// anything was sent on it). Returns the setup for more checks.
async fn idle_connection_replaced_after(event: Inject, replaced: &str) -> Setup {
    let setup = Setup::start(|_| {}).await;
    setup.proxy.inject(event);
    settle().await;
    let value = timeout(PATIENCE, setup.backend.get("k"))
        .await
        .expect("bounded");
    assert_eq!(
        value.expect("answered on a new connection").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(setup.proxy.accepted(), 2, "{replaced}");
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_notify_on_an_idle_connection_is_found_before_sending() {
    let setup =
        idle_connection_replaced_after(Inject::CloseNotify, "the closed connection was replaced")
            .await;
    assert_eq!(setup.backend.live_servers(), [setup.proxy.address.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_decrypt_on_an_idle_connection_fails_it_before_sending() {
    idle_connection_replaced_after(Inject::Garbage, "the broken connection was replaced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_notify_or_bad_record_instead_of_a_response_fails_the_call() {
    for instead in [
        Inject::CloseNotifyForNextResponse,
        Inject::GarbageForNextResponse,
    ] {
        let setup = Setup::start(|_| {}).await;
        let (proxy, backend) = (&setup.proxy, &setup.backend);
        proxy.inject(instead);
        settle().await;
        let answer = timeout(PATIENCE, backend.get("k")).await.expect("bounded");
        assert!(
            answer.is_err(),
            "{instead:?}: the call fails, got {answer:?}"
        );
        let value = timeout(PATIENCE, backend.get("k")).await.expect("bounded");
        assert_eq!(
            value.expect("answered on a new connection").as_deref(),
            Some(&b"v"[..]),
            "{instead:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_a_stalled_reader_arrive_whole_and_in_order() {
    let setup = Setup::start(|c| c.timeout = Duration::from_secs(10)).await;
    let (proxy, backend) = (&setup.proxy, &setup.backend);
    let value = |task: usize| -> Vec<u8> {
        (0..900 * 1024)
            .map(|i: usize| (i.wrapping_mul(131) ^ (task * 7)) as u8)
            .collect()
    };
    for round in 0..3 {
        proxy.inject(Inject::Stall(Duration::from_millis(400)));
        settle().await;
        let tasks: Vec<_> = (0..12)
            .map(|task| {
                let backend = Arc::clone(backend);
                let expected = value(task + round);
                tokio::spawn(async move {
                    let key = format!("big-{round}-{task}");
                    backend
                        .set(&key, Bytes::from(expected.clone()), None)
                        .await
                        .expect("stored");
                    let small = format!("small-{round}-{task}");
                    backend
                        .set(&small, Bytes::from(small.clone().into_bytes()), None)
                        .await
                        .expect("stored");
                    let read = backend.get(&key).await.expect("read").expect("a hit");
                    assert!(read[..] == expected[..], "{key} read another value");
                    let read = backend.get(&small).await.expect("read").expect("a hit");
                    assert_eq!(read[..], *small.as_bytes());
                })
            })
            .collect();
        for task in tasks {
            timeout(PATIENCE, task)
                .await
                .expect("bounded")
                .expect("the task succeeded");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backend_ends_the_session_with_a_close_notify() {
    let Setup {
        proxy,
        backend,
        _upstream,
        _pki,
    } = Setup::start(|_| {}).await;
    drop(backend);
    let waited = timeout(PATIENCE, async {
        while proxy.clean_closes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the server read a close_notify");
}
