//! Certificates for the TLS tests, made with `rcgen` in a temporary
//! directory, and the memcached command lines that serve TLS with them.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};
use tempfile::TempDir;

use cachekit_core::backend::testkit::{ServerKind, ServerProcess};
use cachekit_memcached::MemcachedBackendConfig;

/// A CA, a server certificate for `127.0.0.1` and `localhost` signed by it,
/// an expired one, a client certificate signed by it, and an unrelated CA
/// with a client certificate of its own: PEM files in a directory removed
/// on drop.
pub struct Pki {
    /// Holds the files.
    dir: TempDir,
}

impl Pki {
    /// Makes the certificates and their keys.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write a PEM file");
        };
        let (ca, ca_key) = authority("cachekit test CA");
        write("ca.pem", ca.pem());
        let (other, other_key) = authority("unrelated test CA");
        write("other-ca.pem", other.pem());
        let leaf = |purpose, expired: bool, (ca, ca_key): (&Certificate, &KeyPair)| {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                    .expect("valid names");
            params.extended_key_usages = vec![purpose];
            if expired {
                params.not_before = date_time_ymd(2000, 1, 1);
                params.not_after = date_time_ymd(2001, 1, 1);
            }
            let key = KeyPair::generate().expect("a key");
            let certificate = params.signed_by(&key, ca, ca_key).expect("signed");
            (certificate.pem(), key.serialize_pem())
        };
        let ours = (&ca, &ca_key);
        let (server, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth, false, ours);
        write("server.pem", server);
        write("server-key.pem", server_key);
        let (expired, expired_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth, true, ours);
        write("expired.pem", expired);
        write("expired-key.pem", expired_key);
        let (client, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth, false, ours);
        write("client.pem", client);
        write("client-key.pem", client_key);
        let theirs = (&other, &other_key);
        let (stranger, stranger_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth, false, theirs);
        write("stranger.pem", stranger);
        write("stranger-key.pem", stranger_key);
        Pki { dir }
    }

    /// The path of the file `name` (`ca.pem`, `client-key.pem`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// memcached's arguments to serve TLS with the server certificate.
    pub fn server_args(&self) -> Vec<String> {
        self.args("server.pem", "server-key.pem", false)
    }

    /// memcached's arguments to serve TLS and require a client certificate
    /// signed by the CA.
    pub fn mutual_args(&self) -> Vec<String> {
        self.args("server.pem", "server-key.pem", true)
    }

    /// memcached's arguments to serve TLS with the expired certificate.
    pub fn expired_args(&self) -> Vec<String> {
        self.args("expired.pem", "expired-key.pem", false)
    }

    fn args(&self, cert: &str, key: &str, mutual: bool) -> Vec<String> {
        let mut options = format!(
            "ssl_chain_cert={},ssl_key={}",
            self.path(cert).display(),
            self.path(key).display()
        );
        if mutual {
            options.push_str(&format!(
                ",ssl_ca_cert={},ssl_verify_mode=2",
                self.path("ca.pem").display()
            ));
        }
        vec!["-Z".to_owned(), "-o".to_owned(), options]
    }

    /// `n` memcached servers serving TLS with the server certificate.
    pub fn servers(&self, n: usize) -> Vec<ServerProcess> {
        (0..n)
            .map(|_| ServerProcess::start_with_args(ServerKind::Memcached, self.server_args()))
            .collect()
    }

    /// Turns TLS on in `config`, trusting the CA.
    pub fn client(&self, config: &mut MemcachedBackendConfig) {
        config.tls = true;
        config.tls_ca_file = Some(self.path("ca.pem"));
    }
}

/// A self-signed CA certificate named `name`, and its key.
fn authority(name: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key");
    let certificate = params.self_signed(&key).expect("self-signed");
    (certificate, key)
}
