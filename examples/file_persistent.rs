//! A command-line tool whose slow computation is cached in a directory, so
//! that running it again with the same argument is fast: the second process
//! reads the first one's result from disk.
//!
//! ```text
//! cargo run --example file_persistent --features file -- 30
//! cargo run --example file_persistent --features file -- 30   # hit
//! ```
//!
//! The directory is `CACHEKIT_FILE_CACHE_DIR`, else the user's cache
//! directory + `cachekit` (`~/.cache/cachekit` on Linux); it prints which.
//! Each run prints `miss` (it computed) or `hit` (it read the result),
//! with the time it took, then the result.

use std::time::{Duration, Instant};

use cachekit::Cache;
use cachekit::backends::file::FileBackend;

/// How long entries stay valid.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest `n` the loop below computes within a `u128` (it also adds the next number).
const MAX_N: u64 = 185;

/// The slow part: the `n`th Fibonacci number, made to take a second.
fn expensive(n: u64) -> u128 {
    std::thread::sleep(Duration::from_secs(1));
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|error| format!("{arg:?}: {error}"))?,
        None => return Err(format!("usage: file_persistent N (0 to {MAX_N})").into()),
    };
    if n > MAX_N {
        return Err(format!("{n} is over {MAX_N}: its Fibonacci number overflows u128").into());
    }

    // The directory from CACHEKIT_FILE_CACHE_DIR (or cachekit.toml), else the default.
    let backend = FileBackend::from_env()?;
    println!("cache directory: {}", backend.config().cache_dir.display());
    let cache = Cache::builder()
        .backend(backend)
        .namespace("file_persistent")
        .build()?;

    let started = Instant::now();
    let mut computed = false;
    let key = format!("fibonacci/{n}");
    let value: u128 = cache
        .get_or_insert_with(&key, Some(TTL), || async {
            computed = true;
            // Blocking work off the async threads.
            tokio::task::spawn_blocking(move || expensive(n))
                .await
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
        })
        .await;
    let outcome = if computed { "miss" } else { "hit" };
    println!("{outcome} in {:.3?}", started.elapsed());
    println!("fibonacci({n}) = {value}");
    Ok(())
}
