use cachekit::cache;

#[cache(tll = 30)]
fn f(n: u64) -> u64 {
    n
}

fn main() {}
