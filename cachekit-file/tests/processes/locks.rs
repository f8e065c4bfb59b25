//! Locks across processes: `try_lock` excludes, and a killed holder's
//! lock is free once its lease ends, not before.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use cachekit_core::Backend;
use cachekit_file::FileBackend;

use crate::child::*;

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
    const TEST: &str = "locks::try_lock_excludes_across_processes";
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
    const TEST: &str = "locks::a_killed_holders_lock_is_free_once_its_lease_ends";
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
