use cachekit::cache;

#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    lines: Vec<String>,
}

#[cache]
fn report(day: u32) -> Report {
    Report {
        lines: vec![day.to_string()],
    }
}

fn main() {}
