use std::sync::Arc;

use cachekit::cache;

#[cache(ttl = "5m", stale = "1m")]
async fn borrowed(name: &str) -> usize {
    name.len()
}

struct Users;

impl Users {
    #[cache(ttl = "5m", early_refresh, skip(self))]
    async fn by_reference(&self, id: u64) -> u64 {
        id
    }

    #[cache(ttl = "5m", stale = "1m", skip(self))]
    async fn owned(self: Arc<Self>, id: u64) -> u64 {
        id
    }
}

#[cache(ttl = 0, stale = "1m")]
async fn never_expires(n: u64) -> u64 {
    n
}

#[cache(stale = 0)]
async fn no_window(n: u64) -> u64 {
    n
}

#[cache(early_refresh = -1.0)]
async fn negative_beta(n: u64) -> u64 {
    n
}

#[cache(early_refresh = "fast")]
async fn not_a_number(n: u64) -> u64 {
    n
}

struct Accounts;

impl Accounts {
    #[cache(ttl = "5m", stale = "1m", skip(self))]
    async fn by_arc_reference(self: &Arc<Self>, id: u64) -> u64 {
        id
    }
}

#[cache(ttl = "5m", stale = "50d")]
async fn too_long(n: u64) -> u64 {
    n
}

fn main() {}
