use std::collections::HashMap;

use cachekit::cache;

#[cache(batch)]
fn plain(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

#[cache(batch)]
async fn two_keys(ids: Vec<u64>, region: String) -> HashMap<u64, u64> {
    let _ = region;
    ids.into_iter().map(|id| (id, id)).collect()
}

#[cache(batch)]
async fn not_a_map(ids: Vec<u64>) -> Vec<u64> {
    ids
}

#[cache(batch, stale = "1m", ttl = 60)]
async fn with_stale(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

fn main() {}
