//! The watchdog: the connection layer's one timeout mechanism. One thread
//! per process bounds every call on an open connection by the connection's
//! timeout; a call pays no timer of its own.
//!
//! What it does on a late call: it fails the connection with
//! `ConnectionError::TimedOut`, since the answer the call missed would be
//! taken for the answer to the next request.
//!
//! Why not a tokio timer per call (`tokio::time::timeout`): that timer
//! registers in the calling runtime's timer wheel and is removed again on
//! every operation, a cost on the path of every cache hit and of every
//! operation of a busy client (docs/benchmarks.md). Here a call only counts
//! itself in (under the connection's lock, which it takes anyway) and reads
//! one flag.
//!
//! A thread rather than a task: a task lives on one runtime, and a blocked
//! runtime (a plain `#[cache]` function waiting on a current-thread runtime)
//! would leave the calls of every other runtime on its connections unbounded.
//!
//! How a late call is found: each connection counts the calls it ever
//! queued and the ones answered. While calls are in flight, the thread looks
//! every [`TICKS`]th of the shortest timeout of the connections it watches
//! and notes, per connection, how many calls had been queued by then (a
//! mark). Once a mark is older than the timeout, a connection that has not
//! answered as many calls as that mark counted holds a call older than the
//! timeout. The watchdog then fails the connection (the answer that would
//! have come can no longer be matched to its request): the calls queued
//! before the mark with a timeout, the younger ones as closed (so they are
//! retried). A call is found late at most two ticks (an eighth of its
//! timeout) after its timeout, plus however late the thread gets to run.
//!
//! When nothing is in flight, the thread sleeps until a call is queued.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How many looks per timeout the watchdog takes while calls are in flight.
const TICKS: u32 = 16;

/// The shortest pause between two looks.
const MIN_TICK: Duration = Duration::from_millis(1);

/// A connection the watchdog looks after.
pub(crate) trait Watched: Send + Sync {
    /// Where the connection's calls stand.
    fn progress(&self) -> Progress;

    /// Fails the connection: the calls numbered below `late` (numbering the
    /// calls queued from 0) with a timeout, the others as closed.
    fn time_out(&self, late: u64);
}

/// Where a connection's calls stand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Whether the connection failed or closed: it needs no watching.
    pub(crate) closed: bool,
    /// Calls ever queued (a call sends one request, or a batch).
    pub(crate) queued: u64,
    /// Calls ever answered (the answers of calls their callers dropped
    /// included, once read); the oldest call waiting is the one queued
    /// after these.
    pub(crate) answered: u64,
}

/// The pause between the watchdog's looks at a connection with `timeout`.
fn tick(timeout: Duration) -> Duration {
    (timeout / TICKS).max(MIN_TICK)
}

/// Watches `connection`, whose calls must be answered within `timeout`,
/// until it closes or is dropped. Starts the watchdog thread on first use;
/// fails only if the thread cannot be started.
pub(crate) fn watch(connection: Weak<dyn Watched>, timeout: Duration) -> io::Result<()> {
    start()?;
    lock(&WATCHED).push(Entry {
        connection,
        timeout,
        seen: 0,
        marks: VecDeque::new(),
    });
    // Its tick may be shorter than the pause the watchdog is in.
    ASLEEP.store(false, Ordering::SeqCst);
    if let Some(thread) = THREAD.get() {
        thread.unpark();
    }
    Ok(())
}

/// Wakes the watchdog if it sleeps. Called after each call is counted in
/// [`Progress::queued`]: one read of a flag unless the watchdog sleeps.
pub(crate) fn nudge() {
    // SeqCst, paired with the watchdog's store before its last look: either
    // that look saw the call, or this sees the watchdog asleep.
    if ASLEEP.load(Ordering::SeqCst) && ASLEEP.swap(false, Ordering::SeqCst) {
        if let Some(thread) = THREAD.get() {
            thread.unpark();
        }
    }
}

/// The connections watched.
static WATCHED: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Whether the watchdog sleeps until [`nudge`]d.
static ASLEEP: AtomicBool = AtomicBool::new(false);

/// The watchdog thread, set by the thread itself before it can sleep.
static THREAD: OnceLock<Thread> = OnceLock::new();

/// Whether the watchdog thread was started.
static STARTED: Mutex<bool> = Mutex::new(false);

/// One watched connection.
struct Entry {
    connection: Weak<dyn Watched>,
    timeout: Duration,
    /// [`Progress::queued`] at the last look.
    seen: u64,
    /// When the watchdog looked, and how many calls had been queued by
    /// then; oldest first, at most two a tick.
    marks: VecDeque<Mark>,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    /// A time after the count was read.
    at: Instant,
    /// Calls queued by `at`.
    queued: u64,
}

impl Entry {
    /// Notes `progress`, read after `now` and before `read_at`. If a call
    /// has waited longer than the timeout, returns the count of a mark older
    /// than the timeout that the connection has not answered as many calls
    /// as (see [`Watched::time_out`]).
    fn look(&mut self, now: Instant, read_at: Instant, progress: Progress) -> Option<u64> {
        self.seen = progress.queued;
        let tick = tick(self.timeout);
        // Stamped after the reading, so that every call a mark counts was
        // queued before the mark's time.
        let spaced = |last: &Mark| read_at.saturating_duration_since(last.at) >= tick / 2;
        if self.marks.back().is_none_or(spaced) {
            self.marks.push_back(Mark {
                at: read_at,
                queued: progress.queued,
            });
        }
        // Aged by `now`, from before the reading: never early.
        let old = |mark: &Mark| now.saturating_duration_since(mark.at) >= self.timeout;
        // Only the newest mark older than the timeout matters.
        while self.marks.get(1).is_some_and(old) {
            self.marks.pop_front();
        }
        let mark = self.marks.front().filter(|mark| old(mark))?;
        (progress.answered < mark.queued).then_some(mark.queued)
    }

    /// Whether calls are in flight, or were queued since the last look.
    fn busy(&self, progress: Progress) -> bool {
        progress.answered < progress.queued || progress.queued != self.seen
    }
}

/// Starts the watchdog thread unless it runs.
fn start() -> io::Result<()> {
    let mut started = lock(&STARTED);
    if !*started {
        thread::Builder::new()
            .name("cachekit-memcached-watchdog".into())
            .spawn(run)?;
        *started = true;
    }
    Ok(())
}

/// The watchdog thread: looks while calls are in flight, sleeps otherwise.
fn run() {
    let _ = THREAD.set(thread::current());
    loop {
        if let Some(pause) = look() {
            thread::park_timeout(pause);
            continue;
        }
        // Nothing in flight: announce sleep, then look once more, so that a
        // call queued meanwhile is either seen or nudges.
        ASLEEP.store(true, Ordering::SeqCst);
        if let Some(pause) = look() {
            ASLEEP.store(false, Ordering::SeqCst);
            thread::park_timeout(pause);
            continue;
        }
        while ASLEEP.load(Ordering::SeqCst) {
            thread::park();
        }
    }
}

/// Looks at every watched connection, fails those with a call older than
/// their timeout and forgets the closed ones. Returns the pause until the
/// next look, or `None` if nothing is in flight. The pause is the shortest
/// tick of all the connections, busy or not, so that one that gets busy
/// meanwhile is not looked at late.
fn look() -> Option<Duration> {
    let now = Instant::now();
    let mut busy = false;
    let mut pause = Duration::MAX;
    // Dropped, and failed, once the list is unlocked: dropping the last
    // reference to a connection, and failing one, run wakers and may log.
    let mut held: Vec<Arc<dyn Watched>> = Vec::new();
    let mut late: Vec<(Arc<dyn Watched>, u64)> = Vec::new();
    lock(&WATCHED).retain_mut(|entry| {
        let Some(connection) = entry.connection.upgrade() else {
            return false;
        };
        let progress = connection.progress();
        let read_at = Instant::now();
        if progress.closed {
            held.push(connection);
            return false;
        }
        busy |= entry.busy(progress);
        pause = pause.min(tick(entry.timeout));
        match entry.look(now, read_at, progress) {
            Some(queued) => {
                late.push((connection, queued));
                false
            }
            None => {
                held.push(connection);
                true
            }
        }
    });
    drop(held);
    for (connection, queued) in late {
        // A panicking waker or log subscriber must not end the watchdog:
        // later calls would go unbounded.
        let failing = panic::catch_unwind(AssertUnwindSafe(|| connection.time_out(queued)));
        if failing.is_err() {
            tracing::error!("a panic while failing a timed-out memcached connection");
        }
    }
    busy.then_some(pause)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    const TIMEOUT: Duration = Duration::from_millis(160);
    const TICK: Duration = Duration::from_millis(10);

    fn entry() -> Entry {
        let none: Weak<Fake> = Weak::new();
        Entry {
            connection: none,
            timeout: TIMEOUT,
            seen: 0,
            marks: VecDeque::new(),
        }
    }

    fn progress(queued: u64, answered: u64) -> Progress {
        Progress {
            closed: false,
            queued,
            answered,
        }
    }

    /// Looks at `entry` at `start + at` with the given counts.
    fn look_at(
        entry: &mut Entry,
        start: Instant,
        at: Duration,
        queued: u64,
        answered: u64,
    ) -> Option<u64> {
        let now = start + at;
        entry.look(now, now, progress(queued, answered))
    }

    #[test]
    fn a_call_left_unanswered_is_late_once_a_mark_counting_it_is_older_than_the_timeout() {
        let (mut entry, start) = (entry(), Instant::now());
        assert_eq!(entry.look(start, start, progress(0, 0)), None);
        // Call 0 queued after the first mark: that mark does not count it.
        let mut late = None;
        let mut ticks = 0;
        while late.is_none() {
            ticks += 1;
            assert!(ticks < 100, "never found late");
            late = look_at(&mut entry, start, TICK * ticks, 1, 0);
        }
        // The first mark counting it was taken one tick in; found exactly
        // when that mark is a timeout old, not before.
        assert_eq!(TICK * ticks, TICK + TIMEOUT);
        assert_eq!(late, Some(1));
    }

    #[test]
    fn calls_answered_within_the_timeout_are_never_late() {
        let (mut entry, start) = (entry(), Instant::now());
        // One call a tick, each answered three ticks later, for a long time.
        for tick in 0..1000_u32 {
            let queued = u64::from(tick);
            let answered = queued.saturating_sub(3);
            let late = look_at(&mut entry, start, TICK * tick, queued, answered);
            assert_eq!(late, None, "tick {tick}");
        }
        assert!(
            entry.marks.len() <= 2 * TICKS as usize + 2,
            "{}",
            entry.marks.len()
        );
    }

    #[test]
    fn a_mark_is_stamped_after_the_count_it_holds_was_read() {
        // The look began at `start`, but the count was read a tick later,
        // after call 0 was queued: the call must not be aged from `start`.
        let (mut entry, start) = (entry(), Instant::now());
        assert_eq!(entry.look(start, start + TICK, progress(1, 0)), None);
        let just_before = start + TICK + TIMEOUT - Duration::from_millis(1);
        assert_eq!(entry.look(just_before, just_before, progress(1, 0)), None);
        let at_timeout = start + TICK + TIMEOUT;
        assert_eq!(entry.look(at_timeout, at_timeout, progress(1, 0)), Some(1));
    }

    #[test]
    fn marks_from_before_an_idle_spell_do_not_age_new_calls() {
        let (mut entry, start) = (entry(), Instant::now());
        assert_eq!(look_at(&mut entry, start, Duration::ZERO, 5, 5), None);
        // Idle for ten timeouts, then call 5 is queued and read at once.
        let back = TIMEOUT * 10;
        assert_eq!(look_at(&mut entry, start, back, 6, 5), None);
        assert_eq!(look_at(&mut entry, start, back + TIMEOUT / 2, 6, 5), None);
        assert_eq!(look_at(&mut entry, start, back + TIMEOUT, 6, 5), Some(6));
    }

    /// A connection whose counts the test sets.
    #[derive(Default)]
    struct Fake {
        queued: AtomicU64,
        answered: AtomicU64,
        late: AtomicU64,
        timed_out: AtomicBool,
    }

    impl Watched for Fake {
        fn progress(&self) -> Progress {
            Progress {
                closed: self.timed_out.load(Ordering::SeqCst),
                queued: self.queued.load(Ordering::SeqCst),
                answered: self.answered.load(Ordering::SeqCst),
            }
        }

        fn time_out(&self, late: u64) {
            self.late.store(late, Ordering::SeqCst);
            self.timed_out.store(true, Ordering::SeqCst);
        }
    }

    fn watched(timeout: Duration) -> Arc<Fake> {
        let fake = Arc::new(Fake::default());
        let weak: Weak<dyn Watched> = Arc::downgrade(&(Arc::clone(&fake) as Arc<dyn Watched>));
        watch(weak, timeout).expect("the watchdog starts");
        fake
    }

    /// Waits (bounded) until `done`; whether it happened within `within`.
    fn wait_until(within: Duration, done: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn the_thread_times_out_an_unanswered_call_and_not_before_its_timeout() {
        let timeout = Duration::from_millis(200);
        let fake = watched(timeout);
        let queued_at = Instant::now();
        fake.queued.store(1, Ordering::SeqCst);
        nudge();
        let timed_out = wait_until(Duration::from_secs(10), || {
            fake.timed_out.load(Ordering::SeqCst)
        });
        assert!(timed_out, "the call never timed out");
        let after = queued_at.elapsed();
        assert!(after >= timeout, "timed out early: {after:?}");
        assert_eq!(fake.late.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_busy_connection_with_a_long_timeout_does_not_delay_a_short_one() {
        // The long one alone would let the watchdog pause 3.75 s at a time.
        let long = watched(Duration::from_secs(60));
        long.queued.store(1, Ordering::SeqCst);
        nudge();
        thread::sleep(Duration::from_millis(50));
        let short = watched(Duration::from_millis(100));
        short.queued.store(1, Ordering::SeqCst);
        nudge();
        // A bound on correctness (timeout and two ticks, with room for a
        // slow machine), not on speed: 3.75 s would mean the short
        // connection waited on the long one's pause.
        let timed_out = wait_until(Duration::from_secs(2), || {
            short.timed_out.load(Ordering::SeqCst)
        });
        assert!(timed_out, "the short timeout was not kept");
        assert!(!long.timed_out.load(Ordering::SeqCst));
        long.answered.store(1, Ordering::SeqCst);
    }

    #[test]
    fn a_dropped_connection_is_forgotten() {
        let fake = watched(Duration::from_millis(50));
        let weak = Arc::downgrade(&fake);
        fake.queued.store(1, Ordering::SeqCst);
        nudge();
        drop(fake);
        let forgotten = wait_until(Duration::from_secs(10), || {
            let weak: Weak<dyn Watched> = weak.clone();
            lock(&WATCHED)
                .iter()
                .all(|entry| !entry.connection.ptr_eq(&weak))
        });
        assert!(forgotten);
    }
}
