use cachekit::cache;
use serde::Serialize;

#[derive(Serialize)]
struct Filter {
    name: String,
}

#[cache(interop = "search", namespace = "users")]
async fn search(filter: Filter, raw: Vec<u8>) -> u64 {
    filter.name.len() as u64 + raw.len() as u64
}

fn main() {}
