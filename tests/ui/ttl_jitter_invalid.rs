use cachekit::cache;

#[cache(ttl = 60, ttl_jitter = 60)]
fn too_much(n: u64) -> u64 {
    n
}

#[cache(ttl = 60, ttl_jitter = "10%")]
fn as_text(n: u64) -> u64 {
    n
}

fn main() {}
