//! Tags through a [`Cache`] over the backend: invalidating a tag from one
//! cache makes every entry written with it a miss in another (a process of
//! its own), with one write and no scan; entries of other tags stay.

use std::sync::Arc;
use std::time::Duration;

use super::case::{Case, Ctx, Need};
use crate::{Cache, ConfigSource};

const TTL: Option<Duration> = Some(Duration::from_secs(60));

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "tags::invalidated_in_one_cache_missed_in_another",
        need: Need::Nothing,
        run: |c| Box::pin(invalidated_in_one_cache_missed_in_another(c)),
    },
    Case {
        name: "tags::lost_generation_reads_as_miss",
        need: Need::Nothing,
        run: |c| Box::pin(lost_generation_reads_as_miss(c)),
    },
    Case {
        name: "tags::invalidated_while_loading_reads_as_miss",
        need: Need::Nothing,
        run: |c| Box::pin(invalidated_while_loading_reads_as_miss(c)),
    },
    Case {
        name: "tags::one_load_across_caches",
        need: Need::Lock,
        run: |c| Box::pin(one_load_across_caches(c)),
    },
];

/// A cache over the case's backend in `namespace`, without L1.
fn cache(c: &Ctx, namespace: &str) -> Cache {
    Cache::builder()
        .shared_backend(Arc::clone(&c.backend))
        .namespace(namespace)
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap_or_else(|error| panic!("{}: cannot build a cache: {error}", c.name()))
}

/// The value under `key` with `tags`, and whether the loader ran.
async fn read(cache: &Cache, key: &str, tags: &[&str], fresh: &str) -> (String, bool) {
    let fresh = fresh.to_owned();
    let mut loaded = false;
    let value = cache
        .get_or_insert_tagged(key, TTL, tags, || async {
            loaded = true;
            fresh
        })
        .await;
    (value, loaded)
}

async fn invalidated_in_one_cache_missed_in_another(c: &Ctx) {
    let name = c.name();
    // The case's prefix as namespace: cases share servers.
    let namespace = c.prefix().replace(':', "-");
    let (writer, reader) = (cache(c, &namespace), cache(c, &namespace));
    let entries: [(&str, &[&str]); 4] = [
        ("user-42-profile", &["user:42"]),
        ("user-42-orders", &["user:42", "orders"]),
        ("user-7-orders", &["user:7", "orders"]),
        ("untagged", &[]),
    ];
    for (key, tags) in entries {
        assert_eq!(
            read(&writer, key, tags, "first").await,
            ("first".to_owned(), true),
            "{name}: {key}"
        );
    }
    for (key, tags) in entries {
        let got = read(&reader, key, tags, "second").await;
        assert_eq!(
            got,
            ("first".to_owned(), false),
            "{name}: {key} is a hit in another cache"
        );
    }
    writer.invalidate_tag("user:42").await.unwrap();
    for (key, tags) in entries {
        let missed = tags.contains(&"user:42");
        let expected = if missed { "second" } else { "first" };
        let got = read(&reader, key, tags, "second").await;
        assert_eq!(
            got,
            (expected.to_owned(), missed),
            "{name}: {key} after invalidating user:42"
        );
    }
    // Reloaded entries live under the new generation: hits again.
    for (key, tags) in entries {
        assert!(
            !read(&writer, key, tags, "third").await.1,
            "{name}: {key} is stored again"
        );
    }
    writer.invalidate_tag("orders").await.unwrap();
    let orders = read(&reader, "user-42-orders", &["user:42", "orders"], "x");
    assert!(orders.await.1, "{name}: invalidated by `orders`");
    let profile = read(&reader, "user-42-profile", &["user:42"], "x");
    assert!(!profile.await.1, "{name}: not tagged `orders`");
    // `get` cannot check tags: a tagged entry is a miss to it.
    assert_eq!(
        reader.get::<String>("user-42-profile").await.unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        reader.get::<String>("untagged").await.unwrap().as_deref(),
        Some("first"),
        "{name}"
    );
}

async fn lost_generation_reads_as_miss(c: &Ctx) {
    let name = c.name();
    let cache = cache(c, &c.prefix().replace(':', "-"));
    assert!(read(&cache, "k", &["team:1"], "first").await.1);
    assert!(
        !read(&cache, "k", &["team:1"], "x").await.1,
        "{name}: a hit"
    );
    // The generation evicted (or flushed): the entry must not come back as valid.
    c.backend.delete(&cache.tag_key("team:1")).await.unwrap();
    assert_eq!(
        read(&cache, "k", &["team:1"], "second").await,
        ("second".to_owned(), true),
        "{name}"
    );
    assert_eq!(
        read(&cache, "k", &["team:1"], "x").await,
        ("second".to_owned(), false),
        "{name}"
    );
}

/// A tag invalidated while a value tagged with it loads (its first use,
/// so its generation is made then) leaves that value a miss.
async fn invalidated_while_loading_reads_as_miss(c: &Ctx) {
    let name = c.name();
    let cache = cache(c, &c.prefix().replace(':', "-"));
    let invalidator = cache.clone();
    let value = cache
        .get_or_insert_tagged("k", TTL, &["fresh-tag"], || async move {
            invalidator.invalidate_tag("fresh-tag").await.unwrap();
            "loaded before the invalidation".to_owned()
        })
        .await;
    assert_eq!(value, "loaded before the invalidation", "{name}");
    let again = read(&cache, "k", &["fresh-tag"], "loaded after").await;
    assert_eq!(again, ("loaded after".to_owned(), true), "{name}: a miss");
}

/// Two caches (two processes) missing one tagged key at once: with the
/// backend's lock, one loads and the other reads its value.
async fn one_load_across_caches(c: &Ctx) {
    let name = c.name();
    let namespace = c.prefix().replace(':', "-");
    let (first, second) = (cache(c, &namespace), cache(c, &namespace));
    let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = |cache: Cache| {
        let loads = Arc::clone(&loads);
        async move {
            cache
                .get_or_insert_tagged("hot", TTL, &["team:9"], || async move {
                    loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "value".to_owned()
                })
                .await
        }
    };
    let (a, b) = tokio::join!(load(first), load(second));
    assert_eq!((a.as_str(), b.as_str()), ("value", "value"), "{name}");
    assert_eq!(
        loads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{name}: loads"
    );
}
