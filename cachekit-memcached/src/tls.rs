//! TLS to the servers: the rustls client configuration, built once per
//! backend from the `memcached.tls*` settings, and the handshake of each
//! connection, whose failures name their cause and the setting to change.
//!
//! The roots, when `tls_ca_file` is unset, are the platform's CA
//! certificates (`rustls-native-certs`) rather than a bundle compiled in
//! (`webpki-roots`): a managed fleet's private CA is installed in the
//! platform's store, and the store is updated with the system, not with
//! cachekit; `rustls-native-certs` is also already in the tree through
//! the Redis backend's TLS.

use std::io;
use std::path::Path;
use std::sync::Arc;

use cachekit_core::{ConfigOrigin, Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::MemcachedBackendConfig;

/// The TLS side of a backend's connections, shared by its pools.
pub(crate) struct Tls {
    /// Made once per backend.
    connector: TlsConnector,
    /// `tls_server_name`: checked instead of each server's host.
    server_name: Option<ServerName<'static>>,
    /// Whether a client certificate is configured (for the messages).
    client_auth: bool,
}

impl Tls {
    /// The TLS side for `config`, or `None` when `tls` is off. Reads the
    /// PEM files now: an unreadable or invalid one is an `Error::Config`
    /// naming the setting and the path.
    pub(crate) fn new(config: &MemcachedBackendConfig) -> Result<Option<Arc<Tls>>> {
        if !config.tls {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| config_error("tls", format!("rustls: {error}")))?;
        let builder = if config.tls_danger_accept_invalid_certs {
            // Once per backend built: each one that skips the check says so.
            tracing::warn!(
                "memcached.tls_danger_accept_invalid_certs is on: server certificates are NOT checked, \
                 anyone on the path can read and change the traffic; for tests only"
            );
            let verifier = AcceptAnyCert(provider.signature_verification_algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            builder.with_root_certificates(roots(config.tls_ca_file.as_deref())?)
        };
        let client_config = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = certificates("tls_cert_file", cert_file)?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
                    config_error(
                        "tls_key_file",
                        format!("{}: no usable PEM private key: {error}", key_file.display()),
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    config_error(
                        "tls_key_file",
                        format!(
                            "{}: the key does not go with {}: {error}",
                            key_file.display(),
                            cert_file.display()
                        ),
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        let server_name = match &config.tls_server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                config_error(
                    "tls_server_name",
                    format!("{name:?} is not a DNS name or an IP address"),
                )
            })?),
            None => None,
        };
        Ok(Some(Arc::new(Tls {
            connector: TlsConnector::from(Arc::new(client_config)),
            server_name,
            client_auth: config.tls_cert_file.is_some(),
        })))
    }

    /// Runs the TLS handshake on `stream`, connected to `address`
    /// (`host:port`), then a no-op round trip (`mn`), by which a server
    /// that refuses the client's certificate (or its absence) says so: in
    /// TLS 1.3 it does after the client's side of the handshake is done.
    /// The caller bounds the whole by the connect timeout. Returns the
    /// stream and the session, for the connection to drive.
    pub(crate) async fn connect(
        &self,
        address: &str,
        stream: TcpStream,
    ) -> std::result::Result<(TcpStream, ClientConnection), String> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => host_name(address)?,
        };
        let mut stream = self
            .connector
            .connect(name, stream)
            .await
            .map_err(|error| self.explain(&error))?;
        let mut answer = [0_u8; 4];
        let round_trip = async {
            stream.write_all(b"mn\r\n").await?;
            stream.flush().await?;
            stream.read_exact(&mut answer).await.map(drop)
        };
        round_trip.await.map_err(|error| self.explain(&error))?;
        if &answer != b"MN\r\n" {
            return Err(format!(
                "TLS: the server's answer to mn was {:?}, not MN: is it memcached?",
                String::from_utf8_lossy(&answer)
            ));
        }
        Ok(stream.into_inner())
    }

    /// What a failed handshake (or the first round trip over it) means,
    /// and which setting to change.
    fn explain(&self, error: &io::Error) -> String {
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let cause = match rustls_error {
            Some(rustls::Error::InvalidCertificate(certificate)) => match certificate {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    "the server's certificate is not signed by a trusted CA: set memcached.tls_ca_file to the CA that signed it".to_owned()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "the server's certificate is not valid for the name checked (memcached.tls_server_name if set, else the server's host): set memcached.tls_server_name to a name the certificate is for".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the server's certificate has expired: renew it on the server".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "the server's certificate is not valid yet: check the clocks".to_owned()
                }
                other => format!(
                    "the server's certificate is invalid ({other:?}): check it, or memcached.tls_ca_file"
                ),
            },
            Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
                "the server does not speak TLS: turn memcached.tls off or point at its TLS port".to_owned()
            }
            Some(rustls::Error::AlertReceived(
                alert @ (AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied
                | AlertDescription::DecryptError),
            )) if self.client_auth => format!(
                "the server refused our client certificate ({alert:?}): check that memcached.tls_cert_file is signed by a CA the server trusts, and goes with memcached.tls_key_file"
            ),
            Some(rustls::Error::AlertReceived(
                alert @ (AlertDescription::CertificateRequired
                | AlertDescription::HandshakeFailure
                | AlertDescription::BadCertificate),
            )) if !self.client_auth => format!(
                "the server requires a client certificate ({alert:?}): set memcached.tls_cert_file and memcached.tls_key_file"
            ),
            Some(rustls::Error::AlertReceived(alert)) => {
                format!("the server ended the handshake with the alert {alert:?}")
            }
            Some(other) => format!("{other}"),
            None if error.kind() == io::ErrorKind::UnexpectedEof => {
                "the server closed the connection during the handshake: does it speak TLS on this port (memcached -Z), or does it require a client certificate (memcached.tls_cert_file and memcached.tls_key_file)?".to_owned()
            }
            None => error.to_string(),
        };
        format!("TLS: {cause}")
    }
}

/// The name to check the certificate of the server at `address`
/// (`host:port`, `[v6]:port`) for: its host.
fn host_name(address: &str) -> std::result::Result<ServerName<'static>, String> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| {
        format!(
            "TLS: the host {host:?} is not a DNS name or an IP address: set memcached.tls_server_name"
        )
    })
}

impl std::fmt::Debug for Tls {
    /// The server name and whether a client certificate is set (the
    /// connector shows nothing).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// The roots: the certificates of `ca_file`, or the platform's.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for certificate in certificates("tls_ca_file", path)? {
                roots.add(certificate).map_err(|error| {
                    config_error(
                        "tls_ca_file",
                        format!("{}: not a CA certificate: {error}", path.display()),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(config_error(
                    "tls_ca_file",
                    format!(
                        "no CA certificate found on the platform ({} errors): set memcached.tls_ca_file",
                        found.errors.len()
                    ),
                ));
            }
        }
    }
    Ok(roots)
}

/// The certificates in the PEM file at `path`, at least one, for `field`.
fn certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let invalid = |reason: String| config_error(field, format!("{}: {reason}", path.display()));
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| invalid(format!("cannot be read: {error}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("not valid PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid("holds no PEM certificate".to_owned()));
    }
    Ok(certificates)
}

/// An `Error::Config` of `memcached.{field}`.
fn config_error(field: &str, reason: String) -> Error {
    Error::Config {
        setting: format!("memcached.{field}"),
        origin: ConfigOrigin::Code,
        reason,
    }
}

/// The verifier of `tls_danger_accept_invalid_certs`: takes any server
/// certificate, and still checks the handshake's signatures with it.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use rustls::pki_types::{DnsName, ServerName};

    use super::host_name;

    #[test]
    fn the_name_checked_is_the_host_of_the_address() {
        let dns = |name: &str| ServerName::DnsName(DnsName::try_from(name.to_owned()).unwrap());
        let ip = |ip: IpAddr| ServerName::IpAddress(ip.into());
        assert_eq!(host_name("mc1.internal:11211"), Ok(dns("mc1.internal")));
        assert_eq!(host_name("localhost:11211"), Ok(dns("localhost")));
        assert_eq!(
            host_name("127.0.0.1:11211"),
            Ok(ip(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
        assert_eq!(
            host_name("[::1]:11211"),
            Ok(ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
        );
        let error = host_name("bad_host!:11211").unwrap_err();
        assert!(error.contains("memcached.tls_server_name"), "{error}");
    }
}
