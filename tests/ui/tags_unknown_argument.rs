use cachekit::cache;

#[cache(tags = ["user:{name}"])]
async fn unknown_argument(id: u64) -> u64 {
    id
}

fn main() {}
