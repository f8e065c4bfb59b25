use cachekit::cache;

struct Pool;

#[cache]
async fn stock(db: &Pool, sku: String) -> u32 {
    let _ = db;
    sku.len() as u32
}

fn main() {}
