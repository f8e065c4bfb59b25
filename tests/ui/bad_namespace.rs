use cachekit::cache;

#[cache(namespace = "my app")]
fn f(n: u64) -> u64 {
    n
}

fn main() {}
