use cachekit::cache;

#[cache(err_ttl = "10s")]
fn not_a_result(n: u64) -> Option<u64> {
    Some(n)
}

#[cache(err_ttl = 0)]
fn zero(n: u64) -> Result<u64, String> {
    Ok(n)
}

fn main() {}
