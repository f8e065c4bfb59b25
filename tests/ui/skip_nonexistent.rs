use cachekit::cache;

#[cache(skip(nonexistent))]
async fn stock(sku: String) -> u32 {
    sku.len() as u32
}

fn main() {}
