use cachekit::cache;

#[cache]
fn f(name: impl AsRef<str>) -> usize {
    name.as_ref().len()
}

fn main() {}
