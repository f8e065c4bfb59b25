use cachekit::cache;

#[cache(cache_none = false)]
fn f(n: u64) -> u64 {
    n
}

fn main() {}
