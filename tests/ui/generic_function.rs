use cachekit::cache;

#[cache]
fn f<T: serde::Serialize>(value: T) -> usize {
    std::mem::size_of_val(&value)
}

fn main() {}
