//! Memcached over TLS against real memcached started with `-Z` and
//! certificates made by the test: mutual TLS accepted and refused, and each
//! misconfiguration failing within `connect_timeout` with a message that
//! names the cause and the setting to change.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachekit_core::backend::Bytes;
use cachekit_core::backend::testkit::{ServerKind, ServerProcess};
use cachekit_core::{Backend, Error};
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};
use common::tls::Pki;

/// The connect timeout of these tests; the operation timeout is longer, so
/// that a connect that runs out of time fails as a connect.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);

/// Slack over `CONNECT_TIMEOUT` for a failure to arrive on a busy machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// A backend over `server`, without retries, configured by `tweak`.
fn backend(
    server: &ServerProcess,
    tweak: impl FnOnce(&mut MemcachedBackendConfig),
) -> MemcachedBackend {
    let mut config = MemcachedBackendConfig {
        servers: vec![server.address()],
        connect_timeout: CONNECT_TIMEOUT,
        timeout: Duration::from_secs(3),
        retry_attempts: 0,
        ..Default::default()
    };
    tweak(&mut config);
    MemcachedBackend::new(config).expect("valid config")
}

/// Sets a key on `backend`, expecting it to fail as unavailable within the
/// connect timeout; returns the error's message.
async fn failing_set(backend: &MemcachedBackend) -> String {
    let started = Instant::now();
    let result = backend.set("k", Bytes::from_static(b"v"), None).await;
    let took = started.elapsed();
    let error = result.expect_err("the call must fail");
    assert!(
        matches!(error, Error::Unavailable { .. }),
        "a connection failure is Unavailable: {error:?}"
    );
    assert!(
        took < CONNECT_TIMEOUT + MARGIN,
        "failed after {took:?}, past the connect timeout"
    );
    eprintln!("measured: failed after {took:?}: {error}");
    error.to_string()
}

/// Asserts that `message` contains every one of `parts`.
fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{message:?} does not say {part:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_serves_a_tls_client() {
    let pki = Pki::new();
    let servers = pki.servers(1);
    let backend = backend(&servers[0], |c| pki.client(c));
    backend
        .set("k", Bytes::from_static(b"over tls"), None)
        .await
        .expect("stored over TLS");
    let value = backend.get("k").await.expect("read over TLS");
    assert_eq!(value.as_deref(), Some(&b"over tls"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_client_certificates_accepts_ours() {
    let pki = Pki::new();
    let server = ServerProcess::start_with_args(ServerKind::Memcached, pki.mutual_args());
    let backend = backend(&server, |c| {
        pki.client(c);
        c.tls_cert_file = Some(pki.path("client.pem"));
        c.tls_key_file = Some(pki.path("client-key.pem"));
    });
    backend
        .set("k", Bytes::from_static(b"mutual"), None)
        .await
        .expect("stored with a client certificate");
    let value = backend
        .get("k")
        .await
        .expect("read with a client certificate");
    assert_eq!(value.as_deref(), Some(&b"mutual"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_client_certificates_refuses_a_client_without_one() {
    let pki = Pki::new();
    let server = ServerProcess::start_with_args(ServerKind::Memcached, pki.mutual_args());
    let backend = backend(&server, |c| pki.client(c));
    let message = failing_set(&backend).await;
    assert_says(
        &message,
        &[
            "client certificate",
            "memcached.tls_cert_file",
            "tls_key_file",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_client_certificates_refuses_one_from_a_ca_it_does_not_trust() {
    let pki = Pki::new();
    let server = ServerProcess::start_with_args(ServerKind::Memcached, pki.mutual_args());
    let backend = backend(&server, |c| {
        pki.client(c);
        c.tls_cert_file = Some(pki.path("stranger.pem"));
        c.tls_key_file = Some(pki.path("stranger-key.pem"));
    });
    let message = failing_set(&backend).await;
    assert_says(
        &message,
        &["refused our client certificate", "memcached.tls_cert_file"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_named_by_host_name_is_checked_for_that_name() {
    let pki = Pki::new();
    let servers = pki.servers(1);
    let port = servers[0].address().rsplit_once(':').unwrap().1.to_owned();
    let mut config = MemcachedBackendConfig {
        servers: vec![format!("localhost:{port}")],
        connect_timeout: CONNECT_TIMEOUT,
        retry_attempts: 0,
        ..Default::default()
    };
    pki.client(&mut config);
    let backend = MemcachedBackend::new(config).expect("valid config");
    backend
        .set("k", Bytes::from_static(b"by name"), None)
        .await
        .expect("the certificate is for localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_untrusted_ca_is_refused() {
    let pki = Pki::new();
    let servers = pki.servers(1);
    let backend = backend(&servers[0], |c| {
        c.tls = true;
        c.tls_ca_file = Some(pki.path("other-ca.pem"));
        c.retry_attempts = 1;
        c.eject_after = 2;
    });
    let message = failing_set(&backend).await;
    assert_says(
        &message,
        &["not signed by a trusted CA", "memcached.tls_ca_file"],
    );
    // A failed handshake is a failure of the server: two of them eject it.
    let ejections = cachekit_core::stats()
        .events
        .into_iter()
        .find(|event| {
            event.name == "cachekit_memcached_ejections_total"
                && event.labels == [("server", servers[0].address())]
        })
        .map(|event| event.count);
    assert!(ejections >= Some(1), "the server is ejected: {ejections:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_for_another_name_is_refused() {
    let pki = Pki::new();
    let servers = pki.servers(1);
    let backend = backend(&servers[0], |c| {
        pki.client(c);
        c.tls_server_name = Some("memcached.example.com".into());
    });
    let message = failing_set(&backend).await;
    assert_says(
        &message,
        &["not valid for the name", "memcached.tls_server_name"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_is_refused() {
    let pki = Pki::new();
    let server = ServerProcess::start_with_args(ServerKind::Memcached, pki.expired_args());
    let backend = backend(&server, |c| pki.client(c));
    let message = failing_set(&backend).await;
    assert_says(&message, &["expired"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_to_a_tls_port_is_told_to_set_tls() {
    let pki = Pki::new();
    let servers = pki.servers(1);
    let backend = backend(&servers[0], |_| {});
    let message = failing_set(&backend).await;
    assert_says(&message, &["requires TLS", "set memcached.tls"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_to_a_plain_port_is_told_the_server_does_not_speak_tls() {
    let pki = Pki::new();
    let server = ServerProcess::memcached();
    let backend = backend(&server, |c| pki.client(c));
    let message = failing_set(&backend).await;
    assert_says(&message, &["does not speak TLS", "memcached.tls off"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_invalid_certificates_connects_to_an_untrusted_server() {
    let pki = Pki::new();
    let servers = pki.servers(1);
    let backend = backend(&servers[0], |c| {
        c.tls = true;
        c.tls_ca_file = Some(pki.path("other-ca.pem"));
        c.tls_danger_accept_invalid_certs = true;
    });
    backend
        .set("k", Bytes::from_static(b"unchecked"), None)
        .await
        .expect("stored without checking the certificate");
}

#[test]
fn every_backend_that_skips_the_certificate_check_warns() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(CountDangerWarnings(warnings.clone()));
    let _scope = tracing::subscriber::set_default(subscriber);
    let config = MemcachedBackendConfig::default()
        .tls(true)
        .tls_danger_accept_invalid_certs(true);
    let _first = MemcachedBackend::new(config.clone()).expect("valid config");
    let _second = MemcachedBackend::new(config).expect("valid config");
    assert_eq!(
        warnings.load(Ordering::SeqCst),
        2,
        "one warning per backend"
    );
}

/// Counts the WARN events of this thread's subscriber that name
/// `tls_danger_accept_invalid_certs`.
struct CountDangerWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountDangerWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{value:?}"));
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if *event.metadata().level() == tracing::Level::WARN
            && message.0.contains("tls_danger_accept_invalid_certs")
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A change to a backend's config.
type Tweak<'a> = Box<dyn Fn(&mut MemcachedBackendConfig) + 'a>;

#[test]
fn unreadable_or_invalid_pem_files_are_config_errors_naming_the_setting_and_path() {
    let pki = Pki::new();
    let not_pem = pki.path("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let missing = pki.path("missing.pem");
    let cases: [(&str, Tweak, &std::path::Path); 4] = [
        (
            "memcached.tls_ca_file",
            Box::new(|c| c.tls_ca_file = Some(missing.clone())),
            &missing,
        ),
        (
            "memcached.tls_ca_file",
            Box::new(|c| c.tls_ca_file = Some(not_pem.clone())),
            &not_pem,
        ),
        (
            "memcached.tls_cert_file",
            Box::new(|c| {
                c.tls_cert_file = Some(not_pem.clone());
                c.tls_key_file = Some(pki.path("client-key.pem"));
            }),
            &not_pem,
        ),
        (
            "memcached.tls_key_file",
            Box::new(|c| {
                c.tls_cert_file = Some(pki.path("client.pem"));
                c.tls_key_file = Some(missing.clone());
            }),
            &missing,
        ),
    ];
    for (setting, tweak, path) in cases {
        let mut config = MemcachedBackendConfig::default().tls(true);
        pki.client(&mut config);
        tweak(&mut config);
        match MemcachedBackend::new(config) {
            Err(Error::Config {
                setting: named,
                reason,
                ..
            }) => {
                assert_eq!(named, setting);
                assert!(
                    reason.contains(&path.display().to_string()),
                    "{reason:?} names {path:?}"
                );
            }
            other => panic!("{setting}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn a_client_certificate_without_its_key_is_a_config_error() {
    let pki = Pki::new();
    let config = MemcachedBackendConfig::default()
        .tls(true)
        .tls_ca_file(pki.path("ca.pem"))
        .tls_cert_file(pki.path("client.pem"));
    match MemcachedBackend::new(config) {
        Err(Error::Config { setting, .. }) => assert_eq!(setting, "memcached.tls_key_file"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tls_server_is_reached_on_a_new_connection_and_not_counted_as_failing() {
    let pki = Pki::new();
    let mut servers = pki.servers(1);
    let backend = backend(&servers[0], |c| pki.client(c));
    backend
        .set("k", Bytes::from_static(b"v"), None)
        .await
        .expect("stored");
    servers[0].restart();
    // The pooled connection reads the server's close: the call finds it
    // closed before sending, and goes out on a new one.
    assert_eq!(backend.get("k").await.expect("answered"), None);
    assert_eq!(backend.live_servers(), [servers[0].address().as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_tls_server_times_out_at_the_operation_timeout() {
    let pki = Pki::new();
    let mut servers = pki.servers(1);
    let timeout = Duration::from_millis(300);
    let backend = backend(&servers[0], |c| {
        pki.client(c);
        c.timeout = timeout;
    });
    backend
        .set("k", Bytes::from_static(b"v"), None)
        .await
        .expect("stored");
    servers[0].freeze();
    let started = Instant::now();
    let result = backend.get("k").await;
    let took = started.elapsed();
    servers[0].thaw();
    assert!(
        matches!(result, Err(Error::Timeout { .. })),
        "the watchdog bounds a call over TLS: {result:?}"
    );
    assert!(took >= timeout && took < timeout * 4, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_from_many_tasks_round_trip_byte_exact_over_tls() {
    // Values larger than the socket takes at once: the session keeps TLS
    // bytes the socket did not take, and the writer sends them before any
    // later request's.
    let pki = Pki::new();
    let servers = pki.servers(1);
    let backend = Arc::new(backend(&servers[0], |c| pki.client(c)));
    let value = |task: usize| -> Vec<u8> {
        (0..700 * 1024)
            .map(|i: usize| (i.wrapping_mul(31) ^ task) as u8)
            .collect()
    };
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move {
                let key = format!("large-{task}");
                let expected = value(task);
                backend
                    .set(&key, Bytes::from(expected.clone()), None)
                    .await
                    .expect("stored");
                let read = backend.get(&key).await.expect("read").expect("a hit");
                assert!(read[..] == expected[..], "task {task} read another value");
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("within a minute")
            .expect("the task succeeded");
    }
    let keys: Vec<String> = (0..16).map(|task| format!("large-{task}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = backend.get_many(&keys).await.expect("read in one batch");
    for (task, read) in values.into_iter().enumerate() {
        assert!(read.expect("a hit")[..] == value(task)[..], "key {task}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_slower_than_the_operation_timeout_ends_in_a_connection_the_next_uses() {
    let pki = Pki::new();
    let servers = pki.servers(1);
    // A proxy that holds each connection this long before passing it on.
    let delay = Duration::from_millis(800);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bound");
    let proxy_address = listener.local_addr().expect("an address").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let upstream = servers[0].address();
    let counted = Arc::clone(&accepted);
    let proxy = tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut server = tokio::net::TcpStream::connect(upstream)
                    .await
                    .expect("the server is up");
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    let timeout = Duration::from_millis(300);
    let mut config = MemcachedBackendConfig {
        servers: vec![proxy_address],
        connect_timeout: Duration::from_secs(5),
        timeout,
        retry_attempts: 0,
        ..Default::default()
    };
    pki.client(&mut config);
    let backend = MemcachedBackend::new(config).expect("valid config");

    let first = backend.get("k").await;
    assert!(
        matches!(first, Err(Error::Timeout { .. })),
        "the operation gives up at its timeout: {first:?}"
    );
    // The handshake goes on without it, and ends within the delay.
    tokio::time::sleep(delay + Duration::from_millis(700)).await;
    let started = Instant::now();
    backend
        .set("k", Bytes::from_static(b"v"), None)
        .await
        .expect("the connection opened in the background serves this call");
    assert!(
        started.elapsed() < timeout,
        "no new handshake was waited for"
    );
    assert_eq!(
        backend.get("k").await.expect("read").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection was opened"
    );
    proxy.abort();
}
