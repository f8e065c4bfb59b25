//! The declared limits, at their boundaries: unsafe keys, the longest key,
//! the largest value, and the longest TTL.

use std::time::Duration;

use bytes::Bytes;

use super::case::{Case, Ctx, Need};
use crate::{Error, KeyTtl};

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "limits::unsafe_keys_refused",
        need: Need::Nothing,
        run: |c| Box::pin(unsafe_keys_refused(c)),
    },
    Case {
        name: "limits::max_key_len_boundary",
        need: Need::Nothing,
        run: |c| Box::pin(max_key_len_boundary(c)),
    },
    Case {
        name: "limits::max_value_size_boundary",
        need: Need::MaxValueSize,
        run: |c| Box::pin(max_value_size_boundary(c)),
    },
    Case {
        name: "limits::ttl_clamp",
        need: Need::MaxTtl,
        run: |c| Box::pin(ttl_clamp(c)),
    },
];

/// A key of exactly `len` bytes starting with the case's prefix.
pub(super) fn key_of_len(c: &Ctx, len: usize) -> String {
    let head = format!("{}:", c.prefix());
    assert!(
        len >= head.len(),
        "a key of {len} bytes has no room for the prefix"
    );
    format!("{head}{}", "k".repeat(len - head.len()))
}

/// Keys with spaces, control characters, NUL, non-ASCII, or nothing at
/// all are `InvalidKey` for `set` and `get`.
async fn unsafe_keys_refused(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    for key in [
        "has space",
        "crlf\r\nflush_all",
        "",
        "nul\0",
        "tab\tkey",
        "ключ",
    ] {
        let set = b.set(key, Bytes::from_static(b"v"), None).await;
        assert!(
            matches!(set, Err(Error::InvalidKey { .. })),
            "{name}: set({key:?}) must be InvalidKey, got {set:?}"
        );
        let get = b.get(key).await;
        assert!(
            matches!(get, Err(Error::InvalidKey { .. })),
            "{name}: get({key:?}) must be InvalidKey, got {get:?}"
        );
    }
}

/// A key of exactly `max_key_len` bytes works for every operation; one
/// byte more is `InvalidKey` for every operation.
async fn max_key_len_boundary(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let max = b.capabilities().max_key_len;
    let longest = key_of_len(c, max);
    let value = Bytes::from_static(b"at the limit");
    b.set(&longest, value.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{name}: a key of max_key_len ({max}) bytes must work: {e}"));
    assert_eq!(
        b.get(&longest).await.unwrap(),
        Some(value.clone()),
        "{name}: a key of max_key_len bytes round-trips"
    );
    assert_eq!(
        b.get_many(&[longest.as_str()]).await.unwrap(),
        vec![Some(value)],
        "{name}: get_many of a key of max_key_len bytes"
    );
    assert!(
        b.exists(&longest).await.unwrap(),
        "{name}: exists at max_key_len"
    );
    assert!(
        b.delete(&longest).await.unwrap(),
        "{name}: delete at max_key_len"
    );

    let over = key_of_len(c, max + 1);
    let v = || Bytes::from_static(b"v");
    let refusals = [
        ("set", b.set(&over, v(), None).await.err()),
        ("get", b.get(&over).await.err()),
        ("exists", b.exists(&over).await.err()),
        ("delete", b.delete(&over).await.err()),
        ("get_many", b.get_many(&[over.as_str()]).await.err()),
        (
            "set_many",
            b.set_many(&[(over.as_str(), v())], None).await.err(),
        ),
    ];
    for (operation, error) in refusals {
        assert!(
            matches!(error, Some(Error::InvalidKey { .. })),
            "{name}: {operation} of a key of max_key_len + 1 ({}) bytes must be InvalidKey, got {error:?}",
            max + 1
        );
    }
}

/// A value of exactly `max_value_size` bytes round-trips, under a short key
/// and under the longest; one byte more is `ValueTooLarge` stating the size
/// and the limit, and is not stored.
///
/// It runs on servers of its own when the backend has servers: moving a
/// value this large keeps a server busy for seconds (512 MiB on Redis), and
/// the leases of the lock cases sharing that server would run out meanwhile.
async fn max_value_size_boundary(c: &Ctx) {
    let own = c.own_servers();
    let b = own.as_ref().map_or(&c.backend, |(_, backend)| backend);
    let name = c.name();
    let caps = b.capabilities();
    let limit = caps.max_value_size.expect("gated on max_value_size");
    let at_limit = Bytes::from(vec![b'v'; limit]);
    for k in [c.key("largest"), key_of_len(c, caps.max_key_len)] {
        b.set(&k, at_limit.clone(), None).await.unwrap_or_else(|e| {
            panic!("{name}: a value of max_value_size ({limit}) bytes must be stored: {e}")
        });
        let back = b.get(&k).await.unwrap();
        assert!(
            back.as_ref() == Some(&at_limit),
            "{name}: a value of max_value_size bytes round-trips under a key of {} bytes (got {:?} bytes)",
            k.len(),
            back.map(|v| v.len())
        );
        b.delete(&k).await.unwrap();
    }

    let k = c.key("too-large");
    let over = Bytes::from(vec![0u8; limit + 1]);
    let results = [
        ("set", b.set(&k, over.clone(), None).await),
        (
            "set_many",
            b.set_many(&[(k.as_str(), over.clone())], None).await,
        ),
    ];
    for (operation, result) in results {
        match result {
            Err(Error::ValueTooLarge {
                size,
                limit: reported,
            }) => assert_eq!(
                (size, reported),
                (limit + 1, limit),
                "{name}: {operation}: ValueTooLarge states size and limit"
            ),
            other => panic!(
                "{name}: {operation} of a value of max_value_size + 1 bytes must be ValueTooLarge, got {other:?}"
            ),
        }
    }
    assert_eq!(
        b.get(&k).await.unwrap(),
        None,
        "{name}: a refused value is not stored"
    );
}

/// A TTL at or over `max_ttl` is clamped, not refused: the entry is stored
/// and does not expire at once (and, with TTL inspection, lives at most
/// `max_ttl`).
async fn ttl_clamp(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let max = b.capabilities().max_ttl.expect("gated on max_ttl");
    for (label, ttl) in [
        ("max", max),
        ("max+1s", max + Duration::from_secs(1)),
        ("3max", max * 3),
    ] {
        let k = c.key(&format!("clamped-{label}"));
        b.set(&k, Bytes::from_static(b"v"), Some(ttl))
            .await
            .unwrap_or_else(|e| {
                panic!("{name}: a TTL of {ttl:?} (max_ttl {max:?}) is clamped, not refused: {e}")
            });
        assert!(
            b.get(&k).await.unwrap().is_some(),
            "{name}: a TTL of {ttl:?} clamped to {max:?} must not expire the entry at once"
        );
        if let Some(inspect) = b.as_ttl_inspect() {
            match inspect.ttl(&k).await.unwrap() {
                KeyTtl::Expires(left) => assert!(
                    left <= max,
                    "{name}: a TTL of {ttl:?} left {left:?}, over max_ttl {max:?}"
                ),
                other => panic!("{name}: a clamped TTL of {ttl:?} reads as {other:?}"),
            }
        }
        b.delete(&k).await.unwrap();
    }
}
