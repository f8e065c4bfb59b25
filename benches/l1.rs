//! `cargo xtask bench l1`: cachekit's in-process tier against the fastest
//! Rust caches, in one run. xtask runs this binary pinned to one CPU; it
//! needs no server.
//!
//! Prints two Markdown tables, which docs/benchmarks.md records:
//!
//! 1. the latency of a hit, each row taking turns batch by batch with the
//!    others, as a ratio against the `cached` crate's `#[cached]`;
//! 2. the hit ratio at 10,000 entries on one seeded Zipf(0.99) trace, and
//!    on the same trace right after a one-off scan of cold keys.
//!
//! cachekit is measured through its public API only (`#[cache]`, `Cache`,
//! `MemoryBackend`), so that the figures follow whatever store is beneath.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cached::proc_macro::cached;
use cachekit::{Cache, ConfigSource, MemoryBackend, cache};
use dashmap::DashMap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::Zipf;

/// Calls per sample of the latency rows: one `Instant` pair per batch, so
/// that reading the clock does not dominate a call of a few tens of ns.
const BATCH: u32 = 200;
/// Batches recorded per latency row.
const SAMPLES: usize = 2_000;
/// Rounds of batches run and dropped before recording.
const WARMUP_ROUNDS: usize = 200;
/// The key every latency row hits.
const HOT: u64 = 42;

/// Entries every cache of the hit-ratio rows holds: the default size of a
/// cached function's L1 (`l1_max_entries`).
const CAPACITY: usize = 10_000;
/// Keys of the Zipf distribution.
const KEYS: f64 = 1_000_000.0;
/// Zipf's exponent.
const EXPONENT: f64 = 0.99;
/// Requests that fill the cache before anything is counted.
const WARMUP_REQUESTS: usize = 500_000;
/// Requests counted for trace A.
const MEASURED_REQUESTS: usize = 2_000_000;
/// Cold keys of trace B's one-off scan, none requested before or after.
const SCAN: u64 = 50_000;
/// Requests counted for trace B, right after its scan.
const AFTER_SCAN_REQUESTS: usize = 500_000;
/// The first of those, counted on their own as well: the capacity's
/// worth. A cache that the scan flushed refills its hot keys over about
/// that many requests, so the collapse shows over this window and fades
/// over the longer one.
const RIGHT_AFTER_SCAN: usize = 10_000;
/// The seed of the trace, fixed so that every run replays the same one.
const SEED: u64 = 0x5eed_cafe;
/// The first key of the scan: above every key the Zipf trace can draw.
const SCAN_START: u64 = 10_000_000;
/// How often moka runs its pending maintenance (admission, eviction) in
/// the hit-ratio rows, in requests: often enough that it holds about
/// `CAPACITY` entries, as the other caches do at every request.
const MOKA_MAINTENANCE: usize = 64;

/// 100 bytes, like the other benchmarks' values.
fn value_for(n: u64) -> String {
    format!("{n:0>100}")
}

/// The `#[cache]` plain function of the latency rows.
#[cache(namespace = "bench-l1")]
fn cachekit_sync(n: u64) -> String {
    value_for(n)
}

/// The `#[cache]` async function of the latency rows.
#[cache(namespace = "bench-l1")]
async fn cachekit_async(n: u64) -> String {
    value_for(n)
}

/// The `#[cache]` function of the hit-ratio rows, its L1 sized as the
/// other caches are.
#[cache(namespace = "bench-l1-ratio", l1_capacity = 10_000)]
fn cachekit_ratio(n: u64) -> u64 {
    n
}

/// `cached`'s `#[cached]` with its default store (unbounded).
#[cached]
fn cached_unbound(n: u64) -> String {
    value_for(n)
}

/// `cached`'s `#[cached]` with its bounded LRU store.
#[cached(size = 10_000)]
fn cached_sized(n: u64) -> String {
    value_for(n)
}

/// Polls a future once with a no-op waker and returns its output: every
/// future polled here is a string of L1 or in-memory hits, ready at once,
/// so no runtime (and no runtime's overhead) is involved.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-process hit is ready at its first poll"),
    }
}

/// Checks the L1's size setting, then prints the latency table and the
/// hit-ratio table; `-- latency` or `-- ratio` prints only that one.
fn main() {
    let only = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    if let Ok(entries) = std::env::var("CACHEKIT_L1_MAX_ENTRIES") {
        assert_eq!(
            entries,
            CAPACITY.to_string(),
            "the hit-ratio rows compare caches of {CAPACITY} entries: \
             unset CACHEKIT_L1_MAX_ENTRIES or set it to {CAPACITY}"
        );
    }
    if only.as_deref() != Some("ratio") {
        latency();
        println!();
    }
    if only.as_deref() != Some("latency") {
        hit_ratio();
    }
}

/// A latency row: its name and its per-call means, one per batch.
struct Row {
    name: &'static str,
    samples: Vec<Duration>,
}

/// Measures a hit of every cache, batch by batch in turns, and prints the
/// latency table.
fn latency() {
    let raw: DashMap<u64, String> = DashMap::new();
    raw.insert(HOT, value_for(HOT));
    let quick: quick_cache::sync::Cache<u64, String> = quick_cache::sync::Cache::new(CAPACITY);
    quick.insert(HOT, value_for(HOT));
    let moka: moka::sync::Cache<u64, String> = moka::sync::Cache::new(CAPACITY as u64);
    moka.insert(HOT, value_for(HOT));
    moka.run_pending_tasks();
    assert_eq!(cachekit_sync(HOT), value_for(HOT));
    assert_eq!(ready(cachekit_async(HOT)), value_for(HOT));
    assert_eq!(cached_unbound(HOT), value_for(HOT));
    assert_eq!(cached_sized(HOT), value_for(HOT));

    /// One batch of a row; returns its mean per call.
    type Batch<'a> = Box<dyn Fn() -> Duration + 'a>;

    // Each closure runs one batch and returns its mean per call. The
    // async row polls its whole batch as one future with a no-op waker:
    // the same one poll per batch that a runtime's `block_on` would make,
    // without the runtime's own cost (a `block_on` of a current-thread
    // runtime enters its context and parks its driver), so that the row
    // measures the async function, not tokio.
    let timed = |call: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..BATCH {
            call();
        }
        started.elapsed() / BATCH
    };
    let rows: Vec<(&'static str, Batch<'_>)> = vec![
        (
            "`cached` `#[cached]` `fn(u64) -> String` (unbounded store)",
            Box::new(|| timed(&|| drop(black_box(cached_unbound(black_box(HOT)))))),
        ),
        (
            "`cached` `#[cached(size = 10_000)]` (LRU store)",
            Box::new(|| timed(&|| drop(black_box(cached_sized(black_box(HOT)))))),
        ),
        (
            "`#[cache]` `fn(u64) -> String` L1 hit",
            Box::new(|| timed(&|| drop(black_box(cachekit_sync(black_box(HOT)))))),
        ),
        (
            "`#[cache]` `async fn(u64) -> String` L1 hit (no-op waker)",
            Box::new(|| {
                ready(async {
                    let started = Instant::now();
                    for _ in 0..BATCH {
                        black_box(cachekit_async(black_box(HOT)).await);
                    }
                    started.elapsed() / BATCH
                })
            }),
        ),
        (
            "raw `DashMap<u64, String>` get + clone",
            Box::new(|| timed(&|| drop(black_box(raw.get(black_box(&HOT)).map(|v| v.clone()))))),
        ),
        (
            "`quick_cache::sync::Cache<u64, String>` get",
            Box::new(|| timed(&|| drop(black_box(quick.get(black_box(&HOT)))))),
        ),
        (
            "`moka::sync::Cache<u64, String>` get",
            Box::new(|| timed(&|| drop(black_box(moka.get(black_box(&HOT)))))),
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(SAMPLES); rows.len()];
    for round in 0..WARMUP_ROUNDS + SAMPLES {
        for ((_, batch), recorded) in rows.iter().zip(&mut samples) {
            let mean = batch();
            if round >= WARMUP_ROUNDS {
                recorded.push(mean);
            }
        }
    }
    assert_eq!(
        cachekit_sync_stats().loads,
        1,
        "every call after the first is a hit"
    );
    assert_eq!(
        cachekit_async_stats().loads,
        1,
        "every call after the first is a hit"
    );
    let rows: Vec<Row> = rows
        .iter()
        .zip(samples)
        .map(|((name, _), samples)| Row { name, samples })
        .collect();
    print_latency(rows);
}

/// Prints the latency table: median and p99 of the batch means, and the
/// median's ratio to the first row (`#[cached]`).
fn print_latency(rows: Vec<Row>) {
    println!(
        "Hit latency, ns per call: {SAMPLES} batches of {BATCH} calls per row, \
         rows taking turns batch by batch"
    );
    println!();
    println!("| hit | median | p99 of batches | vs `#[cached]` |");
    println!("|---|---|---|---|");
    let mut baseline = None;
    for Row { name, mut samples } in rows {
        samples.sort_unstable();
        let median = samples[samples.len() / 2];
        let p99 = samples[samples.len() * 99 / 100];
        let baseline = *baseline.get_or_insert(median);
        println!(
            "| {name} | {} ns | {} ns | {:.2}x |",
            median.as_nanos(),
            p99.as_nanos(),
            median.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

/// The requests of both traces, drawn once and replayed to every cache.
struct Trace {
    /// Trace A: the warm-up, then the counted requests.
    zipf: Vec<u64>,
    /// Trace B's continuation: the scan's cold keys, then the requests
    /// counted after it (drawn from the same distribution).
    after_scan: Vec<u64>,
}

impl Trace {
    /// Draws the trace from the fixed seed.
    fn generate() -> Trace {
        let mut rng = SmallRng::seed_from_u64(SEED);
        let zipf = Zipf::new(KEYS, EXPONENT).expect("a valid Zipf distribution");
        let mut draw =
            |count: usize| -> Vec<u64> { (0..count).map(|_| rng.sample(zipf) as u64).collect() };
        let requests = draw(WARMUP_REQUESTS + MEASURED_REQUESTS);
        let after_scan = (SCAN_START..SCAN_START + SCAN)
            .chain(draw(AFTER_SCAN_REQUESTS))
            .collect();
        Trace {
            zipf: requests,
            after_scan,
        }
    }
}

/// A cache under the hit-ratio trace: looks a key up and inserts it on a
/// miss; tells whether the lookup found it.
trait Probe {
    /// Looks `key` up; on a miss inserts it. `true` for a hit.
    fn request(&mut self, key: u64) -> bool;
}

/// Any closure of the right shape is a probe.
impl<F: FnMut(u64) -> bool> Probe for F {
    fn request(&mut self, key: u64) -> bool {
        self(key)
    }
}

/// The hit ratios of one cache: trace A, and trace B after its scan.
struct Ratios {
    name: &'static str,
    zipf: f64,
    /// Over the first `RIGHT_AFTER_SCAN` requests after the scan.
    right_after_scan: f64,
    /// Over all `AFTER_SCAN_REQUESTS` requests after the scan.
    after_scan: f64,
    /// Wall time of the whole replay, for the note under the table.
    took: Duration,
}

/// Replays the trace to `probe`: the warm-up, trace A's counted requests,
/// then the scan and the requests counted after it. `hits` reads the
/// cache's own hit count where the probe's answer is not the one to
/// count (see the `#[cache]` row); otherwise `None`.
fn replay(
    name: &'static str,
    trace: &Trace,
    probe: &mut dyn Probe,
    hits: Option<&dyn Fn() -> u64>,
) -> Ratios {
    let started = Instant::now();
    let count = |requests: &[u64], probe: &mut dyn Probe| -> u64 {
        let before = hits.map(|hits| hits());
        let mut found = 0;
        for &key in requests {
            found += u64::from(probe.request(key));
        }
        match (hits, before) {
            (Some(hits), Some(before)) => hits() - before,
            _ => found,
        }
    };
    let (warmup, measured) = trace.zipf.split_at(WARMUP_REQUESTS);
    count(warmup, probe);
    let zipf = count(measured, probe) as f64 / measured.len() as f64;
    let (scan, after) = trace.after_scan.split_at(SCAN as usize);
    count(scan, probe);
    let (first, rest) = after.split_at(RIGHT_AFTER_SCAN);
    let first_hits = count(first, probe);
    let rest_hits = count(rest, probe);
    Ratios {
        name,
        zipf,
        right_after_scan: first_hits as f64 / first.len() as f64,
        after_scan: (first_hits + rest_hits) as f64 / after.len() as f64,
        took: started.elapsed(),
    }
}

/// Replays the trace to every cache and prints the hit-ratio table.
fn hit_ratio() {
    let trace = Trace::generate();
    let mut rows = Vec::new();

    // cachekit, through a cached function: every call is a lookup and a
    // miss inserts (the loader's result, or the backend's copy) into the
    // function's L1. Only L1 hits count: a miss in L1 that the function's
    // backend (the in-memory default, 100,000 entries) answers is a miss
    // of the L1 under test.
    rows.push(replay(
        "cachekit `#[cache]` fn, its L1 (`l1_capacity = 10_000`; L1 hits only)",
        &trace,
        &mut |key: u64| {
            black_box(cachekit_ratio(key));
            false
        },
        Some(&|| cachekit_ratio_stats().l1_hits),
    ));
    let l1_entries = cachekit::stats()
        .l1
        .iter()
        .find(|l1| l1.name == "l1::cachekit_ratio")
        .map(|l1| l1.entries);

    // cachekit's in-memory backend, which uses the same store, through a
    // `Cache` with no L1: a hit is a `get` that finds the key.
    let memory = Cache::builder()
        .backend(MemoryBackend::with_limits(CAPACITY, 1 << 30))
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .expect("a cache over the in-memory backend");
    rows.push(replay(
        "cachekit `MemoryBackend::with_limits(10_000, 1 GiB)`, `Cache` without L1",
        &trace,
        &mut |key: u64| {
            let key = key.to_string();
            let found = ready(memory.get::<u64>(&key))
                .expect("the memory backend reads")
                .is_some();
            if !found {
                ready(memory.set(&key, &0u64, None)).expect("the memory backend writes");
            }
            found
        },
        None,
    ));

    let quick: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(CAPACITY);
    rows.push(replay(
        "`quick_cache::sync::Cache` (10,000 items, unit weights)",
        &trace,
        &mut |key: u64| {
            let found = quick.get(&key).is_some();
            if !found {
                quick.insert(key, key);
            }
            found
        },
        None,
    ));

    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(CAPACITY as u64);
    let mut requests = 0usize;
    rows.push(replay(
        "`moka::sync::Cache` (`max_capacity` 10,000)",
        &trace,
        &mut |key: u64| {
            requests += 1;
            if requests % MOKA_MAINTENANCE == 0 {
                moka.run_pending_tasks();
            }
            let found = moka.get(&key).is_some();
            if !found {
                moka.insert(key, key);
            }
            found
        },
        None,
    ));

    let mut lru = lru::LruCache::new(NonZeroUsize::new(CAPACITY).expect("a non-zero capacity"));
    rows.push(replay(
        "`lru::LruCache` (10,000 entries)",
        &trace,
        &mut |key: u64| {
            let found = lru.get(&key).is_some();
            if !found {
                lru.put(key, key);
            }
            found
        },
        None,
    ));

    println!(
        "Hit ratio at {CAPACITY} entries: Zipf({EXPONENT}) over {KEYS} keys, seed {SEED:#x}; \
         A: {MEASURED_REQUESTS} requests after {WARMUP_REQUESTS} of warm-up; \
         B: the same trace going on after a one-off scan of {SCAN} cold keys that follows A, \
         its first {RIGHT_AFTER_SCAN} and its {AFTER_SCAN_REQUESTS} requests after the scan"
    );
    println!();
    println!(
        "| cache | A: Zipf | B: first {RIGHT_AFTER_SCAN} after the scan \
         | B: {AFTER_SCAN_REQUESTS} after the scan | replay took |"
    );
    println!("|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.1} s |",
            row.name,
            row.zipf,
            row.right_after_scan,
            row.after_scan,
            row.took.as_secs_f64()
        );
    }
    println!();
    match l1_entries {
        Some(entries) => println!("The function's L1 held {entries} entries after its replay."),
        None => println!("The function's L1 reported no entry count."),
    }
}
