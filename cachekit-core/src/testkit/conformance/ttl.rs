//! Time to live: expiry, touch and TTL inspection, each where declared.

use std::time::Duration;

use bytes::Bytes;

use super::case::{Case, Ctx, Need};
use crate::{Backend, KeyTtl};

/// Longest the cases wait for an entry to expire (TTLs are whole seconds on
/// some servers, and memcached's clock ticks once a second).
const EXPIRY_WAIT: Duration = Duration::from_secs(4);

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "ttl::expiry",
        need: Need::Ttl,
        run: |c| Box::pin(expiry(c)),
    },
    Case {
        name: "ttl::touch",
        need: Need::Touch,
        run: |c| Box::pin(touch(c)),
    },
    Case {
        name: "ttl::inspect",
        need: Need::TtlInspect,
        run: |c| Box::pin(inspect(c)),
    },
];

/// An entry with a 1 s TTL is gone within [`EXPIRY_WAIT`]; one without a
/// TTL stays.
async fn expiry(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let (short, forever) = (c.key("expiring"), c.key("forever"));
    b.set(
        &short,
        Bytes::from_static(b"v"),
        Some(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    b.set(&forever, Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    assert!(
        b.get(&short).await.unwrap().is_some(),
        "{name}: present before its TTL"
    );
    wait_until_gone(&**b, &short, name).await;
    assert!(
        b.get(&forever).await.unwrap().is_some(),
        "{name}: no TTL means no expiry"
    );
    b.delete(&forever).await.unwrap();
}

/// Touch extends the TTL of a present key, and reports a missing one.
async fn touch(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let touch = b.as_touch().expect("gated on touch");
    let k = c.key("touched");
    b.set(&k, Bytes::from_static(b"v"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(
        touch
            .touch(&k, Some(Duration::from_secs(100)))
            .await
            .unwrap(),
        "{name}: touch of a present key"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        b.get(&k).await.unwrap().is_some(),
        "{name}: touch must extend the TTL"
    );
    assert!(
        !touch.touch(&c.key("untouched"), None).await.unwrap(),
        "{name}: touch of a missing key"
    );
    b.delete(&k).await.unwrap();
}

/// The remaining TTL of an expiring key, a key without expiry, and a
/// missing key.
async fn inspect(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let inspect = b.as_ttl_inspect().expect("gated on ttl_inspect");
    let (k, forever) = (c.key("inspected"), c.key("inspected-forever"));
    b.set(&k, Bytes::from_static(b"v"), Some(Duration::from_secs(100)))
        .await
        .unwrap();
    b.set(&forever, Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    match inspect.ttl(&k).await.unwrap() {
        KeyTtl::Expires(left) => assert!(
            left <= Duration::from_secs(100) && left >= Duration::from_secs(90),
            "{name}: remaining TTL {left:?} for a 100 s entry"
        ),
        other => panic!("{name}: ttl of an expiring key gave {other:?}"),
    }
    assert_eq!(
        inspect.ttl(&forever).await.unwrap(),
        KeyTtl::Forever,
        "{name}: ttl of a key without expiry"
    );
    assert_eq!(
        inspect.ttl(&c.key("absent")).await.unwrap(),
        KeyTtl::Missing,
        "{name}: ttl of a missing key"
    );
    b.delete(&k).await.unwrap();
    b.delete(&forever).await.unwrap();
}

/// Polls `key` every 100 ms until it is gone; panics after [`EXPIRY_WAIT`].
async fn wait_until_gone(backend: &dyn Backend, key: &str, name: &str) {
    let deadline = tokio::time::Instant::now() + EXPIRY_WAIT;
    while tokio::time::Instant::now() < deadline {
        if backend.get(key).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name}: an entry with a 1 s TTL was still there after {EXPIRY_WAIT:?}");
}
