//! Child processes: this test binary run again in a role, and the
//! parent's side of it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachekit_file::FileBackendConfig;

/// Set in a child process to its role, such as `mixer 2`.
pub(crate) const CHILD: &str = "CACHEKIT_FILE_TEST_CHILD";
/// Set in a child process to the test's temp directory; the cache is its
/// `cache` subdirectory.
pub(crate) const CHILD_DIR: &str = "CACHEKIT_FILE_TEST_DIR";

/// Longest a child waits for the others to be ready.
pub(crate) const READY_WAIT: Duration = Duration::from_secs(30);

/// The role of this process, when it is a child.
pub(crate) fn child_role() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// A child's temp directory.
pub(crate) fn child_dir() -> PathBuf {
    std::env::var_os(CHILD_DIR)
        .expect("a child has its directory")
        .into()
}

/// The backend's configuration for the cache in `root`: the defaults but
/// for the directory.
pub(crate) fn config(root: &Path) -> FileBackendConfig {
    FileBackendConfig::default().cache_dir(root.join("cache"))
}

/// A runtime for the backend's calls (which run on its blocking threads).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// One parent test at a time.
pub(crate) fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child that is killed and reaped when dropped, so that a failing
/// parent leaves no process behind.
pub(crate) struct Reaped(pub(crate) Child);

impl Reaped {
    /// Sends SIGKILL and waits until the process is gone (its files closed,
    /// its `flock`s released).
    pub(crate) fn kill(&mut self) {
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
pub(crate) fn spawn(test: &str, role: &str, root: &Path) -> (Reaped, BufReader<ChildStdout>) {
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
pub(crate) fn spawn_ready(
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
pub(crate) fn ready_and_wait(root: &Path) {
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
pub(crate) fn wait_for(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
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
pub(crate) fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.find(prefix).map(|at| &line[at + prefix.len()..])
}

/// The rest of a child's output, once it exited successfully.
pub(crate) fn rest_of(mut child: Reaped, out: BufReader<ChildStdout>) -> Vec<String> {
    let lines: Vec<String> = out
        .lines()
        .map(|line| line.expect("the child's output"))
        .collect();
    let status = child.0.wait().expect("the child ends");
    assert!(status.success(), "a child failed ({status}): {lines:#?}");
    lines
}

/// Checks `done` every 10 ms until it holds or `limit` passed; whether it held.
pub(crate) fn poll(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
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
