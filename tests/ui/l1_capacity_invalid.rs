use cachekit::cache;

#[cache(l1_capacity = 0)]
fn none_kept(n: u64) -> u64 {
    n
}

#[cache(l1_capacity = "100")]
fn as_text(n: u64) -> u64 {
    n
}

#[cache(l1 = false, l1_capacity = 100)]
fn turned_off(n: u64) -> u64 {
    n
}

fn main() {}
