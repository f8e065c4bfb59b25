//! One function that takes a lock through `Cache`, run against Redis (which
//! has locks: two tasks contend) and Memcached (which has none: the call
//! says so), and the stampede protection cached loads keep on Memcached.
//!
//! ```text
//! redis-server --port 6379 & memcached -p 11211 &
//! CACHEKIT_REDIS_URL=redis://127.0.0.1:6379 CACHEKIT_MEMCACHED_SERVERS=127.0.0.1:11211 \
//!     cargo run --example capability_lock --features redis,memcached
//! ```
//!
//! Code that needs a lock checks for `Error::Unsupported` (or asks
//! `cache.capabilities().lock` first) and picks another way; loads through
//! `get_or_insert_with` or `#[cache]` need nothing: on a backend without
//! locks they run the loader once per process (in-process single-flight).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit::backends::{memcached::MemcachedBackend, redis::RedisBackend};
use cachekit::{Cache, Capability, Error};
use tokio::sync::oneshot;

/// How long a lock is held at most if its holder dies.
const LEASE: Duration = Duration::from_secs(10);

/// How long a refused task waits for the holder.
const WAIT: Duration = Duration::from_secs(10);

/// Runs `work` holding the lock on `resource`: tries once and, if another
/// holder has it, says so and waits for it (up to [`WAIT`]).
async fn with_lock(
    cache: &Cache,
    resource: &str,
    who: &str,
    work: impl Future<Output = ()>,
) -> cachekit::Result<()> {
    let guard = match cache.lock(resource, LEASE).await {
        Ok(guard) => guard,
        Err(error @ Error::LockContended { .. }) => {
            println!("{who} refused: {error}");
            cache.lock_wait(resource, LEASE, WAIT).await?
        }
        Err(error) => return Err(error),
    };
    println!("{who} holds the lock");
    work.await;
    guard.release().await?;
    println!("{who} released the lock");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = Cache::builder()
        .backend(RedisBackend::from_env()?)
        .namespace("capability_lock")
        .build()?;
    let memcached = Cache::builder()
        .backend(MemcachedBackend::from_env()?)
        .namespace("capability_lock")
        .build()?;

    // Redis: task 2 starts once task 1 holds the lock, so it is refused,
    // then gets it when task 1 releases it.
    let (holding, held) = oneshot::channel();
    let first = {
        let redis = redis.clone();
        tokio::spawn(async move {
            let work = async {
                let _ = holding.send(());
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            with_lock(&redis, "report", "redis: task 1", work).await
        })
    };
    if held.await.is_err() {
        // Task 1 ended without taking the lock: its error says why.
        first.await??;
        return Err("redis: task 1 ended without the lock".into());
    }
    with_lock(&redis, "report", "redis: task 2", async {}).await?;
    first.await??;

    // Memcached: the same call is refused for the capability.
    match with_lock(&memcached, "report", "memcached: task 1", async {}).await {
        Err(
            error @ Error::Unsupported {
                capability: Capability::Lock,
                ..
            },
        ) => {
            println!("memcached: lock: {error}");
        }
        other => return Err(format!("memcached: expected Unsupported, got {other:?}").into()),
    }

    // Its cached loads still run once: 16 concurrent calls on a cold key.
    memcached.delete("slow-report").await?;
    let loads = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (memcached, loads) = (memcached.clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                let ttl = Some(Duration::from_secs(60));
                memcached
                    .get_or_insert_with("slow-report", ttl, || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        "1,234 orders".to_owned()
                    })
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await?;
    }
    let loads = loads.load(Ordering::SeqCst);
    println!("memcached: 16 concurrent calls, loader ran {loads} time(s)");
    Ok(())
}
