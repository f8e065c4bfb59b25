//! What a case is, what it needs, what it runs with, and how one runs: in a
//! tokio runtime of its own, within a time limit.

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::testkit::{RedisCluster, ServerKind, ServerProcess};
use crate::{Backend, Capabilities, key};

use super::MakeBackend;

/// The longest one case runs: a case still running then has hung, and fails.
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// The body of a case: an async check of the backend in `Ctx` that panics,
/// naming what failed, when the backend does not conform.
pub(super) type CaseFn = for<'a> fn(&'a Ctx) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One named check of one concept.
pub(super) struct Case {
    /// `topic::concept`, as listed after the configuration's label.
    pub(super) name: &'static str,
    /// What the backend must offer for the case to apply.
    pub(super) need: Need,
    /// The check.
    pub(super) run: CaseFn,
}

/// What a case needs of the backend; without it, the case is listed as
/// ignored with [`Need::kind`] as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Applies to every backend.
    Nothing,
    /// Expiry ([`Capabilities::ttl`]).
    Ttl,
    /// A longest TTL ([`Capabilities::max_ttl`]).
    MaxTtl,
    /// A value size limit ([`Capabilities::max_value_size`]).
    MaxValueSize,
    /// TTL inspection ([`Capabilities::ttl_inspect`]).
    TtlInspect,
    /// Touch ([`Capabilities::touch`]).
    Touch,
    /// A lock ([`Capabilities::lock`]).
    Lock,
    /// A server the kit starts and can stop.
    Server,
}

impl Need {
    /// Whether a backend with `capabilities` (and servers, if `has_server`)
    /// offers what the case needs.
    pub(super) fn met(self, capabilities: &Capabilities, has_server: bool) -> bool {
        match self {
            Need::Nothing => true,
            Need::Ttl => capabilities.ttl,
            Need::MaxTtl => capabilities.max_ttl.is_some(),
            Need::MaxValueSize => capabilities.max_value_size.is_some(),
            Need::TtlInspect => capabilities.ttl_inspect,
            Need::Touch => capabilities.touch,
            Need::Lock => capabilities.lock,
            Need::Server => has_server,
        }
    }

    /// The reason shown as the trial's kind when the need is not met.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Need::Nothing => "",
            Need::Ttl => "needs ttl",
            Need::MaxTtl => "needs max_ttl",
            Need::MaxValueSize => "needs max_value_size",
            Need::TtlInspect => "needs ttl_inspect",
            Need::Touch => "needs touch",
            Need::Lock => "needs lock",
            Need::Server => "needs a server",
        }
    }
}

/// The servers the kit started for one configuration, shared by its cases,
/// and how to build a backend over servers of the same kind.
pub(super) struct Fleet {
    /// Which program the servers run.
    pub(super) kind: ServerKind,
    /// The running servers (the nodes of one cluster, for
    /// [`ServerKind::RedisCluster`]); killed when the last case holding them
    /// ends.
    pub(super) servers: Vec<ServerProcess>,
    /// Arguments added to each server's command line.
    pub(super) args: Vec<OsString>,
    /// Builds the backend under test over given addresses.
    pub(super) make: Arc<MakeBackend>,
}

impl Fleet {
    /// Starts `count` servers of `kind`: for [`ServerKind::RedisCluster`],
    /// one cluster of `count` masters; else `count` independent servers,
    /// with `args` added to their command line.
    pub(super) fn start_servers(
        kind: ServerKind,
        count: usize,
        args: &[OsString],
    ) -> Vec<ServerProcess> {
        match kind {
            ServerKind::RedisCluster => RedisCluster::start(count).into_nodes(),
            ServerKind::Memcached | ServerKind::Redis => (0..count)
                .map(|_| ServerProcess::start_with_args(kind, args.iter().cloned()))
                .collect(),
        }
    }

    /// The servers' addresses, in order.
    pub(super) fn addresses(&self) -> Vec<String> {
        self.servers.iter().map(ServerProcess::address).collect()
    }
}

/// What a case runs with: a backend of its own, a key prefix of its own,
/// and (for a backend with servers) the means to start servers of its own.
pub(super) struct Ctx {
    /// The backend under test, built for this case.
    pub(super) backend: Arc<dyn Backend>,
    /// The configuration's label, for messages.
    label: String,
    /// Unique to the case and the run: the case can share a server.
    prefix: String,
    /// The configuration's servers, when it has some.
    fleet: Option<Arc<Fleet>>,
}

impl Ctx {
    /// A context for one case, with a fresh key prefix.
    pub(super) fn new(label: String, backend: Arc<dyn Backend>, fleet: Option<Arc<Fleet>>) -> Self {
        Ctx {
            backend,
            label,
            prefix: format!("conf-{}", &key::random_token()[..12]),
            fleet,
        }
    }

    /// A key unique to this case and run, ending in `name`.
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The key prefix of this case (keys from [`Ctx::key`] start with it and a colon).
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configuration's label, to start messages with.
    pub(super) fn name(&self) -> &str {
        &self.label
    }

    /// Starts servers of the configuration's kind and number (a cluster of
    /// its own, for [`ServerKind::RedisCluster`]), for this case alone, and
    /// builds a backend over them. `None` without servers.
    pub(super) fn own_servers(&self) -> Option<(Vec<ServerProcess>, Arc<dyn Backend>)> {
        let fleet = self.fleet.as_ref()?;
        let servers = tokio::task::block_in_place(|| {
            Fleet::start_servers(fleet.kind, fleet.servers.len(), &fleet.args)
        });
        let addresses: Vec<String> = servers.iter().map(ServerProcess::address).collect();
        let backend = (fleet.make)(&addresses).unwrap_or_else(|error| {
            panic!(
                "{}: cannot build a backend over new servers: {error}",
                self.label
            )
        });
        Some((servers, backend))
    }
}

/// The runtime a case runs in: multi-thread, 2 workers, all drivers.
pub(super) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Runs `case` with the context `setup` builds (in the case's runtime),
/// within [`CASE_LIMIT`]. A failed check panics, and the trial reports the
/// panic's message; a case that does not end in time is an error.
pub(super) fn run(case: &Case, setup: impl FnOnce() -> Result<Ctx, String>) -> Result<(), String> {
    let runtime = runtime().map_err(|error| format!("cannot build a tokio runtime: {error}"))?;
    let ctx = {
        let _entered = runtime.enter();
        setup()?
    };
    let outcome =
        runtime.block_on(async { tokio::time::timeout(CASE_LIMIT, (case.run)(&ctx)).await });
    drop(ctx);
    outcome.map_err(|_| {
        format!(
            "{}: did not finish within {CASE_LIMIT:?} (a call hangs?)",
            case.name
        )
    })
}
