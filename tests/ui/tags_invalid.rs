use cachekit::cache;

#[cache(tags = "user")]
async fn not_a_list(id: u64) -> u64 {
    id
}

#[cache(tags = [user])]
async fn not_a_literal(id: u64) -> u64 {
    id
}

fn main() {}
