//! One program, built with different backend features: the cache code is the
//! same in every build, the backend is chosen by configuration, and a
//! configuration that selects a backend whose feature is off is an error
//! that names the feature.
//!
//! ```text
//! # memcached compiled in (and not redis), one memcached server:
//! CACHEKIT_MEMCACHED_SERVERS=127.0.0.1:11211 \
//!     cargo run --example features --no-default-features --features memcached
//! # redis compiled in (and not memcached), one redis-server:
//! CACHEKIT_REDIS_URL=redis://127.0.0.1:6379 cargo run --example features --features redis
//! # the redis backend selected in the memcached build: the error names the `redis` feature
//! CACHEKIT_BACKEND=redis cargo run --example features --no-default-features --features memcached
//! ```
//!
//! It needs no feature at all: with nothing configured it caches in process.
//! A configuration error is printed on stderr as `configuration error: ...`
//! and the program exits with status 2, as a service refusing to start does.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachekit::Cache;

/// How many times the loader ran: once, then the cache answers.
static LOADS: AtomicU32 = AtomicU32::new(0);

/// Stands for a slow query.
async fn load_greeting(name: &str) -> String {
    LOADS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    format!("hello, {name}")
}

/// The backend features this build has (the facade's cargo features).
fn compiled_backends() -> String {
    [
        ("memcached", cfg!(feature = "memcached")),
        ("redis", cfg!(feature = "redis")),
        ("file", cfg!(feature = "file")),
    ]
    .iter()
    .map(|(feature, on)| format!("{feature}={}", if *on { "on" } else { "off" }))
    .collect::<Vec<_>>()
    .join(" ")
}

/// The cache code: identical whichever backends are compiled in.
async fn run() -> cachekit::Result<()> {
    // Reads the configuration (CACHEKIT_BACKEND, CACHEKIT_MEMCACHED_SERVERS,
    // CACHEKIT_REDIS_URL, ...) and builds the backend it selects, or says
    // what is wrong: here, at startup, not at the first cached call.
    cachekit::init()?;

    // No backend in code: the same configuration selects this cache's.
    let cache = Cache::builder().namespace("features").build()?;
    println!("backend: {}", cache.backend().name());

    for _ in 0..2 {
        let greeting = cache
            .get_or_insert_with("greeting:ada", Some(Duration::from_secs(60)), || {
                load_greeting("ada")
            })
            .await;
        println!("value: {greeting}");
    }
    println!("loads: {}", LOADS.load(Ordering::Relaxed));
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    println!("compiled in: {}", compiled_backends());
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        // `Error::Config` says which setting, where it came from and what to
        // do: for a backend that is not compiled in, the feature to enable.
        Err(error @ cachekit::Error::Config { .. }) => {
            eprintln!("configuration error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
