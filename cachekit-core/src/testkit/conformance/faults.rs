//! A dead server, on servers the case starts and stops itself: every call
//! ends, in time, with `Unavailable` or `Timeout`, and `health` fails; keys
//! and values over the limits are still refused as such, before sending.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::case::{Case, Ctx, Need};
use super::limits::key_of_len;
use crate::backend::testkit::ServerProcess;
use crate::{Backend, Error, LockToken, Result};

/// The longest a call to a dead server may take: far over any sane
/// operation timeout, far under "hangs".
const DEAD_BOUND: Duration = Duration::from_secs(10);

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "faults::dead_server_fails_fast",
        need: Need::Server,
        run: |c| Box::pin(dead_server_fails_fast(c)),
    },
    Case {
        name: "faults::limits_checked_before_sending",
        need: Need::Server,
        run: |c| Box::pin(limits_checked_before_sending(c)),
    },
];

/// Servers of the case's own, running with a backend over them, and then
/// stopped.
async fn stopped_servers(c: &Ctx) -> (Vec<ServerProcess>, std::sync::Arc<dyn Backend>) {
    let name = c.name();
    let (mut servers, backend) = c.own_servers().expect("gated on a server");
    let k = c.key("before-the-stop");
    backend
        .set(&k, Bytes::from_static(b"v"), None)
        .await
        .unwrap_or_else(|e| panic!("{name}: set on new servers: {e}"));
    assert_eq!(
        backend.get(&k).await.unwrap().as_deref(),
        Some(&b"v"[..]),
        "{name}: read back on new servers"
    );
    tokio::task::block_in_place(|| servers.iter_mut().for_each(ServerProcess::stop));
    (servers, backend)
}

/// Awaits `call`, which must end within [`DEAD_BOUND`] with an error that
/// `expected` accepts; panics naming `operation` otherwise.
async fn ends_with<T: std::fmt::Debug>(
    name: &str,
    operation: &str,
    call: impl Future<Output = Result<T>>,
    expected: fn(&Error) -> bool,
) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(DEAD_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{name}: {operation} did not end within {DEAD_BOUND:?}"));
    match outcome {
        Err(error) if expected(&error) => {
            eprintln!("measured: {name}: {operation}: {:?}", started.elapsed());
        }
        other => panic!(
            "{name}: {operation} gave {other:?} after {:?}",
            started.elapsed()
        ),
    }
}

/// Whether `error` is what a dead server must give.
fn unavailable_or_timeout(error: &Error) -> bool {
    matches!(error, Error::Unavailable { .. } | Error::Timeout { .. })
}

/// With every server stopped, each operation (the optional ones included)
/// ends within [`DEAD_BOUND`] with `Unavailable` or `Timeout`, and `health`
/// fails the same way.
async fn dead_server_fails_fast(c: &Ctx) {
    let name = c.name();
    let (_servers, backend) = stopped_servers(c).await;
    let b = &*backend;
    let (k, v) = (c.key("dead"), Bytes::from_static(b"v"));
    let dead = unavailable_or_timeout;
    ends_with(name, "health", b.health(), dead).await;
    ends_with(name, "get", b.get(&k), dead).await;
    ends_with(name, "set", b.set(&k, v.clone(), None), dead).await;
    ends_with(name, "exists", b.exists(&k), dead).await;
    ends_with(name, "delete", b.delete(&k), dead).await;
    ends_with(name, "get_many", b.get_many(&[k.as_str()]), dead).await;
    ends_with(name, "set_many", b.set_many(&[(k.as_str(), v)], None), dead).await;
    if let Some(touch) = b.as_touch() {
        ends_with(name, "touch", touch.touch(&k, None), dead).await;
    }
    if let Some(inspect) = b.as_ttl_inspect() {
        ends_with(name, "ttl", inspect.ttl(&k), dead).await;
    }
    if let Some(lock) = b.as_lock() {
        ends_with(name, "try_lock", lock.try_lock(&k, DEAD_BOUND), dead).await;
        let token = LockToken::random();
        ends_with(name, "unlock", lock.unlock(&k, &token), dead).await;
    }
    // A second health check after the failures above (which may have
    // ejected the servers) still fails.
    ends_with(name, "health again", b.health(), dead).await;
}

/// With every server stopped, a key over `max_key_len` (or unsafe) is
/// still `InvalidKey` and a value over `max_value_size` still
/// `ValueTooLarge`: the backend refuses them itself, without sending.
async fn limits_checked_before_sending(c: &Ctx) {
    let name = c.name();
    let (_servers, backend) = stopped_servers(c).await;
    let b = &*backend;
    let caps = b.capabilities();
    let over = key_of_len(c, caps.max_key_len + 1);
    let v = || Bytes::from_static(b"v");
    let invalid_key = |e: &Error| matches!(e, Error::InvalidKey { .. });
    ends_with(
        name,
        "get of a key over max_key_len",
        b.get(&over),
        invalid_key,
    )
    .await;
    ends_with(
        name,
        "set of a key over max_key_len",
        b.set(&over, v(), None),
        invalid_key,
    )
    .await;
    ends_with(
        name,
        "set of an unsafe key",
        b.set("a b", v(), None),
        invalid_key,
    )
    .await;
    if let Some(limit) = caps.max_value_size {
        let large = Bytes::from(vec![0u8; limit + 1]);
        let too_large = |e: &Error| matches!(e, Error::ValueTooLarge { .. });
        let k = c.key("too-large");
        ends_with(
            name,
            "set of a value over max_value_size",
            b.set(&k, large, None),
            too_large,
        )
        .await;
    }
}
