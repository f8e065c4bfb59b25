use cachekit::cache;

#[cache(version = "2")]
fn double(n: u64) -> u64 {
    n * 2
}

#[cache(version = -1)]
fn triple(n: u64) -> u64 {
    n * 3
}

fn main() {}
