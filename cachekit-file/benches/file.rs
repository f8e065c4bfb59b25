//! `cargo xtask bench file`: cachekit's file backend against the raw file
//! calls it makes, measured in the same run. Needs no server; xtask runs
//! this binary pinned to one CPU (its blocking threads with it).
//!
//! Prints two Markdown tables; docs/benchmarks.md records them.
//!
//! Every directory lives under a temp directory of `std::env::temp_dir()`
//! (a real disk, not tmpfs, where fsync costs what it costs), removed at
//! the end. Each measurement takes turns operation by operation with its
//! raws, so that drift in the machine's speed hits all of them alike, in
//! an order that rotates, so that none always follows the same one:
//!
//! - Get hits, L1 off: `std::fs::read` of a file holding the same bytes
//!   as the entry's file, called inline; the same read through
//!   `tokio::task::spawn_blocking`, awaited (what `tokio::fs::read` does,
//!   and what the backend must do to keep file I/O off the executor);
//!   `FileBackend::get`; `Cache::get`; and, to tell the hand-off from
//!   the file calls, `spawn_blocking` of an empty closure.
//! - Sets: a raw write of the entry's bytes to a temp file, `sync_data`,
//!   and a rename over the old file, in the same directory, inline and
//!   through `spawn_blocking`, against `FileBackend::set`; with fsync on
//!   (the default) and off (the raws then skip `sync_data`).
//! - Size of the cache: get hits and evicting sets (fsync off) in a cache
//!   of 1,000 entries against one of 100,000, in one flat directory each,
//!   and their raw twins in plain directories of as many files: the same
//!   reads, and a write renamed to a new name with the oldest file removed.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachekit_core::{Backend, Cache, ConfigSource};
use cachekit_file::{FileBackend, FileBackendConfig};

/// Operations timed per get row and per fsync-off set row, after
/// [`WARMUP_OPS`] untimed ones.
const OPS: usize = 20_000;
/// Untimed operations first, per row of [`OPS`].
const WARMUP_OPS: usize = 2_000;
/// Operations timed per fsync-on set row: each flush takes milliseconds.
const FSYNC_OPS: usize = 300;
/// Untimed operations first, per fsync-on set row.
const FSYNC_WARMUP_OPS: usize = 30;
/// Evicting sets timed per cache size, after [`EVICT_WARMUP_OPS`]. Fewer
/// than the small cache's entries, so that at both sizes every victim is
/// an entry of the fill, on disk: removing a file written seconds ago,
/// whose blocks the file system has not allocated yet, costs a fraction
/// of removing one that is on disk.
const EVICT_OPS: usize = 800;
/// Untimed evicting sets first, per cache size.
const EVICT_WARMUP_OPS: usize = 100;
/// The evicting sets stay within the small cache's fill (see [`EVICT_OPS`]).
const _: () = assert!(EVICT_WARMUP_OPS + EVICT_OPS < SIZES[0]);
/// The entries of the small and the large cache.
const SIZES: [usize; 2] = [1_000, 100_000];
/// Keys the get rows of both sizes read in turn: as many in each, so that
/// only the directory's size differs (and not, say, how often a read is
/// the first in a second, which refreshes the file's access time).
const READ_KEYS: usize = 1_000;
/// Sets in flight while filling a cache.
const FILL_TASKS: usize = 8;
/// Longest wait for a new backend's start scan to take in a filled
/// directory.
const SCAN_WAIT: Duration = Duration::from_secs(10);
/// Pause between two looks at whether the start scan is done.
const SCAN_POLL: Duration = Duration::from_millis(50);

/// Runs the rows on a current-thread runtime under a temp directory, and
/// prints the tables.
fn main() {
    let root = tempfile::Builder::new()
        .prefix("cachekit-file-bench-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut table = Table::default();
    let sizes = runtime.block_on(async {
        let entry = get_hit(&mut table, &root.path().join("get")).await;
        set(&mut table, &root.path().join("set-fsync"), &entry, true).await;
        set(&mut table, &root.path().join("set"), &entry, false).await;
        by_size(root.path(), &entry).await
    });
    println!("directory: {}", root.path().display());
    println!();
    table.print();
    println!();
    sizes.print();
}

/// An entry as it lies on disk, and the key and value it holds.
struct Entry {
    /// The backend's key: the cache's wire key.
    key: String,
    /// The value the backend stores: the cache's envelope.
    value: Bytes,
    /// The whole file: header, key, value.
    file: Vec<u8>,
}

/// 100 bytes, like the other benchmarks' values.
fn value() -> String {
    "x".repeat(100)
}

/// A backend over `dir` (a directory of its own) with `config`'s limits.
fn backend(dir: &Path, config: FileBackendConfig) -> FileBackend {
    FileBackend::new(config.cache_dir(dir)).unwrap()
}

/// `dir`'s entries directory, where the raw files go too (the backend
/// takes no file there for an entry but 32 hex digits, and no file but
/// `.*.tmp` for a temp file).
fn entries(dir: &Path) -> PathBuf {
    dir.join("entries")
}

/// Get hits, L1 off: the raw read inline, the raw read through
/// `spawn_blocking`, `FileBackend::get`, `Cache::get` and an empty
/// `spawn_blocking` take turns operation by operation (see [`turns`]).
/// Returns the entry read.
async fn get_hit(table: &mut Table, dir: &Path) -> Entry {
    let backend = backend(dir, FileBackendConfig::default());
    let cache = Cache::builder()
        .shared_backend(Arc::new(backend.clone()))
        .namespace("bench")
        .without_l1()
        .config(ConfigSource::defaults_only())
        .build()
        .unwrap();
    cache.set("seq", &value(), None).await.unwrap();
    let key = cache.backend_key("seq");
    let value = backend
        .get(&key)
        .await
        .unwrap()
        .expect("the entry just set");
    let file = only_entry_file(&entries(dir));
    let raw_path = entries(dir).join("raw-get");
    std::fs::write(&raw_path, &file).unwrap();
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for round in 0..WARMUP_OPS + OPS {
        for series in turns(round, samples.len()) {
            let started = Instant::now();
            match series {
                0 => drop(std::hint::black_box(std::fs::read(&raw_path).unwrap())),
                1 => {
                    let path = raw_path.clone();
                    let read = tokio::task::spawn_blocking(move || std::fs::read(path));
                    drop(std::hint::black_box(read.await.unwrap().unwrap()));
                }
                2 => drop(std::hint::black_box(
                    backend.get(&key).await.unwrap().unwrap(),
                )),
                3 => drop(std::hint::black_box(
                    cache.get::<String>("seq").await.unwrap().unwrap(),
                )),
                _ => tokio::task::spawn_blocking(|| ()).await.unwrap(),
            }
            if round >= WARMUP_OPS {
                samples[series].push(started.elapsed());
            }
        }
    }
    let [inline, blocking, ours, cached, hand_off] = samples.map(median);
    table.raws(
        format!("raw `std::fs::read` of a {}-byte file", file.len()),
        inline,
        "the same through `spawn_blocking`, awaited",
        blocking,
    );
    table.compare(
        "`spawn_blocking` of an empty closure, awaited: the hand-off alone",
        hand_off,
    );
    table.compare("`FileBackend::get` hit", ours);
    table.compare(
        "`Cache::get` hit, L1 off (target <= 1.5x the inline raw)",
        cached,
    );
    Entry { key, value, file }
}

/// The bytes of the one entry file in `entries`.
fn only_entry_file(entries: &Path) -> Vec<u8> {
    let files: Vec<PathBuf> = std::fs::read_dir(entries)
        .unwrap()
        .map(|item| item.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one entry expected in {}",
        entries.display()
    );
    std::fs::read(&files[0]).unwrap()
}

/// Sets of `entry` (fsync on when `fsync`): the raw write inline, the raw
/// write through `spawn_blocking`, and `FileBackend::set` take turns
/// operation by operation, each replacing its file.
async fn set(table: &mut Table, dir: &Path, entry: &Entry, fsync: bool) {
    let backend = backend(dir, FileBackendConfig::default().fsync(fsync));
    let raw_dir: Arc<Path> = entries(dir).into();
    let file = Bytes::from(entry.file.clone());
    let (warmup, ops) = if fsync {
        (FSYNC_WARMUP_OPS, FSYNC_OPS)
    } else {
        (WARMUP_OPS, OPS)
    };
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..warmup + ops {
        for series in turns(round, samples.len()) {
            let started = Instant::now();
            match series {
                0 => raw_write(&raw_dir, &file, fsync).unwrap(),
                1 => {
                    let (raw_dir, file) = (Arc::clone(&raw_dir), file.clone());
                    let write =
                        tokio::task::spawn_blocking(move || raw_write(&raw_dir, &file, fsync));
                    write.await.unwrap().unwrap();
                }
                _ => backend
                    .set(&entry.key, entry.value.clone(), None)
                    .await
                    .unwrap(),
            }
            if round >= warmup {
                samples[series].push(started.elapsed());
            }
        }
    }
    let [inline, blocking, ours] = samples.map(median);
    let (raw, target) = if fsync {
        (
            "raw write + `sync_data` + rename",
            "`FileBackend::set`, fsync on (target <= 1.2x the inline raw)",
        )
    } else {
        (
            "raw write + rename",
            "`FileBackend::set`, fsync off (target <= 1.2x the inline raw)",
        )
    };
    table.raws(
        raw.into(),
        inline,
        "the same through `spawn_blocking`, awaited",
        blocking,
    );
    table.compare(target, ours);
}

/// Writes `bytes` to a temp file in `dir`, flushes it when `fsync`, and
/// renames it over `dir/raw-set`: the backend's atomic write, done plainly.
fn raw_write(dir: &Path, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
    let temp = dir.join("raw-set.part");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    if fsync {
        file.sync_data()?;
    }
    std::fs::rename(temp, dir.join("raw-set"))
}

/// A cache of one of [`SIZES`] and its raw twin: the backend (fsync off,
/// full, scan done), a plain directory of as many files of the entry's
/// bytes, and the keys and files the get rows read.
struct Filled {
    backend: FileBackend,
    read_keys: Vec<String>,
    raw_dir: PathBuf,
    /// The raw directory's files, oldest first.
    raw_files: VecDeque<String>,
    read_files: Vec<PathBuf>,
}

/// Get hits, then evicting sets, in a cache of each of [`SIZES`] entries
/// and in its raw twin, the four taking turns operation by operation.
async fn by_size(root: &Path, entry: &Entry) -> SizeTable {
    let mut caches = Vec::with_capacity(SIZES.len());
    for entries in SIZES {
        let dir = root.join(format!("n{entries}"));
        caches.push(filled(&dir, entries, entry).await);
    }
    // The fills' files reach the disk now, not in the background of the
    // timed operations (writeback of 200,000 new files takes seconds of
    // kernel time, on the CPU this binary is pinned to among others).
    rustix::fs::syncfs(std::fs::File::open(root).unwrap()).unwrap();
    // Series `s` is size `s % 2`, raw when `s >= 2`.
    let mut gets: [Vec<Duration>; 4] = Default::default();
    for round in 0..WARMUP_OPS + OPS {
        for series in turns(round, gets.len()) {
            let cache = &caches[series % 2];
            let started = Instant::now();
            if series < 2 {
                let key = &cache.read_keys[round % READ_KEYS];
                drop(std::hint::black_box(
                    cache.backend.get(key).await.unwrap().expect("a hit"),
                ));
            } else {
                let path = &cache.read_files[round % READ_KEYS];
                drop(std::hint::black_box(std::fs::read(path).unwrap()));
            }
            if round >= WARMUP_OPS {
                gets[series].push(started.elapsed());
            }
        }
    }
    let mut sets: [Vec<Duration>; 4] = Default::default();
    for round in 0..EVICT_WARMUP_OPS + EVICT_OPS {
        let key = format!("new:{round}");
        for series in turns(round, sets.len()) {
            let cache = &mut caches[series % 2];
            let started = Instant::now();
            if series < 2 {
                let value = entry.value.clone();
                cache.backend.set(&key, value, None).await.unwrap();
            } else {
                raw_evict(cache, &entry.file, format!("n{round}")).unwrap();
            }
            if round >= EVICT_WARMUP_OPS {
                sets[series].push(started.elapsed());
            }
        }
    }
    for (cache, entries) in caches.iter().zip(SIZES) {
        assert_eq!(
            count_entries(&cache.backend),
            entries,
            "every new key evicts one"
        );
    }
    let [gets, raw_gets] = pairs(gets);
    let [sets, raw_sets] = pairs(sets);
    SizeTable {
        rows: vec![
            (
                format!(
                    "raw `std::fs::read`, {} files read in turn",
                    thousands(READ_KEYS)
                ),
                raw_gets,
            ),
            (
                format!(
                    "`FileBackend::get` hit, {} keys read in turn",
                    thousands(READ_KEYS)
                ),
                gets,
            ),
            (
                "raw write + rename to a new name + removal of the oldest file".into(),
                raw_sets,
            ),
            (
                "`FileBackend::set` of a new key, evicting one (target: no growth)".into(),
                sets,
            ),
        ],
    }
}

/// The medians of four series (size `s % 2`, raw when `s >= 2`) as
/// `[[small, large], [raw small, raw large]]`.
fn pairs(series: [Vec<Duration>; 4]) -> [[Duration; 2]; 2] {
    let [small, large, raw_small, raw_large] = series.map(median);
    [[small, large], [raw_small, raw_large]]
}

/// The raw twin of an evicting set in `cache`'s raw directory: `bytes`
/// written to a temp file, renamed to the new file `name`, and the
/// oldest file removed.
fn raw_evict(cache: &mut Filled, bytes: &[u8], name: String) -> std::io::Result<()> {
    let temp = cache.raw_dir.join("raw-new.part");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    std::fs::rename(temp, cache.raw_dir.join(&name))?;
    cache.raw_files.push_back(name);
    let oldest = cache.raw_files.pop_front().expect("a full directory");
    std::fs::remove_file(cache.raw_dir.join(oldest))
}

/// A backend over `dir` holding `entries` entries of `entry`'s value, at
/// its `max_entries`, as a process finds it that starts over a full
/// cache: another backend (fsync off) writes one entry more, the oldest,
/// and the new backend's start scan evicts it; returned once that scan is
/// done, with its raw twin, `dir.raw`, holding `entries` files of
/// `entry`'s bytes.
async fn filled(dir: &Path, entries: usize, entry: &Entry) -> Filled {
    let value = &entry.value;
    let config = FileBackendConfig::default().fsync(false);
    let filler = backend(dir, config.clone().max_entries(entries as u64 + 1));
    filler.set("oldest", value.clone(), None).await.unwrap();
    // Later than the oldest by more than a tick of the file system's clock.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..FILL_TASKS {
        let (filler, value) = (filler.clone(), value.clone());
        tasks.spawn(async move {
            for i in (task..entries).step_by(FILL_TASKS) {
                let key = format!("fill:{i}");
                filler.set(&key, value.clone(), None).await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    drop(filler);
    let backend = backend(dir, config.max_entries(entries as u64));
    wait_for_scan(&backend, entries).await;
    let step = entries / READ_KEYS;
    let read_keys = (0..READ_KEYS)
        .map(|i| format!("fill:{}", i * step))
        .collect();
    let raw_dir = dir.with_extension("raw");
    std::fs::create_dir(&raw_dir).unwrap();
    let raw_files: VecDeque<String> = (0..entries).map(|i| format!("f{i}")).collect();
    for name in &raw_files {
        std::fs::write(raw_dir.join(name), &entry.file).unwrap();
    }
    let read_files = (0..READ_KEYS)
        .map(|i| raw_dir.join(&raw_files[i * step]))
        .collect();
    Filled {
        backend,
        read_keys,
        raw_dir,
        raw_files,
        read_files,
    }
}

/// Waits, for at most [`SCAN_WAIT`], until `backend`'s start scan has
/// brought its directory (one file over the limit) down to `entries`
/// files: the scan evicts only once it has taken the files in.
async fn wait_for_scan(backend: &FileBackend, entries: usize) {
    let started = Instant::now();
    for _ in 0..SCAN_WAIT.as_millis() / SCAN_POLL.as_millis() {
        if count_entries(backend) == entries {
            return;
        }
        tokio::time::sleep(SCAN_POLL).await;
    }
    panic!(
        "the start scan of {} entries evicted nothing within {:?}",
        entries + 1,
        started.elapsed()
    );
}

/// The files in `backend`'s entries directory.
fn count_entries(backend: &FileBackend) -> usize {
    std::fs::read_dir(entries(&backend.config().cache_dir))
        .unwrap()
        .count()
}

/// Rows of medians and their ratios to two raws measured in the same run.
#[derive(Default)]
struct Table {
    rows: Vec<(String, Duration, f64, Option<f64>)>,
    /// The current raws: inline, and through `spawn_blocking`.
    raws: (Duration, Duration),
}

impl Table {
    /// Adds the rows of two raws, inline and through `spawn_blocking`;
    /// later rows compare with them.
    fn raws(
        &mut self,
        inline_name: String,
        inline: Duration,
        blocking_name: &str,
        blocking: Duration,
    ) {
        self.raws = (inline, blocking);
        self.rows.push((inline_name, inline, 1.0, None));
        self.compare(blocking_name, blocking);
    }

    /// Adds a row of `figure` compared with the current raws.
    fn compare(&mut self, name: &str, figure: Duration) {
        let (inline, blocking) = self.raws;
        self.rows.push((
            name.into(),
            figure,
            ratio(figure, inline),
            Some(ratio(figure, blocking)),
        ));
    }

    /// Prints the rows as a Markdown table.
    fn print(&self) {
        println!("| measurement | median | vs inline raw | vs `spawn_blocking` raw |");
        println!("|---|---|---|---|");
        for (name, figure, inline, blocking) in &self.rows {
            let blocking = blocking.map_or(String::new(), |ratio| format!("{ratio:.2}x"));
            println!("| {name} | {} | {inline:.2}x | {blocking} |", show(*figure));
        }
    }
}

/// Rows of medians by the cache's size, one per [`SIZES`].
struct SizeTable {
    rows: Vec<(String, [Duration; 2])>,
}

impl SizeTable {
    /// Prints the medians and the ratio of the large to the small cache
    /// as a Markdown table.
    fn print(&self) {
        let [small, large] = SIZES.map(thousands);
        println!(
            "| measurement (fsync off) | {small} entries | {large} entries | {large} / {small} |"
        );
        println!("|---|---|---|---|");
        for (name, [small, large]) in &self.rows {
            println!(
                "| {name} | {} | {} | {:.2}x |",
                show(*small),
                show(*large),
                ratio(*large, *small)
            );
        }
    }
}

/// The order in which `series` take their turns in `round`: each goes
/// first in every `series`-th round, so that none always follows the same
/// one (a write's flush, say, slows the next write down).
fn turns(round: usize, series: usize) -> impl Iterator<Item = usize> {
    (0..series).map(move |turn| (round + turn) % series)
}

/// `n` with a comma between thousands: `100,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut shown = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            shown.push(',');
        }
        shown.push(digit);
    }
    shown
}

/// `figure / baseline`.
fn ratio(figure: Duration, baseline: Duration) -> f64 {
    figure.as_secs_f64() / baseline.as_secs_f64()
}

/// The middle of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// `d` in microseconds with one decimal, or in milliseconds with two
/// from 1 ms up.
fn show(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 1_000.0 {
        format!("{:.2} ms", micros / 1_000.0)
    } else {
        format!("{micros:.1} µs")
    }
}
