use cachekit::cache;

#[cache(skip(self))]
fn double(n: u64) -> u64 {
    n * 2
}

fn main() {}
