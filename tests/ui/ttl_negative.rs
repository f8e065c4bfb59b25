use cachekit::cache;

#[cache(ttl = -1)]
fn f(n: u64) -> u64 {
    n
}

fn main() {}
