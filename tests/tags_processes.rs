//! Tags across processes: a child process (this test binary run again)
//! invalidates a tag on a real memcached or Redis, and the parent's next
//! read of an entry tagged with it is a miss, while its other entries stay
//! hits. The parent's cache has L1 on: tagged entries are never served
//! from it.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::backends::redis::{RedisBackend, RedisBackendConfig};
use cachekit::{Backend, Cache, ConfigSource, L1Config};
use cachekit_core::backend::testkit::{ServerKind, ServerProcess};

/// Set in a child: the backend kind and the server's address.
const CHILD_KIND: &str = "CACHEKIT_TEST_TAGS_CHILD_KIND";
const CHILD_ADDRESS: &str = "CACHEKIT_TEST_TAGS_CHILD_ADDRESS";

const TTL: Option<Duration> = Some(Duration::from_secs(60));

fn backend(kind: &str, address: &str) -> Arc<dyn Backend> {
    match kind {
        "memcached" => {
            let config = MemcachedBackendConfig {
                servers: vec![address.to_owned()],
                ..Default::default()
            };
            Arc::new(MemcachedBackend::new(config).expect("a memcached backend"))
        }
        _ => {
            let config = RedisBackendConfig::default().url(format!("redis://{address}"));
            Arc::new(RedisBackend::new(config).expect("a redis backend"))
        }
    }
}

fn cache(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .shared_backend(backend)
        .namespace("xproc")
        .l1(L1Config::default())
        .config(ConfigSource::defaults_only())
        .build()
        .expect("a cache")
}

/// The child's side: invalidate `user:42`, say so, and do nothing else.
#[tokio::test]
async fn child_invalidates_a_tag() {
    let (Ok(kind), Ok(address)) = (std::env::var(CHILD_KIND), std::env::var(CHILD_ADDRESS)) else {
        return; // not a child: nothing to do
    };
    cache(backend(&kind, &address))
        .invalidate_tag("user:42")
        .await
        .expect("the child invalidates");
    println!("CHILD DONE");
}

/// The parent's side on a server of `kind`.
async fn invalidated_in_a_child_process(kind: ServerKind, name: &str) {
    let server = tokio::task::block_in_place(|| ServerProcess::start(kind));
    let cache = cache(backend(name, &server.address()));
    let loads = AtomicUsize::new(0);
    let read = |key: &'static str, tags: &'static [&'static str]| {
        let cache = cache.clone();
        let loads = &loads;
        async move {
            cache
                .get_or_insert_tagged(key, TTL, tags, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    format!("{key} value")
                })
                .await
        }
    };
    read("profile", &["user:42"]).await;
    read("other", &["user:7"]).await;
    read("profile", &["user:42"]).await;
    read("other", &["user:7"]).await;
    assert_eq!(loads.load(Ordering::SeqCst), 2, "{name}: hits before");
    let output = tokio::task::block_in_place(|| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_invalidates_a_tag", "--nocapture"])
            .env(CHILD_KIND, name)
            .env(CHILD_ADDRESS, server.address())
            .output()
            .expect("the test binary runs")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("CHILD DONE"),
        "{name}: the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    read("profile", &["user:42"]).await;
    assert_eq!(
        loads.load(Ordering::SeqCst),
        3,
        "{name}: a miss after the child's invalidation"
    );
    read("other", &["user:7"]).await;
    assert_eq!(
        loads.load(Ordering::SeqCst),
        3,
        "{name}: another tag's entry stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_tag_invalidated_in_another_process() {
    if std::env::var(CHILD_KIND).is_ok() {
        return;
    }
    invalidated_in_a_child_process(ServerKind::Memcached, "memcached").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tag_invalidated_in_another_process() {
    if std::env::var(CHILD_KIND).is_ok() {
        return;
    }
    invalidated_in_a_child_process(ServerKind::Redis, "redis").await;
}
