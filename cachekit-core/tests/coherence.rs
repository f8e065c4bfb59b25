//! An L1 tier in front of a backend that sends notices of changes made
//! elsewhere drops its copies on them, instead of serving them until
//! `l1_ttl`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cachekit_core::backend::{Invalidation, InvalidationSender, Invalidations};
use cachekit_core::{Backend, Cache, Capabilities, ConfigSource, L1Config, MemoryBackend, Result};

/// The in-memory backend, plus notices sent by the test, standing for
/// another process's writes to a shared backend.
#[derive(Debug, Default)]
struct Noticing {
    memory: MemoryBackend,
    notices: InvalidationSender,
}

#[async_trait]
impl Backend for Noticing {
    fn name(&self) -> &'static str {
        "noticing"
    }
    fn capabilities(&self) -> Capabilities {
        self.memory.capabilities()
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.memory.get(key).await
    }
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.memory.set(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.memory.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.memory.exists(key).await
    }
    async fn health(&self) -> Result<cachekit_core::Health> {
        Ok(cachekit_core::Health::new(self.name()))
    }
    fn invalidations(&self) -> Option<Invalidations> {
        Some(self.notices.subscribe())
    }
}

fn cache_over(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .shared_backend(backend)
        .namespace("coherent")
        .l1(L1Config::default().max_ttl(Duration::from_secs(600)))
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap()
}

/// `cache`'s value under `key` once a notice had time to arrive (bounded).
async fn settled(cache: &Cache, key: &str, want: u32) -> Option<u32> {
    let mut seen = None;
    for _ in 0..100 {
        seen = cache.get::<u32>(key).await.unwrap();
        if seen == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen
}

#[tokio::test]
async fn a_notice_drops_the_copy_and_the_next_read_sees_the_change() {
    let backend = Arc::new(Noticing::default());
    let ours = cache_over(backend.clone());
    // Another process's cache: no L1, writes straight through.
    let theirs = Cache::builder()
        .shared_backend(Arc::new(backend.memory.clone()))
        .namespace("coherent")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    ours.set("k", &1_u32, None).await.unwrap();
    assert_eq!(ours.get::<u32>("k").await.unwrap(), Some(1));

    theirs.set("k", &2_u32, None).await.unwrap();
    // No notice yet: the copy is served, as it would be until l1_ttl.
    assert_eq!(ours.get::<u32>("k").await.unwrap(), Some(1), "L1 copy");
    backend
        .notices
        .send(Invalidation::Key(ours.backend_key("k")));
    assert_eq!(
        settled(&ours, "k", 2).await,
        Some(2),
        "the notice dropped the copy"
    );

    theirs.set("k", &3_u32, None).await.unwrap();
    theirs.set("other", &4_u32, None).await.unwrap();
    backend.notices.send(Invalidation::All);
    assert_eq!(
        settled(&ours, "k", 3).await,
        Some(3),
        "`All` drops every copy"
    );
}
