//! Batches through a [`Cache`] over the backend: `get_or_insert_many` of
//! 1,000 keys, a tenth of them missing, calls its loader once with exactly
//! the missing keys, and stores them for the next batch.

use std::sync::Arc;
use std::time::Duration;

use super::case::{Case, Ctx, Need};
use crate::{Cache, ConfigSource};

/// Keys in the batch.
const KEYS: usize = 1_000;

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[Case {
    name: "batch::misses_loaded_in_one_call",
    need: Need::Nothing,
    run: |c| Box::pin(misses_loaded_in_one_call(c)),
}];

async fn misses_loaded_in_one_call(c: &Ctx) {
    let name = c.name();
    let cache = Cache::builder()
        .shared_backend(Arc::clone(&c.backend))
        .namespace(c.prefix().replace(':', "-"))
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let ttl = Some(Duration::from_secs(60));
    let keys: Vec<String> = (0..KEYS).map(|n| format!("item-{n}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    // Every tenth key is missing.
    for (n, key) in keys.iter().enumerate().filter(|(n, _)| n % 10 != 0) {
        cache.set(key, &(n as u64), ttl).await.unwrap();
    }
    let mut calls = Vec::new();
    let values = cache
        .get_or_insert_many(&keys, ttl, |missing: Vec<String>| {
            calls.push(missing.clone());
            async move {
                missing
                    .iter()
                    .map(|key| key["item-".len()..].parse::<u64>().unwrap())
                    .collect()
            }
        })
        .await;
    assert_eq!(
        values,
        (0..KEYS as u64).collect::<Vec<_>>(),
        "{name}: values in order"
    );
    let expected: Vec<String> = (0..KEYS).step_by(10).map(|n| format!("item-{n}")).collect();
    assert_eq!(
        calls,
        vec![expected],
        "{name}: one loader call, with exactly the misses"
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.l2_hits, stats.misses, stats.loads),
        (900, 100, 1),
        "{name}: {stats:?}"
    );
    // Stored: the next batch loads nothing.
    let again: Vec<u64> = cache
        .get_or_insert_many(&keys, ttl, |missing: Vec<String>| async move {
            panic!("{} keys loaded again", missing.len())
        })
        .await;
    assert_eq!(again, values, "{name}");
    let got = cache
        .get_many::<u64>(&["item-0", "absent", "item-999"])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(0), None, Some(999)], "{name}: get_many");
}
