//! The conformance kit every backend runs: named cases, one concept each,
//! run as the trials of a `harness = false` test binary by `libtest-mimic`
//! (the model is OpenDAL's behaviour tests).
//!
//! A case that needs a capability the backend does not declare, or a server
//! the kit can stop, is still listed, as ignored, with what it needs as its
//! kind (`[needs lock]`): nothing is skipped silently.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use cachekit_core::MemoryBackend;
//! // tests/conformance.rs, with `[[test]] name = "conformance" harness = false`:
//! fn main() -> std::process::ExitCode {
//!     cachekit_core::backend::testkit::Conformance::in_process(|| Arc::new(MemoryBackend::new())).run()
//! }
//! ```

mod basics;
mod batch;
mod case;
mod concurrency;
mod faults;
mod freshness;
mod limits;
mod lock;
mod tags;
mod ttl;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::{Backend, Result};

use super::{RedisCluster, ServerKind};
use case::{Case, Ctx, Fleet};

/// Builds the backend under test from the addresses (`"127.0.0.1:PORT"`) of
/// the servers the kit started (none for an in-process backend).
type MakeBackend = dyn Fn(&[String]) -> Result<Arc<dyn Backend>> + Send + Sync;

/// Every case, by topic, in the order they are listed.
const CASES: &[&[Case]] = &[
    basics::CASES,
    limits::CASES,
    ttl::CASES,
    lock::CASES,
    concurrency::CASES,
    freshness::CASES,
    batch::CASES,
    tags::CASES,
    faults::CASES,
];

/// One backend configuration to run the conformance kit against: how to
/// build the backend, and which servers (if any) the kit starts for it.
///
/// Each case builds a backend of its own (in a tokio runtime of its own,
/// multi-thread with 2 workers) and uses keys unique to it, so the cases run
/// in parallel on one set of servers. The cases that stop a server start
/// servers of their own.
pub struct Conformance {
    /// The first part of every trial name; the backend's name by default.
    label: Option<String>,
    /// The servers the kit starts: which program, how many.
    servers: Option<(ServerKind, usize)>,
    /// Arguments added to each server's command line.
    server_args: Vec<OsString>,
    /// Builds the backend under test.
    make: Arc<MakeBackend>,
}

impl Conformance {
    /// The kit for a backend that needs no server: `make` builds a fresh one
    /// for each case. Cases that stop a server are listed as ignored.
    pub fn in_process(make: impl Fn() -> Arc<dyn Backend> + Send + Sync + 'static) -> Self {
        Conformance {
            label: None,
            servers: None,
            server_args: Vec::new(),
            make: Arc::new(move |_: &[String]| Ok(make())),
        }
    }

    /// The kit for a backend over one `kind` server, which the kit starts on
    /// loopback: `make` builds a backend for its address.
    pub fn with_server(
        kind: ServerKind,
        make: impl Fn(&str) -> Result<Arc<dyn Backend>> + Send + Sync + 'static,
    ) -> Self {
        Self::with_servers(kind, 1, move |addresses: &[String]| make(&addresses[0]))
    }

    /// The kit for a backend over `count` servers of `kind` (a fleet), which
    /// the kit starts on loopback: `make` builds a backend for their addresses.
    ///
    /// For [`ServerKind::RedisCluster`], the kit starts one cluster of
    /// `count` masters ([`RedisCluster`]) and `make` gets every node's
    /// address; the cases that stop servers start a cluster of their own and
    /// stop all its nodes.
    ///
    /// # Panics
    ///
    /// If `count` is 0, or under [`RedisCluster::MIN_MASTERS`] for a cluster.
    pub fn with_servers(
        kind: ServerKind,
        count: usize,
        make: impl Fn(&[String]) -> Result<Arc<dyn Backend>> + Send + Sync + 'static,
    ) -> Self {
        assert!(count > 0, "a backend with servers needs at least one");
        assert!(
            kind != ServerKind::RedisCluster || count >= RedisCluster::MIN_MASTERS,
            "a Redis Cluster needs at least {} masters, not {count}",
            RedisCluster::MIN_MASTERS
        );
        Conformance {
            label: None,
            servers: Some((kind, count)),
            server_args: Vec::new(),
            make: Arc::new(make),
        }
    }

    /// Adds `args` to the command line of every server the kit starts for
    /// this configuration (as [`ServerProcess::start_with_args`] does): for
    /// memcached over TLS, `-Z` and its `-o ssl_*` options.
    ///
    /// [`ServerProcess::start_with_args`]: crate::backend::testkit::ServerProcess::start_with_args
    pub fn server_args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.server_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Names this configuration in the trial names (`label::topic::case`),
    /// to tell several configurations of one backend apart in one binary.
    pub fn named(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The trials of this configuration, for a binary that runs other
    /// trials too. Starts the servers (they stop when the last trial is
    /// dropped) and builds one backend to read its capabilities.
    ///
    /// # Panics
    ///
    /// If a server cannot be started or the backend cannot be built.
    pub fn trials(&self) -> Vec<Trial> {
        let fleet = self.servers.map(|(kind, count)| {
            Arc::new(Fleet {
                kind,
                servers: Fleet::start_servers(kind, count, &self.server_args),
                args: self.server_args.clone(),
                make: Arc::clone(&self.make),
            })
        });
        let addresses = fleet.as_ref().map(|f| f.addresses()).unwrap_or_default();
        let (capabilities, name) = {
            let runtime = case::runtime().expect("a tokio runtime for the conformance kit");
            let _entered = runtime.enter();
            let probe = (self.make)(&addresses)
                .unwrap_or_else(|error| panic!("conformance: cannot build the backend: {error}"));
            (probe.capabilities(), probe.name())
        };
        let label = self.label.clone().unwrap_or_else(|| name.to_owned());
        CASES
            .iter()
            .flat_map(|topic| topic.iter())
            .map(|case| {
                let applies = case.need.met(&capabilities, fleet.is_some());
                let trial_name = format!("{label}::{}", case.name);
                let (label, make, fleet) = (label.clone(), Arc::clone(&self.make), fleet.clone());
                let addresses = addresses.clone();
                Trial::test(trial_name, move || {
                    case::run(case, || {
                        let backend = make(&addresses)
                            .map_err(|error| format!("cannot build the backend: {error}"))?;
                        Ok(Ctx::new(label, backend, fleet))
                    })
                    .map_err(Failed::from)
                })
                .with_kind(if applies { "" } else { case.need.kind() })
                .with_ignored_flag(!applies)
            })
            .collect()
    }

    /// Runs every trial of this configuration as a test binary: parses the
    /// libtest arguments of the command line (filters, `--list`,
    /// `--ignored`, ...), runs the trials and returns the exit code.
    pub fn run(self) -> ExitCode {
        Self::run_all([self])
    }

    /// Runs the trials of several configurations in one test binary, as
    /// [`Conformance::run`] does for one. Name them apart with
    /// [`Conformance::named`].
    pub fn run_all(configurations: impl IntoIterator<Item = Conformance>) -> ExitCode {
        let arguments = Arguments::from_args();
        let trials = configurations
            .into_iter()
            .flat_map(|configuration| configuration.trials())
            .collect();
        libtest_mimic::run(&arguments, trials).exit_code()
    }
}

impl std::fmt::Debug for Conformance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conformance")
            .field("label", &self.label)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}
