use cachekit::cache;

struct Repo {
    prefix: String,
}

impl Repo {
    #[cache]
    fn lookup(&self, id: u64) -> String {
        format!("{}{id}", self.prefix)
    }
}

fn main() {}
