//! `cargo xtask bench memcached`: cachekit's Memcached path against raw
//! clients measured in the same run. xtask starts the servers (pinned to one
//! CPU) and runs this binary (pinned to another) with their addresses in
//! `CACHEKIT_BENCH_MEMCACHED` (comma-separated, three servers).
//!
//! Prints a Markdown table; docs/benchmarks.md records one.
//!
//! The 64-task rows run the same 64 tasks for the same time through each
//! client, the clients taking turns in slices: the raw pipelined client of
//! [`ceiling`] (one connection per server, every task's requests sharing
//! it: the best a pipelined client can do, on the same wire keys and
//! values), cachekit's `Cache::get`, shown as a share of that ceiling as
//! well, and `memcache::exp::AsyncMemcache`.

#[path = "memcached/ceiling.rs"]
mod ceiling;
#[path = "memcached/tls.rs"]
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachekit_core::__private::codec;
use cachekit_core::__private::{CacheAll, CachedFn, FnSpec, WithoutL1};
use cachekit_core::ConfigSource;
use cachekit_core::backend::Bytes;
use cachekit_core::encryption::MasterKey;
use cachekit_core::{Backend, Cache, CacheBuilder, L1Config, key};
use cachekit_memcached::{MemcachedBackend, MemcachedBackendConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SEQUENTIAL_OPS: usize = 20_000;
const WARMUP_OPS: usize = 2_000;
const CONCURRENT_TASKS: usize = 64;
/// How long each client of the 64-task rows runs in all, in slices taken
/// in turn.
const CONCURRENT_FOR: Duration = Duration::from_secs(3);
const CONCURRENT_SLICES: u32 = 6;
const KEYSPACE: usize = 1_000;
/// Rounds of the L1 rows, and hits in each.
const L1_ROUNDS: usize = 10;
const L1_HITS: u32 = 100_000;

fn main() {
    let servers: Vec<String> = std::env::var("CACHEKIT_BENCH_MEMCACHED")
        .expect("run through `cargo xtask bench memcached`, which starts the servers")
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(servers.len(), 3, "three servers expected");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(servers));
}

/// The backend of the cached function below, set before its first call.
static PROFILE_BACKEND: OnceLock<Arc<dyn Backend>> = OnceLock::new();

/// What `#[cache(namespace = "bench", l1 = false, backend = ...)]` declares
/// for `async fn profile(id: u64) -> String`.
static PROFILE: CachedFn = CachedFn::new(
    FnSpec {
        module: module_path!(),
        name: "profile",
        namespace: Some("bench"),
        ttl: None,
        version: 0,
        site: concat!(file!(), ":", line!()),
        l1_capacity: None,
        ttl_jitter: None,
        none_ttl: None,
        err_ttl: None,
        stale: Duration::ZERO,
        early_refresh: 0.0,
        invalidate_all: false,
        interop: None,
        encrypt: false,
    },
    Some(|| {
        Ok(Arc::clone(
            PROFILE_BACKEND.get().expect("set before the first call"),
        ))
    }),
);

/// The body `#[cache]` gives that function: its runtime's call path.
async fn profile(id: u64) -> String {
    let mut call = PROFILE.call("");
    call.arg(&id);
    PROFILE
        .get_or_insert::<CacheAll, WithoutL1, String>(call, async { unreachable!("a hit") })
        .await
}

struct Row {
    name: &'static str,
    figure: String,
    ratio: String,
}

async fn run(servers: Vec<String>) {
    let mut rows = Vec::new();
    let value = "x".repeat(100);

    // Sequential get hits on one server, L1 off. The four paths take turns,
    // operation by operation, so that drift in the machine's speed hits all
    // of them alike.
    let one = cache(&servers[..1]).await;
    one.set("seq", &value, None).await.unwrap();
    let wire_key = one.backend_key("seq");
    // The entry `profile(42)` reads: its key is `for_call`'s in namespace `bench`.
    one.set(&key::for_call("profile", &(42u64,)).unwrap(), &value, None)
        .await
        .unwrap();
    PROFILE_BACKEND.get_or_init(|| Arc::clone(one.backend()));
    let one_backend = MemcachedBackend::new(config(&servers[..1])).unwrap();
    // The same value encrypted, and in interop format (plain MessagePack),
    // each under a key of its own (one key holds one format).
    let sealed = cache_with(&servers[..1], |builder| {
        builder.encrypt(true).master_key(master_key())
    });
    sealed.set("seq-sealed", &value, None).await.unwrap();
    let interop = cache_with(&servers[..1], |builder| builder.interop());
    interop.set("seq-interop", &value, None).await.unwrap();
    let mut raw = RawClient::connect(&servers[0], &wire_key).await;
    let mut samples: [Vec<Duration>; 6] = Default::default();
    for round in 0..WARMUP_OPS + SEQUENTIAL_OPS {
        let mut lap = Instant::now();
        let mut record = |series: usize| {
            let now = Instant::now();
            if round >= WARMUP_OPS {
                samples[series].push(now - lap);
            }
            lap = now;
        };
        raw.get().await;
        record(0);
        std::hint::black_box(one_backend.get(&wire_key).await.unwrap().unwrap());
        record(1);
        std::hint::black_box(one.get::<String>("seq").await.unwrap().unwrap());
        record(2);
        std::hint::black_box(profile(42).await);
        record(3);
        std::hint::black_box(sealed.get::<String>("seq-sealed").await.unwrap().unwrap());
        record(4);
        std::hint::black_box(interop.get::<String>("seq-interop").await.unwrap().unwrap());
        record(5);
    }
    let [
        raw_samples,
        backend_samples,
        get_samples,
        call_samples,
        sealed_samples,
        interop_samples,
    ] = samples;
    let raw = median(raw_samples);
    rows.push(Row {
        name: "raw `mg` loop, one connection (median)",
        figure: micros(raw),
        ratio: "1.00x".into(),
    });
    for (name, series) in [
        ("`MemcachedBackend::get` hit (median)", backend_samples),
        ("`Cache::get` hit (median)", get_samples),
        (
            "`#[cache]` call path (its runtime, L1 off): key from args + hit (median)",
            call_samples,
        ),
        (
            "`Cache::get` hit, encrypted (AES-256-GCM) (median)",
            sealed_samples,
        ),
        (
            "`Cache::get` hit, interop format (MessagePack) (median)",
            interop_samples,
        ),
    ] {
        let figure = median(series);
        rows.push(Row {
            name,
            figure: micros(figure),
            ratio: ratio(figure, raw),
        });
    }
    let set = median(
        timed(|| async {
            one.set("seq-set", &value, None).await.unwrap();
        })
        .await,
    );
    rows.push(Row {
        name: "`Cache::set` (median)",
        figure: micros(set),
        ratio: ratio(set, raw),
    });

    // get_many of 100 keys over three servers.
    let three = cache(&servers).await;
    let backend = MemcachedBackend::new(config(&servers)).unwrap();
    let keys: Vec<String> = (0..100)
        .map(|i| three.backend_key(&format!("many:{i}")))
        .collect();
    for i in 0..100 {
        three.set(&format!("many:{i}"), &value, None).await.unwrap();
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let many = median(
        timed(|| async {
            assert!(
                backend
                    .get_many(&refs)
                    .await
                    .unwrap()
                    .iter()
                    .all(Option::is_some)
            );
        })
        .await,
    );
    rows.push(Row {
        name: "`get_many` of 100 keys over 3 servers (median)",
        figure: micros(many),
        ratio: ratio(many, raw),
    });
    let envelope = codec::encode(&value, None).unwrap();
    let entries: Vec<(&str, Bytes)> = refs.iter().map(|&k| (k, envelope.clone())).collect();
    let set_many = median(
        timed(|| async {
            backend.set_many(&entries, None).await.unwrap();
        })
        .await,
    );
    rows.push(Row {
        name: "`set_many` of 100 keys over 3 servers (median)",
        figure: micros(set_many),
        ratio: ratio(set_many, raw),
    });

    // L1 hits of a plain and of an encrypted cache, in turns: L1 keeps
    // decrypted values, so an encrypted cache's hit decrypts nothing.
    let l1_plain = cache_with(&servers[..1], |builder| builder.l1(L1Config::default()));
    let l1_sealed = cache_with(&servers[..1], |builder| {
        builder
            .l1(L1Config::default())
            .encrypt(true)
            .master_key(master_key())
    });
    let mut l1_rounds: [Vec<Duration>; 2] = Default::default();
    for _ in 0..L1_ROUNDS {
        for (cache, rounds) in [&l1_plain, &l1_sealed].into_iter().zip(&mut l1_rounds) {
            cache.set("l1", &value, None).await.unwrap();
            let start = Instant::now();
            for _ in 0..L1_HITS {
                std::hint::black_box(cache.get::<String>("l1").await.unwrap().unwrap());
            }
            rounds.push(start.elapsed() / L1_HITS);
        }
    }
    let [l1_plain, l1_sealed] = l1_rounds.map(median);
    rows.push(Row {
        name: "`Cache::get` L1 hit (median of rounds)",
        figure: nanos(l1_plain),
        ratio: "1.00x".into(),
    });
    rows.push(Row {
        name: "`Cache::get` L1 hit, encrypted cache (median of rounds)",
        figure: nanos(l1_sealed),
        ratio: ratio(l1_sealed, l1_plain),
    });

    // 64 tasks over three servers: cachekit vs the raw pipelined ceiling
    // (the same wire keys, on the servers cachekit put them) and vs
    // memcache::exp::AsyncMemcache (its own keys, placed by its own hash).
    for i in 0..KEYSPACE {
        three.set(&format!("c:{i}"), &value, None).await.unwrap();
    }
    let wire_keys: Vec<String> = (0..KEYSPACE)
        .map(|i| three.backend_key(&format!("c:{i}")))
        .collect();
    let ceiling = Arc::new(ceiling::Ceiling::connect(&servers, &wire_keys).await);
    let theirs_client = Arc::new(
        memcache::exp::AsyncMemcache::connect(servers.clone())
            .await
            .unwrap(),
    );
    for i in 0..KEYSPACE {
        theirs_client
            .set(
                format!("m:{i}"),
                value.as_bytes(),
                Duration::from_secs(3600),
            )
            .await
            .unwrap();
    }
    let ceiling_op = move |i| {
        let ceiling = ceiling.clone();
        async move {
            std::hint::black_box(ceiling.get(i).await.unwrap());
        }
    };
    let ours_op = {
        let three = three.clone();
        move |i| {
            let three = three.clone();
            async move {
                std::hint::black_box(
                    three
                        .get::<String>(&format!("c:{i}"))
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
        }
    };
    let theirs_op = move |i| {
        let client = theirs_client.clone();
        async move {
            let got: Option<Vec<u8>> = client.get(format!("m:{i}")).await.unwrap();
            std::hint::black_box(got.unwrap());
        }
    };
    // Over TLS too, when xtask started TLS servers: the sequential rows
    // now, the 64-task row in the turns below.
    let tls_servers = tls_servers();
    let tls_op = match &tls_servers {
        Some((servers, ca)) => {
            rows.extend(tls_sequential(servers, ca, &value, raw).await);
            let three_tls = tls::cache(servers, ca);
            for i in 0..KEYSPACE {
                three_tls
                    .set(&format!("c:{i}"), &value, None)
                    .await
                    .unwrap();
            }
            Some(move |i| {
                let three_tls = three_tls.clone();
                async move {
                    let key = format!("c:{i}");
                    std::hint::black_box(three_tls.get::<String>(&key).await.unwrap().unwrap());
                }
            })
        }
        None => None,
    };
    // They take turns, a slice each, so that drift in the machine's speed
    // hits all of them alike.
    let mut counts = [Count::default(); 4];
    for _ in 0..CONCURRENT_SLICES {
        counts[0] += throughput(ceiling_op.clone()).await;
        counts[1] += throughput(ours_op.clone()).await;
        counts[2] += throughput(theirs_op.clone()).await;
        if let Some(tls_op) = &tls_op {
            counts[3] += throughput(tls_op.clone()).await;
        }
    }
    let [ceiling_figure, ours, theirs, ours_tls] = counts.map(Count::per_second);
    rows.push(Row {
        name: "64 tasks, 3 servers: `memcache::exp::AsyncMemcache` get",
        figure: format!("{theirs:.0} ops/s"),
        ratio: "1.00x".into(),
    });
    rows.push(Row {
        name: "64 tasks, 3 servers: raw pipelined `mg`, one connection per server (ceiling)",
        figure: format!("{ceiling_figure:.0} ops/s"),
        ratio: format!("{:.2}x", ceiling_figure / theirs),
    });
    rows.push(Row {
        name: "64 tasks, 3 servers: `Cache::get` (L1 off)",
        figure: format!("{ours:.0} ops/s"),
        ratio: format!(
            "{:.2}x; {:.2}x the ceiling",
            ours / theirs,
            ours / ceiling_figure
        ),
    });

    if tls_op.is_some() {
        rows.push(Row {
            name: "64 tasks, 3 TLS servers: `Cache::get` over TLS (L1 off)",
            figure: format!("{ours_tls:.0} ops/s"),
            ratio: format!("{:.2}x `Cache::get` over plain TCP", ours_tls / ours),
        });
    }
    println!("| measurement | figure | ratio |");
    println!("|---|---|---|");
    for row in rows {
        println!("| {} | {} | {} |", row.name, row.figure, row.ratio);
    }
}

/// The TLS servers xtask started, and the CA that signed their
/// certificate; `None`, said loudly, without them.
fn tls_servers() -> Option<(Vec<String>, std::path::PathBuf)> {
    match (
        std::env::var("CACHEKIT_BENCH_MEMCACHED_TLS"),
        std::env::var("CACHEKIT_BENCH_MEMCACHED_TLS_CA"),
    ) {
        (Ok(servers), Ok(ca)) => Some((servers.split(',').map(String::from).collect(), ca.into())),
        _ => {
            println!(
                "note: no TLS servers (`cargo xtask bench memcached` starts them): the TLS rows are left out"
            );
            None
        }
    }
}

/// The sequential TLS rows: a raw TLS `mg` loop and `Cache::get` over TLS,
/// taking turns, against one TLS server; `raw` is the plain loop's median.
async fn tls_sequential(
    servers: &[String],
    ca: &std::path::Path,
    value: &str,
    raw: Duration,
) -> Vec<Row> {
    let one = tls::cache(&servers[..1], ca);
    one.set("seq", &value, None).await.unwrap();
    let mut client = tls::connect(&servers[0], ca, &one.backend_key("seq")).await;
    let (raw_tls, get_tls) =
        tls::sequential(&mut client, &one, "seq", WARMUP_OPS, SEQUENTIAL_OPS).await;
    let (raw_tls, get_tls) = (median(raw_tls), median(get_tls));
    vec![
        Row {
            name: "raw TLS `mg` loop, one connection (median)",
            figure: micros(raw_tls),
            ratio: format!("{} the plain loop", ratio(raw_tls, raw)),
        },
        Row {
            name: "`Cache::get` hit over TLS (median)",
            figure: micros(get_tls),
            ratio: format!("{} the raw TLS loop", ratio(get_tls, raw_tls)),
        },
    ]
}

fn config(servers: &[String]) -> MemcachedBackendConfig {
    MemcachedBackendConfig {
        servers: servers.to_vec(),
        ..Default::default()
    }
}

async fn cache(servers: &[String]) -> Cache {
    cache_with(servers, |builder| builder)
}

/// A cache like [`cache`]'s, with `more` options.
fn cache_with(servers: &[String], more: impl FnOnce(CacheBuilder) -> CacheBuilder) -> Cache {
    more(
        Cache::builder()
            .backend(MemcachedBackend::new(config(servers)).unwrap())
            .namespace("bench")
            .without_l1()
            .config(ConfigSource::defaults_only()),
    )
    .build()
    .unwrap()
}

/// The master key of the encrypted rows.
fn master_key() -> MasterKey {
    MasterKey::from_bytes(&[7; 32]).unwrap()
}

/// Per-operation latencies of `op`, after a warm-up.
async fn timed<F, Fut>(mut op: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..WARMUP_OPS {
        op().await;
    }
    let mut samples = Vec::with_capacity(SEQUENTIAL_OPS);
    for _ in 0..SEQUENTIAL_OPS {
        let started = Instant::now();
        op().await;
        samples.push(started.elapsed());
    }
    samples
}

/// The raw floor: `mg <key> v` and its answer on one plain connection.
struct RawClient<R, W> {
    read: BufReader<R>,
    write: W,
    command: Vec<u8>,
    line: String,
    data: Vec<u8>,
}

impl RawClient<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf> {
    async fn connect(server: &str, key: &str) -> Self {
        let stream = TcpStream::connect(server).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        RawClient::over(read, write, key)
    }
}

impl<R: tokio::io::AsyncRead + Unpin, W: tokio::io::AsyncWrite + Unpin> RawClient<R, W> {
    /// A client reading `key` over the halves of a stream (TCP, or TLS).
    fn over(read: R, write: W, key: &str) -> Self {
        RawClient {
            read: BufReader::new(read),
            write,
            command: format!("mg {key} v\r\n").into_bytes(),
            line: String::new(),
            data: Vec::new(),
        }
    }

    /// One `mg` hit, read whole. The flush sends what a TLS stream holds
    /// back (a plain socket has nothing to flush).
    async fn get(&mut self) {
        self.write.write_all(&self.command).await.unwrap();
        self.write.flush().await.unwrap();
        self.line.clear();
        self.read.read_line(&mut self.line).await.unwrap();
        let len: usize = self
            .line
            .trim_end()
            .strip_prefix("VA ")
            .unwrap()
            .parse()
            .unwrap();
        self.data.resize(len + 2, 0);
        self.read.read_exact(&mut self.data).await.unwrap();
        std::hint::black_box(&self.data);
    }
}

/// Operations done, and the time they took.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    ops: u64,
    took: Duration,
}

impl Count {
    fn per_second(self) -> f64 {
        self.ops as f64 / self.took.as_secs_f64()
    }
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, other: Count) {
        self.ops += other.ops;
        self.took += other.took;
    }
}

/// Operations of `CONCURRENT_TASKS` tasks running `op` over the keyspace
/// for one slice of `CONCURRENT_FOR`.
async fn throughput<F, Fut>(op: F) -> Count
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let slice = CONCURRENT_FOR / CONCURRENT_SLICES;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|task| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = task * 7;
                while started.elapsed() < slice {
                    op(i % KEYSPACE).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 13;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Count {
        ops: done.load(Ordering::Relaxed),
        took: started.elapsed(),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn nanos(d: Duration) -> String {
    format!("{} ns", d.as_nanos())
}

fn ratio(ours: Duration, raw: Duration) -> String {
    format!("{:.2}x", ours.as_secs_f64() / raw.as_secs_f64())
}
