//! Corrupt entries written straight into each store, past cachekit, as a
//! buggy or hostile program could: into a real memcached (a raw text-protocol
//! `set`), a real redis-server (a raw `SET`) and the file backend's directory
//! (a file at the entry's path). Nothing empty, random bytes, bytes that
//! start like an envelope, a real entry cut short, a real entry with one bit
//! flipped (in its header, its middle, its last byte) and a real entry of
//! another type stored under the key: each reads as a miss, never as wrong
//! data and never as a panic, through `Cache::get`, through
//! `Cache::get_or_insert_with` and through a `#[cache]` function (the loader
//! runs and its value is returned), and the next call then hits the fresh
//! value that the miss stored.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachekit::backends::file::{FileBackend, FileBackendConfig};
use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::backends::redis::{RedisBackend, RedisBackendConfig};
use cachekit::{Backend, Cache, ConfigSource, cache};
use cachekit_core::backend::testkit::{ServerKind, ServerProcess};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    /// Which load made it: two loads never give equal values.
    load: u64,
    tags: Vec<String>,
}

/// The value of the next load of `id`, counted in `loads`.
fn load(loads: &AtomicU64, id: u64) -> Profile {
    let load = loads.fetch_add(1, Ordering::SeqCst) + 1;
    Profile {
        id,
        load,
        tags: vec![format!("tag {load}"); 1 + (load % 3) as usize],
    }
}

/// A store written and read past cachekit.
trait RawStore {
    /// The bytes under the backend key `key`.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes `bytes` under the backend key `key`.
    fn set(&self, key: &str, bytes: &[u8]);
}

/// A memcached server, spoken to in the text protocol.
struct RawMemcached(String);

impl RawMemcached {
    /// Sends `request` on a new connection; the reply's first line, and the
    /// reader for the rest.
    fn send(&self, request: &[u8]) -> (String, BufReader<TcpStream>) {
        let mut conn = TcpStream::connect(&self.0).expect("memcached accepts");
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(request).unwrap();
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    }
}

impl RawStore for RawMemcached {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let (line, mut reader) = self.send(format!("get {key}\r\n").as_bytes());
        if line == "END\r\n" {
            return None;
        }
        // VALUE <key> <flags> <bytes>
        let len: usize = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
        let mut value = vec![0; len + 2];
        reader.read_exact(&mut value).unwrap();
        value.truncate(len);
        Some(value)
    }

    fn set(&self, key: &str, bytes: &[u8]) {
        let mut request = format!("set {key} 0 0 {}\r\n", bytes.len()).into_bytes();
        request.extend_from_slice(bytes);
        request.extend_from_slice(b"\r\n");
        assert_eq!(self.send(&request).0, "STORED\r\n");
    }
}

/// A redis-server, through the `redis` crate's plain commands.
struct RawRedis(redis::Client);

impl RawStore for RawRedis {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut conn = self.0.get_connection().expect("redis accepts");
        redis::cmd("GET").arg(key).query(&mut conn).unwrap()
    }

    fn set(&self, key: &str, bytes: &[u8]) {
        let mut conn = self.0.get_connection().expect("redis accepts");
        redis::cmd("SET")
            .arg(key)
            .arg(bytes)
            .query::<()>(&mut conn)
            .unwrap();
    }
}

/// The file backend's cache directory.
struct RawDir(PathBuf);

impl RawDir {
    /// The documented path of `key`'s entry: `entries/` and the hex of the
    /// first 16 bytes of the key's BLAKE3 hash.
    fn path(&self, key: &str) -> PathBuf {
        let hash = blake3::hash(key.as_bytes());
        let name: String = hash.as_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.0.join("entries").join(name)
    }
}

impl RawStore for RawDir {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
    }

    fn set(&self, key: &str, bytes: &[u8]) {
        std::fs::write(self.path(key), bytes).unwrap();
    }
}

/// Every spoiled entry tried, named: made from `real`, an entry as the
/// store holds it, and `other_type`, the entry of another type under the
/// same key.
fn spoiled(real: &[u8], other_type: &[u8]) -> Vec<(String, Vec<u8>)> {
    // Deterministic noise.
    let noise: Vec<u8> = (0..300_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut spoiled = vec![
        ("nothing".to_string(), Vec::new()),
        ("random bytes".to_string(), noise.clone()),
        (
            "an envelope's magic and version, then random bytes".to_string(),
            [&b"CK\x03\x00"[..], &noise].concat(),
        ),
        ("another type's entry".to_string(), other_type.to_vec()),
    ];
    for len in [1, 4, 16, real.len() / 2, real.len() - 1] {
        spoiled.push((format!("cut to {len} bytes"), real[..len].to_vec()));
    }
    // Bits that every format checks: in the magic, the envelope's checked
    // header or the file's, the start of the payload, its middle, its end
    // (not the file header's reserved bytes or expiry, which are unchecked).
    let len = real.len();
    for bit in [
        1,
        8 * 2 + 1,
        8 * 4 + 3,
        8 * 17,
        8 * 22 + 5,
        4 * len,
        8 * len - 1,
    ] {
        let mut flipped = real.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        spoiled.push((format!("bit {bit} flipped"), flipped));
    }
    spoiled
}

/// Spoils the entry of `get`, `get_or_insert_with` and the `#[cache]`
/// function `cached` (named `function`, loading from `loads`) in `raw` in
/// every way, and checks that each reads as a miss and the next call hits.
async fn spoiled_entries_read_as_misses<F, Fut>(
    store: &str,
    raw: &dyn RawStore,
    backend: Arc<dyn Backend>,
    loads: &AtomicU64,
    function: &str,
    cached: F,
) where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Profile>,
{
    let cache = Cache::builder()
        .shared_backend(backend)
        .namespace("corrupt")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    let loaded = || loads.load(Ordering::SeqCst);
    let mut tried = 0;

    // Cache::get: a miss, then the value set after it.
    let get_key = cache.backend_key("get");
    cache.set("get", "a string", None).await.unwrap();
    let other_type = raw.get(&get_key).expect("the string entry");
    cache.set("get", &load(loads, 1), None).await.unwrap();
    let real = raw.get(&get_key).expect("the profile entry");
    for (what, bytes) in spoiled(&real, &other_type) {
        raw.set(&get_key, &bytes);
        let read = cache.get::<Profile>("get").await;
        assert_eq!(read.unwrap(), None, "{store}, get, {what}: a miss");
        let fresh = load(loads, 1);
        cache.set("get", &fresh, None).await.unwrap();
        let read = cache.get::<Profile>("get").await.unwrap();
        assert_eq!(read, Some(fresh), "{store}, get, {what}: then a hit");
        tried += 1;
    }

    // Cache::get_or_insert_with: the loader runs, then a hit.
    let key = cache.backend_key("loaded");
    let insert = || cache.get_or_insert_with("loaded", None, || async { load(loads, 2) });
    cache.set("loaded", &7_u64, None).await.unwrap();
    let other_type = raw.get(&key).expect("the number entry");
    insert().await;
    let real = raw.get(&key).expect("the profile entry");
    for (what, bytes) in spoiled(&real, &other_type) {
        raw.set(&key, &bytes);
        let before = loaded();
        let value = insert().await;
        assert_eq!(loaded(), before + 1, "{store}, loader, {what}: a miss");
        assert_eq!(value.load, before + 1, "{store}, loader, {what}: its value");
        assert_eq!(insert().await, value, "{store}, loader, {what}: then a hit");
        assert_eq!(
            loaded(),
            before + 1,
            "{store}, loader, {what}: not loaded again"
        );
        tried += 1;
    }

    // The #[cache] function: its body runs, then a hit.
    let call = cachekit::key::for_call(function, &(3_u64,)).unwrap();
    let key = cache.backend_key(&call);
    cache.set(&call, &vec![1_u8, 2, 3], None).await.unwrap();
    let other_type = raw.get(&key).expect("the bytes entry");
    let first = cached(3).await;
    let real = raw.get(&key).expect("the function's entry, under its key");
    assert_eq!(cache.get::<Profile>(&call).await.unwrap(), Some(first));
    for (what, bytes) in spoiled(&real, &other_type) {
        raw.set(&key, &bytes);
        let before = loaded();
        let value = cached(3).await;
        assert_eq!(loaded(), before + 1, "{store}, #[cache], {what}: a miss");
        assert_eq!(
            value.load,
            before + 1,
            "{store}, #[cache], {what}: its value"
        );
        assert_eq!(
            cached(3).await,
            value,
            "{store}, #[cache], {what}: then a hit"
        );
        assert_eq!(
            loaded(),
            before + 1,
            "{store}, #[cache], {what}: not run again"
        );
        tried += 1;
    }
    println!("{store}: {tried} spoiled entries read as misses");
}

static MEMCACHED: OnceLock<Arc<MemcachedBackend>> = OnceLock::new();
static MEMCACHED_LOADS: AtomicU64 = AtomicU64::new(0);

fn memcached() -> Arc<MemcachedBackend> {
    MEMCACHED.get().expect("the test set it").clone()
}

#[cache(namespace = "corrupt", backend = memcached(), l1 = false)]
async fn memcached_profile(id: u64) -> Profile {
    load(&MEMCACHED_LOADS, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_memcached_entries_read_as_misses() {
    let server = ServerProcess::start(ServerKind::Memcached);
    let config = MemcachedBackendConfig::default().servers([server.address()]);
    let backend = MEMCACHED.get_or_init(|| Arc::new(MemcachedBackend::new(config).unwrap()));
    let raw = RawMemcached(server.address());
    spoiled_entries_read_as_misses(
        "memcached",
        &raw,
        backend.clone(),
        &MEMCACHED_LOADS,
        "memcached_profile",
        memcached_profile,
    )
    .await;
}

static REDIS: OnceLock<Arc<RedisBackend>> = OnceLock::new();
static REDIS_LOADS: AtomicU64 = AtomicU64::new(0);

fn redis() -> Arc<RedisBackend> {
    REDIS.get().expect("the test set it").clone()
}

#[cache(namespace = "corrupt", backend = redis(), l1 = false)]
async fn redis_profile(id: u64) -> Profile {
    load(&REDIS_LOADS, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_redis_entries_read_as_misses() {
    let server = ServerProcess::start(ServerKind::Redis);
    let url = format!("redis://{}/0", server.address());
    let config = RedisBackendConfig::default().url(url.clone());
    let backend = REDIS.get_or_init(|| Arc::new(RedisBackend::new(config).unwrap()));
    let raw = RawRedis(redis::Client::open(url).unwrap());
    spoiled_entries_read_as_misses(
        "redis",
        &raw,
        backend.clone(),
        &REDIS_LOADS,
        "redis_profile",
        redis_profile,
    )
    .await;
}

static FILE: OnceLock<Arc<FileBackend>> = OnceLock::new();
static FILE_LOADS: AtomicU64 = AtomicU64::new(0);

fn file() -> Arc<FileBackend> {
    FILE.get().expect("the test set it").clone()
}

#[cache(namespace = "corrupt", backend = file(), l1 = false)]
async fn file_profile(id: u64) -> Profile {
    load(&FILE_LOADS, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_files_read_as_misses() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileBackendConfig::default().cache_dir(dir.path());
    let backend = FILE.get_or_init(|| Arc::new(FileBackend::new(config).unwrap()));
    let raw = RawDir(dir.path().to_path_buf());
    spoiled_entries_read_as_misses(
        "file",
        &raw,
        backend.clone(),
        &FILE_LOADS,
        "file_profile",
        file_profile,
    )
    .await;
}
