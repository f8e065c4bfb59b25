//! One program whose code names no backend: configuration picks it, so the
//! same binary caches in process, in Memcached, in Redis or in a directory.
//!
//! ```text
//! cargo run --example swap_backend --features memcached,redis,file
//! CACHEKIT_BACKEND=memcached CACHEKIT_MEMCACHED_SERVERS=127.0.0.1:11211 \
//!     cargo run --example swap_backend --features memcached,redis,file
//! CACHEKIT_CONFIG=cachekit.toml cargo run --example swap_backend --features memcached,redis,file
//! CACHEKIT_FILE_CACHE_DIR=/tmp/swap cargo run --example swap_backend --features memcached,redis,file
//! ```
//!
//! where `cachekit.toml` holds `backend = "redis"` and, under `[redis]`,
//! `url = "redis://127.0.0.1:6379"`. It prints the backend it got, then a
//! miss and a hit read from that backend. A broken configuration
//! (`CACHEKIT_BACKEND=nosuch`) stops it at startup with the error, which
//! names the setting, on stderr and exit code 1.

use std::process::ExitCode;
use std::time::Duration;

use cachekit::Cache;

/// The loader: stands for a slow query.
async fn load_greeting() -> String {
    tokio::time::sleep(Duration::from_millis(100)).await;
    "hello from the loader".to_owned()
}

/// Reads a key twice through the configured backend.
async fn run() -> cachekit::Result<()> {
    // A broken configuration is an error here, not at the first call.
    cachekit::init()?;
    // No L1: the second read comes from the backend, not from this process.
    let cache = Cache::builder().namespace("swap").without_l1().build()?;
    println!("backend: {}", cache.backend().name());

    // Cold first, even in a persistent backend from an earlier run.
    cache.delete("greeting").await?;
    for _ in 0..2 {
        let mut loaded = false;
        let greeting: String = cache
            .get_or_insert_with("greeting", Some(Duration::from_secs(60)), || {
                loaded = true;
                load_greeting()
            })
            .await;
        let outcome = if loaded { "miss" } else { "hit" };
        println!("{outcome}: {greeting}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
