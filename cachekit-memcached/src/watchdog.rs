//! The watchdog: one thread per process that bounds every request on an open
//! connection by the connection's timeout, so that a call pays no timer of
//! its own.
//!
//! A tokio timer per call (`tokio::time::timeout`) registers in the calling
//! runtime's timer wheel and is removed again on every operation: about 900
//! instructions, and cache misses, on the path of a cache hit that is
//! otherwise a few thousand. Here a call only counts itself in (under the
//! connection's lock, which it takes anyway) and reads one flag.
//!
//! A thread rather than a task: a task lives on one runtime, and a blocked
//! runtime (a plain `#[cache]` function waiting on a current-thread runtime)
//! would leave the calls of every other runtime on its connections unbounded.
//!
//! How a late request is found: each connection counts the requests it ever
//! queued and the ones it got an answer for. While requests are in flight,
//! the thread looks every [`TICKS`]th of the shortest timeout among them and
//! notes, per connection, how many requests had been queued at that moment
//! (a mark). Once a mark is older than the timeout, a connection that has
//! not yet answered as many requests as that mark counted holds a request
//! older than the timeout: the watchdog fails the connection, which fails
//! its calls with a timeout (the answer that would have come can no longer
//! be matched to its request). A request is found late at most two ticks
//! after its timeout ([`longest_call`]).
//!
//! When nothing is in flight, the thread sleeps until a call queues a request.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How many looks per timeout the watchdog takes while requests are in flight.
const TICKS: u32 = 16;

/// The shortest pause between two looks.
const MIN_TICK: Duration = Duration::from_millis(1);

/// A connection the watchdog looks after.
pub(crate) trait Watched: Send + Sync {
    /// Where the connection's requests stand.
    fn progress(&self) -> Progress;

    /// Fails the connection and its calls with a timeout.
    fn time_out(&self);
}

/// Where a connection's requests stand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Whether the connection failed or closed: it needs no watching.
    pub(crate) closed: bool,
    /// Calls ever queued (a call sends one request, or a batch).
    pub(crate) queued: u64,
    /// Calls ever answered (or given up by their callers); the oldest call
    /// waiting is the one queued after these.
    pub(crate) answered: u64,
}

/// The pause between the watchdog's looks at a connection with `timeout`.
fn tick(timeout: Duration) -> Duration {
    (timeout / TICKS).max(MIN_TICK)
}

/// The longest a call on a connection with `timeout` goes unanswered before
/// it fails: the watchdog finds it late at most two ticks after the timeout.
pub(crate) fn longest_call(timeout: Duration) -> Duration {
    timeout + 2 * tick(timeout)
}

/// Watches `connection`, whose requests must be answered within `timeout`,
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
    Ok(())
}

/// Wakes the watchdog if it sleeps. Called after each request is counted in
/// [`Progress::queued`]: one read of a flag unless the watchdog sleeps.
pub(crate) fn nudge() {
    // SeqCst, paired with the watchdog's store before its last look: either
    // that look saw the request, or this sees the watchdog asleep.
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
    /// When the watchdog looked, and how many requests had been queued by
    /// then; oldest first, one each tick at most.
    marks: VecDeque<Mark>,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    queued: u64,
}

impl Entry {
    /// Notes `progress` at `now`; `true` if a request has been in flight
    /// for longer than the timeout.
    fn look(&mut self, now: Instant, progress: Progress) -> bool {
        self.seen = progress.queued;
        let tick = tick(self.timeout);
        if self
            .marks
            .back()
            .is_none_or(|last| now - last.at >= tick / 2)
        {
            self.marks.push_back(Mark {
                at: now,
                queued: progress.queued,
            });
        }
        // Only the newest mark older than the timeout matters.
        let old = |mark: Option<&Mark>| mark.is_some_and(|m| now - m.at >= self.timeout);
        while old(self.marks.get(1)) {
            self.marks.pop_front();
        }
        old(self.marks.front())
            && self
                .marks
                .front()
                .is_some_and(|mark| progress.answered < mark.queued)
    }

    /// Whether requests are in flight, or were queued since the last look.
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

/// The watchdog thread: looks while requests are in flight, sleeps otherwise.
fn run() {
    let _ = THREAD.set(thread::current());
    loop {
        if let Some(pause) = look() {
            thread::park_timeout(pause);
            continue;
        }
        // Nothing in flight: announce sleep, then look once more, so that a
        // request queued meanwhile is either seen or nudges.
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

/// Looks at every watched connection, fails those with a request older
/// than their timeout and forgets the closed ones. Returns the pause until
/// the next look, or `None` if nothing is in flight.
fn look() -> Option<Duration> {
    let now = Instant::now();
    let mut pause: Option<Duration> = None;
    let mut late: Vec<Arc<dyn Watched>> = Vec::new();
    lock(&WATCHED).retain_mut(|entry| {
        let Some(connection) = entry.connection.upgrade() else {
            return false;
        };
        let progress = connection.progress();
        if progress.closed {
            return false;
        }
        if entry.busy(progress) {
            let tick = tick(entry.timeout);
            pause = Some(pause.map_or(tick, |pause| pause.min(tick)));
        }
        if entry.look(now, progress) {
            late.push(connection);
            return false;
        }
        true
    });
    // Failed outside the lock: failing wakes callers, which may connect
    // (and so register) at once.
    late.iter().for_each(|connection| connection.time_out());
    pause
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// A connection whose counts the test sets.
    #[derive(Default)]
    struct Fake {
        queued: AtomicU64,
        answered: AtomicU64,
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

        fn time_out(&self) {
            self.timed_out.store(true, Ordering::SeqCst);
        }
    }

    fn watched(timeout: Duration) -> Arc<Fake> {
        let fake = Arc::new(Fake::default());
        let weak: Weak<dyn Watched> = Arc::downgrade(&(Arc::clone(&fake) as Arc<dyn Watched>));
        watch(weak, timeout).expect("the watchdog starts");
        fake
    }

    /// Waits (bounded) until `done`, or `within` has passed; returns when.
    fn wait_until(within: Duration, done: impl Fn() -> bool) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < within {
            if done() {
                return Some(started.elapsed());
            }
            thread::sleep(Duration::from_millis(1));
        }
        None
    }

    #[test]
    fn an_unanswered_request_times_out_after_the_timeout_and_not_before() {
        let timeout = Duration::from_millis(200);
        let fake = watched(timeout);
        // Let the watchdog fall asleep first: the request must wake it.
        thread::sleep(Duration::from_millis(50));
        let queued_at = Instant::now();
        fake.queued.store(1, Ordering::SeqCst);
        nudge();
        wait_until(Duration::from_secs(10), || {
            fake.timed_out.load(Ordering::SeqCst)
        })
        .expect("the request times out");
        let after = queued_at.elapsed();
        assert!(after >= timeout, "timed out early: {after:?}");
    }

    #[test]
    fn answered_requests_never_time_out() {
        let timeout = Duration::from_millis(100);
        let fake = watched(timeout);
        for request in 1..=40 {
            fake.queued.store(request, Ordering::SeqCst);
            nudge();
            thread::sleep(Duration::from_millis(10));
            fake.answered.store(request, Ordering::SeqCst);
        }
        // Four timeouts of steady traffic, each request answered in a tenth of it.
        thread::sleep(timeout * 2);
        assert!(!fake.timed_out.load(Ordering::SeqCst));
    }

    #[test]
    fn a_dropped_connection_is_forgotten() {
        let fake = watched(Duration::from_millis(50));
        let weak = Arc::downgrade(&fake);
        fake.queued.store(1, Ordering::SeqCst);
        nudge();
        drop(fake);
        let forgotten = wait_until(Duration::from_secs(10), || {
            lock(&WATCHED).iter().all(|entry| {
                !entry
                    .connection
                    .ptr_eq(&(weak.clone() as Weak<dyn Watched>))
            })
        });
        assert!(forgotten.is_some());
    }
}
