use cachekit::cache;

#[cache(interop = "get_user")]
async fn without_namespace(id: u64) -> u64 {
    id
}

#[cache(interop = "Get-User", namespace = "users")]
async fn operation_not_a_segment(id: u64) -> u64 {
    id
}

#[cache(interop = "get_user", namespace = "ns")]
async fn reserved_namespace(id: u64) -> u64 {
    id
}

#[cache(interop = "get_user", namespace = "users", ttl = 60, stale = "1m", version = 2)]
async fn with_options_python_cannot_read(id: u64) -> u64 {
    id
}

struct Users;

impl Users {
    #[cache(interop = "get_user", namespace = "users")]
    async fn keyed_by_self(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
