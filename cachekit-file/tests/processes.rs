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

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachekit_core::Backend;
use cachekit_file::{FileBackend, FileBackendConfig};

/// Set in a child process to its role, such as `mixer 2`.
const CHILD: &str = "CACHEKIT_FILE_TEST_CHILD";
/// Set in a child process to the test's temp directory; the cache is its
/// `cache` subdirectory.
const CHILD_DIR: &str = "CACHEKIT_FILE_TEST_DIR";

/// Longest a child waits for the others to be ready.
const READY_WAIT: Duration = Duration::from_secs(30);

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

// ---------------------------------------------------------------------------
// Locks across processes.

/// Processes taking the lock.
const LOCKERS: u64 = 4;
/// Times each takes it.
const LOCK_ROUNDS: u64 = 50;
/// The key they lock.
const LOCKED_KEY: &str = "locked";

/// Four processes each take the lock on one key 50 times with `try_lock`,
/// and while holding it append `<pid> enter` then `<pid> leave` to a
/// shared log: the log never shows two holders at once, every process got
/// in, and they did compete.
#[test]
fn try_lock_excludes_across_processes() {
    const TEST: &str = "try_lock_excludes_across_processes";
    if let Some(role) = child_role() {
        return locker(&role);
    }
    let _turn = take_turn();
    let root = tempfile::tempdir().expect("a temp directory");
    let started = Instant::now();
    let children = spawn_ready(TEST, "locker", LOCKERS, root.path());
    let mut reports = Vec::new();
    for (child, out) in children {
        let lines = rest_of(child, out);
        let report = lines
            .iter()
            .find_map(|line| after(line, "CHILD REPORT "))
            .unwrap_or_else(|| panic!("no report from a locker: {lines:#?}"));
        let n: Vec<u64> = report
            .split_whitespace()
            .map(|n| n.parse().expect("a number"))
            .collect();
        let [pid, entered, contended, errors] = n[..] else {
            panic!("a report of four numbers: {report:?}");
        };
        assert_eq!(errors, 0, "lock errors in {pid}: {lines:#?}");
        reports.push((pid, entered, contended));
    }
    let log = std::fs::read_to_string(root.path().join("log")).expect("the log");
    let mut holder: Option<u64> = None;
    let mut enters: std::collections::HashMap<u64, u64> = Default::default();
    for (at, line) in log.lines().enumerate() {
        let (pid, what) = line.split_once(' ').expect("`<pid> enter|leave`");
        let pid: u64 = pid.parse().expect("a pid");
        match (what, holder) {
            ("enter", None) => {
                holder = Some(pid);
                *enters.entry(pid).or_default() += 1;
            }
            ("enter", Some(other)) => {
                panic!("line {at}: {pid} entered while {other} held the lock")
            }
            ("leave", Some(held)) if held == pid => holder = None,
            _ => panic!("line {at}: {line:?} while the holder was {holder:?}"),
        }
    }
    assert_eq!(holder, None, "the log ends with a holder inside");
    println!(
        "{LOCKERS} processes took the lock {} times in {:?}; (pid, entered, contended): {reports:?}",
        enters.values().sum::<u64>(),
        started.elapsed()
    );
    for &(pid, entered, _) in &reports {
        assert!(entered > 0, "{pid} never got the lock: {reports:?}");
        assert_eq!(
            enters.get(&pid).copied(),
            Some(entered),
            "the log and {pid}'s count agree"
        );
    }
    assert!(
        reports.iter().map(|r| r.2).sum::<u64>() > 0,
        "the processes competed for the lock: {reports:?}"
    );
}

/// A locker's side: once every locker is ready, takes the lock
/// `LOCK_ROUNDS` times, logging its entry and exit while holding it.
fn locker(_role: &str) {
    let root = child_dir();
    let backend = FileBackend::new(config(&root)).expect("the backend opens");
    let lock = backend.as_lock().expect("the file backend locks");
    let runtime = runtime();
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("log"))
        .expect("the shared log");
    let pid = std::process::id();
    ready_and_wait(&root);
    let (mut entered, mut contended, mut errors) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Bounded by the deadline; each turn either enters or waits a moment.
    while entered < LOCK_ROUNDS && Instant::now() < deadline {
        match runtime.block_on(lock.try_lock(LOCKED_KEY, Duration::from_secs(60))) {
            Ok(Some(token)) => {
                log.write_all(format!("{pid} enter\n").as_bytes())
                    .expect("the log");
                // Held a moment: a second holder would show up in between.
                std::thread::sleep(Duration::from_millis(1));
                log.write_all(format!("{pid} leave\n").as_bytes())
                    .expect("the log");
                entered += 1;
                match runtime.block_on(lock.unlock(LOCKED_KEY, &token)) {
                    Ok(true) => {}
                    Ok(false) => {
                        errors += 1;
                        println!("CHILD BAD unlock found the lock no longer ours");
                    }
                    Err(error) => {
                        errors += 1;
                        println!("CHILD BAD unlock: {error}");
                    }
                }
                // Others get a chance before this process tries again.
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(None) => {
                contended += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => {
                errors += 1;
                println!("CHILD BAD try_lock: {error}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    println!("CHILD REPORT {pid} {entered} {contended} {errors}");
}

// ---------------------------------------------------------------------------
// A holder killed while it holds the lock.

/// The lease of the killed holder's lock: long enough that the check right
/// after the kill runs within it even on a busy host.
const LEASE: Duration = Duration::from_secs(2);
/// The key the killed holder locks.
const HELD_KEY: &str = "held";

/// A process takes the lock with a 2 s lease and is killed with SIGKILL
/// while it holds it: right after the kill the lock is still taken, and it
/// is free again once the lease has run out, not before.
#[test]
fn a_killed_holders_lock_is_free_once_its_lease_ends() {
    const TEST: &str = "a_killed_holders_lock_is_free_once_its_lease_ends";
    if let Some(role) = child_role() {
        return holder(&role);
    }
    let _turn = take_turn();
    let root = tempfile::tempdir().expect("a temp directory");
    let backend = FileBackend::new(config(root.path())).expect("the backend opens");
    let lock = backend.as_lock().expect("the file backend locks");
    let runtime = runtime();

    let (mut child, mut out) = spawn(TEST, "holder", root.path());
    let locked_at: u64 = wait_for(&mut out, "CHILD LOCKED ")
        .parse()
        .expect("the time the child asked for the lock");
    child.kill();
    let killed = Instant::now();
    assert!(
        runtime
            .block_on(lock.try_lock(HELD_KEY, LEASE))
            .expect("try_lock succeeds")
            .is_none(),
        "the lock of a killed holder is still taken right after the kill"
    );
    let lease_end = locked_at + LEASE.as_millis() as u64;
    let mut refused = 1;
    let token = loop {
        let token = runtime
            .block_on(lock.try_lock(HELD_KEY, LEASE))
            .expect("try_lock succeeds");
        let now = unix_ms();
        if let Some(token) = token {
            assert!(
                now >= lease_end,
                "the lock was free {} ms before its lease ended",
                lease_end - now
            );
            break token;
        }
        refused += 1;
        assert!(
            killed.elapsed() < LEASE + Duration::from_secs(10),
            "the lock is still taken {:?} after its holder was killed (lease {LEASE:?})",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "the killed holder's lock was free {:?} after the kill ({LEASE:?} lease), refused {refused} times before",
        killed.elapsed()
    );
    assert!(
        runtime
            .block_on(lock.unlock(HELD_KEY, &token))
            .expect("unlock succeeds"),
        "the new holder releases it"
    );
}

/// The killed holder's side: takes the lock, says when, and waits to be
/// killed (a bounded while).
fn holder(_role: &str) {
    let root = child_dir();
    let backend = FileBackend::new(config(&root)).expect("the backend opens");
    let lock = backend.as_lock().expect("the file backend locks");
    let runtime = runtime();
    let asked_at = unix_ms();
    let token = runtime
        .block_on(lock.try_lock(HELD_KEY, LEASE))
        .expect("try_lock succeeds");
    assert!(token.is_some(), "the lock is free at first");
    println!("CHILD LOCKED {asked_at}");
    std::io::stdout().flush().expect("stdout");
    std::thread::sleep(Duration::from_secs(60));
    println!("CHILD NOTE never killed");
}

// ---------------------------------------------------------------------------
// Self-describing values.

/// The check the other tests rely on refuses what they must find: a
/// value cut anywhere, a flipped byte, another key's value.
#[test]
fn the_value_check_refuses_torn_and_foreign_values() {
    if child_role().is_some() {
        return;
    }
    let value = make_value("k", 3, 9, 200 << 10);
    assert_eq!(verify("k", &value), Ok((3, 9)));
    for cut in (0..value.len()).step_by(997) {
        assert!(verify("k", &value[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = value.clone();
    flipped[150 << 10] ^= 1;
    assert!(verify("k", &flipped).is_err(), "a flipped byte");
    assert!(verify("other", &value).is_err(), "another key's value");
}

/// A value that says what it is: a text header (key, writer, sequence
/// number, payload length, checksum of the payload) and a line feed, then
/// a payload, pseudo-random from the writer and the sequence number.
fn make_value(key: &str, writer: u64, seq: u64, len: usize) -> Vec<u8> {
    let payload = payload(writer, seq, len);
    let mut value = format!("{key}|{writer}|{seq}|{len}|{:08x}\n", checksum(&payload)).into_bytes();
    value.extend_from_slice(&payload);
    value
}

/// Checks a value read under `key`: its writer and sequence number, or
/// what is wrong with it.
fn verify(key: &str, value: &[u8]) -> Result<(u64, u64), String> {
    let newline = value
        .iter()
        .take(256)
        .position(|&b| b == b'\n')
        .ok_or_else(|| format!("no header in {} bytes", value.len()))?;
    let header = std::str::from_utf8(&value[..newline])
        .map_err(|_| "a header that is not text".to_owned())?;
    let fields: Vec<&str> = header.split('|').collect();
    let [named, writer, seq, len, sum] = fields[..] else {
        return Err(format!("a malformed header {header:?}"));
    };
    if named != key {
        return Err(format!("the value of {named:?}, read under {key:?}"));
    }
    let number = |field: &str| -> Result<u64, String> {
        field
            .parse()
            .map_err(|_| format!("a malformed header {header:?}"))
    };
    let (writer, seq, len) = (number(writer)?, number(seq)?, number(len)? as usize);
    let sum = u32::from_str_radix(sum, 16).map_err(|_| format!("a malformed header {header:?}"))?;
    let got = &value[newline + 1..];
    if got.len() != len {
        return Err(format!(
            "{header:?}: a payload of {} bytes, not {len}",
            got.len()
        ));
    }
    if checksum(got) != sum {
        return Err(format!(
            "{header:?}: the payload does not match its checksum"
        ));
    }
    if got != payload(writer, seq, len) {
        return Err(format!("{header:?}: not the payload its writer wrote"));
    }
    Ok((writer, seq))
}

/// `len` pseudo-random bytes from `writer` and `seq`: a block of up to
/// 64 KiB, repeated (so that an 8 MiB payload is quick to make and to
/// check in a debug build).
fn payload(writer: u64, seq: u64, len: usize) -> Vec<u8> {
    const BLOCK: usize = 64 << 10;
    let mut state = writer.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq;
    let mut block = Vec::with_capacity(BLOCK + 8);
    while block.len() < len.min(BLOCK) {
        block.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    block.truncate(len.min(BLOCK));
    let mut bytes = block.repeat(len.div_ceil(BLOCK).max(1));
    bytes.truncate(len);
    bytes
}

/// SplitMix64: the next pseudo-random number of `state`.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The checksum of a payload: CRC-32C.
fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

// ---------------------------------------------------------------------------
// Child processes.

/// The role of this process, when it is a child.
fn child_role() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// A child's temp directory.
fn child_dir() -> PathBuf {
    std::env::var_os(CHILD_DIR)
        .expect("a child has its directory")
        .into()
}

/// The backend's configuration for the cache in `root`: the defaults but
/// for the directory.
fn config(root: &Path) -> FileBackendConfig {
    FileBackendConfig::default().cache_dir(root.join("cache"))
}

/// A runtime for the backend's calls (which run on its blocking threads).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// One parent test at a time.
fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child that is killed and reaped when dropped, so that a failing
/// parent leaves no process behind.
struct Reaped(Child);

impl Reaped {
    /// Sends SIGKILL and waits until the process is gone (its files closed,
    /// its `flock`s released).
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL is sent");
        self.0.wait().expect("the killed child is reaped");
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts this test binary again as a child running `test` as `role`
/// in `root`; its stdout is read line by line, its stderr is this one's.
fn spawn(test: &str, role: &str, root: &Path) -> (Reaped, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .env(CHILD_DIR, root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary runs as a child");
    let out = BufReader::new(child.stdout.take().expect("piped"));
    (Reaped(child), out)
}

/// Starts `count` children `<role> 0`, `<role> 1`, ..., waits until each is
/// ready, then lets them all go at once.
fn spawn_ready(
    test: &str,
    role: &str,
    count: u64,
    root: &Path,
) -> Vec<(Reaped, BufReader<ChildStdout>)> {
    let mut children: Vec<_> = (0..count)
        .map(|id| spawn(test, &format!("{role} {id}"), root))
        .collect();
    for (_, out) in &mut children {
        wait_for(out, "CHILD READY");
    }
    std::fs::write(root.join("go"), b"go").expect("the start signal");
    children
}

/// A child's side of [`spawn_ready`]: says it is ready, waits for the go.
fn ready_and_wait(root: &Path) {
    println!("CHILD READY");
    std::io::stdout().flush().expect("stdout");
    let go = root.join("go");
    assert!(
        poll(READY_WAIT, || go.exists()),
        "no start signal within {READY_WAIT:?}"
    );
}

/// Reads the child's output until a line starting with `prefix`; the rest
/// of that line. The child's end (EOF) fails the test.
fn wait_for(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let read = out.read_line(&mut line).expect("the child's output");
        assert!(read > 0, "the child ended without printing {prefix:?}");
        if let Some(rest) = after(line.trim_end(), prefix) {
            return rest.to_owned();
        }
    }
}

/// What follows `prefix` in a line of a child's output. The prefix may
/// follow the harness's `test <name> ... `, printed without a line feed.
fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.find(prefix).map(|at| &line[at + prefix.len()..])
}

/// The rest of a child's output, once it exited successfully.
fn rest_of(mut child: Reaped, out: BufReader<ChildStdout>) -> Vec<String> {
    let lines: Vec<String> = out
        .lines()
        .map(|line| line.expect("the child's output"))
        .collect();
    let status = child.0.wait().expect("the child ends");
    assert!(status.success(), "a child failed ({status}): {lines:#?}");
    lines
}

/// Checks `done` every 10 ms until it holds or `limit` passed; whether it held.
fn poll(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
