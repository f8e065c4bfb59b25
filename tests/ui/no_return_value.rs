use cachekit::cache;

#[cache]
fn log(line: String) {
    println!("{line}");
}

fn main() {}
