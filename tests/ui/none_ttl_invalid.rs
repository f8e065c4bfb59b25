use cachekit::cache;

#[cache(none_ttl = "30s")]
fn not_an_option(n: u64) -> u64 {
    n
}

#[cache(cache_none = false, none_ttl = 30)]
fn stores_no_none(n: u64) -> Option<u64> {
    Some(n)
}

#[cache(none_ttl = 0)]
fn zero(n: u64) -> Option<u64> {
    Some(n)
}

fn main() {}
