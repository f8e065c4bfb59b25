//! Caches an expensive function with `#[cache]` in the in-process default
//! backend and shows a miss, then a hit, with their timings. Needs nothing
//! installed or configured:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Set `CACHEKIT_BACKEND` or a backend's variables (and enable its feature)
//! to run the same code against Memcached, Redis or a directory.

use std::time::{Duration, Instant};

use cachekit::cache;

/// Stands for a slow database query or computation.
#[cache(ttl = "5m", namespace = "quickstart")]
async fn expensive_report(customer: u64) -> String {
    tokio::time::sleep(Duration::from_millis(500)).await;
    format!("report for customer {customer}: 1,234 orders")
}

#[tokio::main]
async fn main() {
    for attempt in ["miss", "hit"] {
        let started = Instant::now();
        let report = expensive_report(42).await;
        println!("{attempt:>4}: {:>10.3?}  {report}", started.elapsed());
    }

    let stats = expensive_report_stats();
    println!(
        "loads: {}, hits: {}",
        stats.loads,
        stats.l1_hits + stats.l2_hits
    );
}
