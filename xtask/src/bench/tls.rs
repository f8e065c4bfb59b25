//! The TLS memcached servers of the Memcached benchmark: three more, started
//! with `-Z` and a certificate for 127.0.0.1 signed by a throwaway CA, both
//! made here with the `openssl` command (xtask stays plain std). The
//! benchmark finds them in `CACHEKIT_BENCH_MEMCACHED_TLS` and trusts the CA
//! in `CACHEKIT_BENCH_MEMCACHED_TLS_CA`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::memcached;
use super::pin::Pinning;
use super::server::ServerProcess;
use crate::cmd::{self, Result};

/// The variables that tell the benchmark about the TLS servers.
pub(super) const SERVERS_VAR: &str = "CACHEKIT_BENCH_MEMCACHED_TLS";
pub(super) const CA_VAR: &str = "CACHEKIT_BENCH_MEMCACHED_TLS_CA";

/// Makes the certificates in `target/bench-tls` and starts the servers:
/// them, their addresses (comma-separated) and the CA's path.
pub(super) fn start(pinning: Pinning) -> Result<(Vec<ServerProcess>, String, PathBuf)> {
    let dir = crate::project::target_dir().join("bench-tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (ca, cert, key) = certificates(&dir)?;
    let tls_args = vec![
        "-Z".to_owned(),
        "-o".to_owned(),
        format!(
            "ssl_chain_cert={},ssl_key={}",
            cert.display(),
            key.display()
        ),
    ];
    let servers: Vec<ServerProcess> = (0..memcached::SERVERS)
        .map(|_| memcached::start_one(pinning, &tls_args))
        .collect::<Result<_>>()?;
    let addresses: Vec<String> = servers.iter().map(ServerProcess::address).collect();
    Ok((servers, addresses.join(","), ca))
}

/// A CA and a server certificate for 127.0.0.1 signed by it (P-256 keys,
/// two days): the paths of the CA, the certificate and its key.
fn certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let path = |name: &str| dir.join(name);
    let (ca_key, ca, key, csr, cert, ext) = (
        path("ca.key"),
        path("ca.pem"),
        path("server.key"),
        path("server.csr"),
        path("server.pem"),
        path("server.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| format!("{}: {e}", ext.display()))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(|c| {
        c.args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(&ca_key);
        c.arg("-out").arg(&ca);
        c.args(["-days", "2", "-subj", "/CN=cachekit bench CA"]);
    })?;
    openssl(|c| {
        c.arg("req")
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr);
        c.args(["-subj", "/CN=127.0.0.1"]);
    })?;
    openssl(|c| {
        c.args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca);
        c.arg("-CAkey")
            .arg(&ca_key)
            .args(["-CAcreateserial", "-days", "2"]);
        c.arg("-out").arg(&cert).arg("-extfile").arg(&ext);
    })?;
    Ok((ca, cert, key))
}

/// Runs `openssl` with the arguments `args` adds, quietly.
fn openssl(args: impl FnOnce(&mut Command)) -> Result {
    let mut command = Command::new("openssl");
    args(&mut command);
    command.stdout(std::process::Stdio::null());
    command.stderr(std::process::Stdio::null());
    cmd::run(&mut command).map_err(|e| {
        format!("{e}: the TLS rows need the `openssl` command (apt-get install openssl)")
    })
}
