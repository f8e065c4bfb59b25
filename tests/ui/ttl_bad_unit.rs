use cachekit::cache;

#[cache(ttl = "5w")]
fn f(n: u64) -> u64 {
    n
}

fn main() {}
