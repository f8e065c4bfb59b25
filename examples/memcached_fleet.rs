//! Three memcached servers behind one cache: where each key lands, where the
//! keys of a stopped server go, and that they come back when it returns.
//!
//! ```text
//! memcached -p 11211 & memcached -p 11212 & memcached -p 11213 &
//! CACHEKIT_MEMCACHED_SERVERS=127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213 \
//! CACHEKIT_MEMCACHED_DEAD_TIME=2 \
//!     cargo run --example memcached_fleet --features memcached
//! ```
//!
//! It runs in three phases and waits for Enter between them: after the
//! first, stop one server (`kill %2`); after the second, start it again
//! (`memcached -p 11212 &`). Each phase reads the same 12 keys through
//! `Cache::get_or_insert_with` and prints one line per key:
//! `KEY on SERVER: hit` (the server had it) or `KEY on SERVER: load` (the
//! loader ran and stored it there). The server is the one the backend's
//! `server_for` names: rendezvous hashing over the live servers, so a
//! stopped server's keys move to the others, the rest stay where they are,
//! and its keys go back to it once it is tried again after `dead_time`
//! (`CACHEKIT_MEMCACHED_DEAD_TIME`, default 30 s).

use std::io::BufRead;
use std::time::{Duration, Instant};

use cachekit::Cache;
use cachekit::backends::memcached::MemcachedBackend;

/// How many keys each phase reads.
const KEYS: usize = 12;

/// What each phase asks for before it starts (none before the first).
const PHASES: [Option<&str>; 3] = [
    None,
    Some("stop one server, then press Enter"),
    Some("start it again, then press Enter"),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Servers and their settings from CACHEKIT_MEMCACHED_* (or cachekit.toml).
    let backend = MemcachedBackend::from_env()?;
    println!("servers: {}", backend.config().servers.join(" "));
    // A clone shares the servers (and their ejection state): one handle asks
    // where keys go, the other stores them. No L1, so every read reaches a
    // server and a hit means that server has the key.
    let cache = Cache::builder()
        .backend(backend.clone())
        .namespace("fleet")
        .without_l1()
        .build()?;

    let mut stdin = std::io::stdin().lock();
    for (phase, prompt) in PHASES.into_iter().enumerate() {
        if let Some(prompt) = prompt {
            println!("{prompt}");
            if stdin.read_line(&mut String::new())? == 0 {
                return Err("stdin closed before the next phase".into());
            }
        }
        if phase == 2 {
            wait_for_all_servers(&backend).await?;
        }
        println!("phase {}", phase + 1);
        for index in 0..KEYS {
            let key = format!("key-{index:02}");
            let mut loaded = false;
            let _value: String = cache
                .get_or_insert_with(&key, Some(Duration::from_secs(300)), || async {
                    loaded = true;
                    format!("value of {key}")
                })
                .await;
            // Asked after the read: a failed read is what ejects a stopped server.
            let server = backend.server_for(&cache.backend_key(&key));
            let outcome = if loaded { "load" } else { "hit" };
            println!("{key} on {server}: {outcome}");
        }
    }
    println!("done");
    Ok(())
}

/// Waits until every server is in the ring again: an ejected one rejoins
/// once its `dead_time` is over. Bounded by that time and a second more.
async fn wait_for_all_servers(backend: &MemcachedBackend) -> Result<(), String> {
    let deadline = Instant::now() + backend.config().dead_time + Duration::from_secs(1);
    while backend.live_servers().len() < backend.config().servers.len() {
        if Instant::now() >= deadline {
            return Err(format!(
                "servers still out: only {:?} live",
                backend.live_servers()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
