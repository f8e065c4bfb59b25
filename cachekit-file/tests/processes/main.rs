//! Processes sharing one cache directory: real child processes (this test
//! binary run again) on real files in a temp directory. It proves that
//!
//! - processes writing and reading the same keys at once never read a torn
//!   value, nor another key's;
//! - a writer killed with SIGKILL mid-write leaves no torn value (the old
//!   entry stays whole), and the next start removes its temp file;
//! - a start's scan for such orphans leaves a live writer's temp files
//!   alone;
//! - `Lock::try_lock` excludes across processes;
//! - the lock of a holder killed while it held it stays taken until its
//!   lease ends, and is free then.
//!
//! A fifth test checks the check: a value cut anywhere, changed, or
//! another key's is refused.
//!
//! Every test is also its own child: run with [`CHILD`] set to a role, it
//! plays that role in the directory named by [`CHILD_DIR`] and reports on
//! stdout in lines that start with `CHILD `. The parents take turns (one
//! test at a time), so that one test's disk traffic does not stall another's.

mod child;
mod locks;
mod value;

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::ChildStdout;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachekit_core::Backend;
use cachekit_file::FileBackend;

use child::*;
use value::*;

// ---------------------------------------------------------------------------
// Concurrent writers and readers.

/// Processes that write and read the shared keys at once.
const MIXERS: u64 = 4;
/// Rounds of each mixer: a write of one key and a read of another.
const MIXER_ROUNDS: u64 = 1_000;
/// The keys the mixers share (fewer than `max_entries`: nothing is evicted).
const SHARED_KEYS: u64 = 50;

/// Four processes each write 1,000 self-describing values over 50 shared
/// keys (a quarter of them 64-300 KiB, so that writes take time) and read
/// 1,000: every read is a miss or a whole value of the key it was read
/// under; reads hit, and see other processes' writes.
#[test]
fn concurrent_processes_never_read_torn_or_foreign_values() {
    const TEST: &str = "concurrent_processes_never_read_torn_or_foreign_values";
    if let Some(role) = child_role() {
        return mixer(&role);
    }
    let _turn = take_turn();
    let root = tempfile::tempdir().expect("a temp directory");
    let started = Instant::now();
    let children = spawn_ready(TEST, "mixer", MIXERS, root.path());
    let mut total = MixerReport::default();
    for (child, out) in children {
        let (report, bad) = mixer_report(child, out);
        assert!(bad.is_empty(), "a child read bad values: {bad:#?}");
        total.add(&report);
    }
    println!(
        "{MIXERS} processes x {MIXER_ROUNDS} rounds in {:?}: {total:?}",
        started.elapsed()
    );
    assert_eq!(total.bad, 0, "torn or foreign values were read: {total:?}");
    assert_eq!(total.errors, 0, "backend errors: {total:?}");
    assert_eq!(total.writes, MIXERS * MIXER_ROUNDS, "{total:?}");
    assert!(total.hits > 0, "reads found values: {total:?}");
    assert!(
        total.hits_of_others > 0,
        "reads found other processes' values: {total:?}"
    );
}

/// What a mixer counted.
#[derive(Debug, Default)]
struct MixerReport {
    writes: u64,
    hits: u64,
    hits_of_others: u64,
    misses: u64,
    bad: u64,
    errors: u64,
}

impl MixerReport {
    fn add(&mut self, other: &MixerReport) {
        self.writes += other.writes;
        self.hits += other.hits;
        self.hits_of_others += other.hits_of_others;
        self.misses += other.misses;
        self.bad += other.bad;
        self.errors += other.errors;
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.writes, self.hits, self.hits_of_others, self.misses, self.bad, self.errors
        )
    }

    fn parse(line: &str) -> Self {
        let n: Vec<u64> = line
            .split_whitespace()
            .map(|n| n.parse().expect("a count"))
            .collect();
        let [writes, hits, hits_of_others, misses, bad, errors] = n[..] else {
            panic!("a report of six counts: {line:?}");
        };
        MixerReport {
            writes,
            hits,
            hits_of_others,
            misses,
            bad,
            errors,
        }
    }
}

/// A mixer's side: once every mixer is ready, writes a random key and
/// reads another, `MIXER_ROUNDS` times, checking every value read.
fn mixer(role: &str) {
    let writer: u64 = role
        .strip_prefix("mixer ")
        .and_then(|id| id.parse().ok())
        .expect("role `mixer <id>`");
    let root = child_dir();
    let backend = FileBackend::new(config(&root)).expect("the backend opens");
    let runtime = runtime();
    ready_and_wait(&root);
    let mut rng = writer.wrapping_add(1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut report = MixerReport::default();
    let deadline = Instant::now() + Duration::from_secs(180);
    for seq in 0..MIXER_ROUNDS {
        if Instant::now() > deadline {
            println!("CHILD NOTE stopped at the deadline after {seq} rounds");
            break;
        }
        let key = format!("shared-{}", splitmix(&mut rng) % SHARED_KEYS);
        let len = if splitmix(&mut rng) % 4 == 0 {
            (64 << 10) + (splitmix(&mut rng) % (236 << 10)) as usize
        } else {
            100
        };
        let value = Bytes::from(make_value(&key, writer, seq, len));
        match runtime.block_on(backend.set(&key, value, None)) {
            Ok(()) => report.writes += 1,
            Err(error) => {
                report.errors += 1;
                println!("CHILD BAD set {key}: {error}");
            }
        }
        let key = format!("shared-{}", splitmix(&mut rng) % SHARED_KEYS);
        match runtime.block_on(backend.get(&key)) {
            Ok(None) => report.misses += 1,
            Ok(Some(value)) => match verify(&key, &value) {
                Ok((by, _)) => {
                    report.hits += 1;
                    if by != writer {
                        report.hits_of_others += 1;
                    }
                }
                Err(reason) => {
                    report.bad += 1;
                    println!("CHILD BAD get {key}: {reason}");
                }
            },
            Err(error) => {
                report.errors += 1;
                println!("CHILD BAD get {key}: {error}");
            }
        }
    }
    println!("CHILD REPORT {}", report.line());
}

/// The report of a mixer, and the bad reads it described, once it exited.
fn mixer_report(child: Reaped, out: BufReader<ChildStdout>) -> (MixerReport, Vec<String>) {
    let lines = rest_of(child, out);
    let bad: Vec<String> = lines
        .iter()
        .filter_map(|line| after(line, "CHILD BAD "))
        .map(str::to_owned)
        .collect();
    let report = lines
        .iter()
        .find_map(|line| after(line, "CHILD REPORT "))
        .unwrap_or_else(|| panic!("no report from a mixer: {lines:#?}"));
    (MixerReport::parse(report), bad)
}

// ---------------------------------------------------------------------------
// A writer killed mid-write.

/// Writer processes killed.
const KILLS: u64 = 100;
/// The key the killed writers write.
const KILLED_KEY: &str = "killed-writer";
/// The size of their values: a write (and its fsync) takes a while.
const BIG: usize = 8 << 20;

/// A writer of 8 MiB values (fsync on) is killed with SIGKILL after 5 to
/// 60 ms, 100 times. After each kill, a new backend on the directory (a
/// start) reads the key's old or new value whole, never a part, and its
/// scan removes the temp file the dead writer left; some kills did leave
/// one (they landed mid-write).
#[test]
fn a_writer_killed_mid_write_leaves_no_torn_value_and_no_orphan() {
    const TEST: &str = "a_writer_killed_mid_write_leaves_no_torn_value_and_no_orphan";
    if let Some(role) = child_role() {
        return killed_writer(&role);
    }
    let _turn = take_turn();
    let root = tempfile::tempdir().expect("a temp directory");
    let entries = root.path().join("cache").join("entries");
    let runtime = runtime();
    // A whole value before the first kill: every read after must find one.
    {
        let backend = FileBackend::new(config(root.path())).expect("the backend opens");
        let seed = make_value(KILLED_KEY, u64::MAX, 0, 1000);
        runtime
            .block_on(backend.set(KILLED_KEY, Bytes::from(seed), None))
            .expect("the first value is written");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(150);
    let (mut runs, mut mid_write, mut childs_values) = (0u64, 0u64, 0u64);
    for run in 0..KILLS {
        if Instant::now() > deadline {
            println!("stopped at the deadline after {run} runs");
            break;
        }
        let (mut child, mut out) = spawn(TEST, &format!("writer {run}"), root.path());
        let pid = child.0.id();
        wait_for(&mut out, "CHILD WRITING");
        std::thread::sleep(Duration::from_millis(5 + (run * 37) % 56));
        child.kill();

        let temps = temp_files(&entries);
        if !temps.is_empty() {
            mid_write += 1;
            let mine = format!(".{pid}.");
            assert!(
                temps.iter().all(|name| name.contains(&mine)),
                "run {run}: temp files of another writer than {pid}: {temps:?}"
            );
        }
        // The start: a new backend, whose scan runs on a thread of its own.
        let backend = FileBackend::new(config(root.path())).expect("the backend opens");
        let value = runtime
            .block_on(backend.get(KILLED_KEY))
            .expect("the read succeeds")
            .unwrap_or_else(|| panic!("run {run}: the old or the new value is there"));
        let (writer, _) = verify(KILLED_KEY, &value)
            .unwrap_or_else(|reason| panic!("run {run}: a torn value: {reason}"));
        if writer != u64::MAX {
            childs_values += 1;
        }
        let cleaned = poll(Duration::from_secs(5), || temp_files(&entries).is_empty());
        assert!(
            cleaned,
            "run {run}: temp files remain 5 s after a start: {:?} (the kill left {temps:?})",
            temp_files(&entries)
        );
        runs += 1;
    }
    println!(
        "{runs} writers killed in {:?}: {mid_write} left a temp file (killed mid-write), \
         all removed by the next start; {childs_values} reads found a killed writer's value, \
         the others the first one",
        started.elapsed()
    );
    assert!(runs >= 10, "too few runs to mean anything: {runs}");
    assert!(
        mid_write > 0,
        "no kill landed mid-write in {runs} runs: the test proved nothing"
    );
}

/// A killed writer's side: writes two 8 MiB values in turn to one key
/// until it is killed (or a bounded number of times).
fn killed_writer(role: &str) {
    let run: u64 = role
        .strip_prefix("writer ")
        .and_then(|run| run.parse().ok())
        .expect("role `writer <run>`");
    let root = child_dir();
    let backend = FileBackend::new(config(&root)).expect("the backend opens");
    let runtime = runtime();
    let values = [0, 1].map(|seq| Bytes::from(make_value(KILLED_KEY, run, seq, BIG)));
    println!("CHILD WRITING");
    std::io::stdout().flush().expect("stdout");
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..10_000 {
        if Instant::now() > deadline {
            break;
        }
        runtime
            .block_on(backend.set(KILLED_KEY, values[n % 2].clone(), None))
            .expect("the write succeeds");
    }
    println!("CHILD NOTE never killed");
}

/// The temp files in `entries`.
fn temp_files(entries: &Path) -> Vec<String> {
    std::fs::read_dir(entries)
        .expect("the entries' directory")
        .map(|item| item.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') && name.ends_with(".tmp"))
        .collect()
}

// ---------------------------------------------------------------------------
// Starts beside a live writer.

/// Values the live writer writes.
const LIVE_WRITES: u64 = 50;
/// The key it writes.
const LIVE_KEY: &str = "live-writer";

/// While a process writes 8 MiB values (each a temp file that lives for
/// its write and fsync), this one starts backends on the directory over
/// and over, each scanning it for orphans: the scans leave the live
/// writer's temp files alone (every write succeeds and its last value is
/// there, whole), and they saw some.
#[test]
fn a_start_leaves_a_live_writers_temp_files_alone() {
    const TEST: &str = "a_start_leaves_a_live_writers_temp_files_alone";
    if let Some(role) = child_role() {
        return live_writer(&role);
    }
    let _turn = take_turn();
    let root = tempfile::tempdir().expect("a temp directory");
    let entries = root.path().join("cache").join("entries");
    let runtime = runtime();
    let (mut child, mut out) = spawn(TEST, "live", root.path());
    wait_for(&mut out, "CHILD WRITING");
    let started = Instant::now();
    let (mut starts, mut temps_seen) = (0u64, 0u64);
    // Bounded by the writer's end, and by count and time.
    while child.0.try_wait().expect("the child's status").is_none()
        && starts < 10_000
        && started.elapsed() < Duration::from_secs(90)
    {
        if !temp_files(&entries).is_empty() {
            temps_seen += 1;
        }
        drop(FileBackend::new(config(root.path())).expect("the backend opens"));
        starts += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let lines = rest_of(child, out);
    let report = lines
        .iter()
        .find_map(|line| after(line, "CHILD REPORT "))
        .unwrap_or_else(|| panic!("no report from the writer: {lines:#?}"));
    let (written, errors) = report
        .split_once(' ')
        .map(|(w, e)| {
            (
                w.parse::<u64>().expect("a count"),
                e.parse::<u64>().expect("a count"),
            )
        })
        .expect("`<written> <errors>`");
    println!(
        "{starts} starts in {:?} beside a writer of {written} values; {temps_seen} saw its temp file",
        started.elapsed()
    );
    assert_eq!(errors, 0, "the writer's sets failed: {lines:#?}");
    assert_eq!(written, LIVE_WRITES, "{lines:#?}");
    let backend = FileBackend::new(config(root.path())).expect("the backend opens");
    let value = runtime
        .block_on(backend.get(LIVE_KEY))
        .expect("the read succeeds")
        .expect("the last value is there");
    assert_eq!(
        verify(LIVE_KEY, &value),
        Ok((0, LIVE_WRITES - 1)),
        "the last value, whole"
    );
    assert!(
        temps_seen > 0,
        "no start ran while a write was under way: the test proved nothing"
    );
}

/// The live writer's side: writes `LIVE_WRITES` 8 MiB values to one key,
/// each its own, and reports how many succeeded and failed.
fn live_writer(_role: &str) {
    let root = child_dir();
    let backend = FileBackend::new(config(&root)).expect("the backend opens");
    let runtime = runtime();
    println!("CHILD WRITING");
    std::io::stdout().flush().expect("stdout");
    let (mut written, mut errors) = (0u64, 0u64);
    for seq in 0..LIVE_WRITES {
        let value = Bytes::from(make_value(LIVE_KEY, 0, seq, BIG));
        match runtime.block_on(backend.set(LIVE_KEY, value, None)) {
            Ok(()) => written += 1,
            Err(error) => {
                errors += 1;
                println!("CHILD BAD set {seq}: {error}");
            }
        }
    }
    println!("CHILD REPORT {written} {errors}");
}
