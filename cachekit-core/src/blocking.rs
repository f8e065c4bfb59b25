//! Cache work for plain (non-async) cached functions.
//!
//! A plain `fn` cannot await, and the backend's connections live on a tokio
//! runtime, so its cache work runs on one small runtime (one worker thread,
//! `cachekit-blocking`) shared by every plain cached function, and the
//! calling thread waits for it. The function's own body always runs on the
//! calling thread, never on that runtime, so a body may call other cached
//! functions, use thread-locals, or take long without stalling anyone.
//!
//! How the calling thread waits depends on where it is:
//! - outside any runtime: it blocks;
//! - on a multi-thread tokio runtime: inside
//!   [`tokio::task::block_in_place`], so the runtime moves its other tasks
//!   to other workers;
//! - on a current-thread runtime: it blocks that runtime's only thread for
//!   the cache round trip (as any blocking call would). It cannot deadlock:
//!   the cache work runs on the shared runtime, not on the blocked one, and
//!   every backend operation has a timeout.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::oneshot;

/// What the cache task tells the waiting thread.
enum Message<R> {
    /// Run the function's body and send its result back.
    RunBody(oneshot::Sender<R>),
    /// The call's result; `None` if the task lost the body's result.
    Done(Option<R>),
}

/// Runs `future` on the shared runtime and waits for its output; `None` if
/// that runtime could not be started.
pub(crate) fn run<F>(future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = runtime()?;
    let (done, outcome) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = done.send(future.await);
    });
    wait(|| outcome.recv().ok())
}

/// Runs the future `task` builds on the shared runtime and waits for its
/// result. `task` receives a future that runs `body` on the calling thread
/// and resolves to its result (`None` if the calling thread stopped waiting,
/// which happens only when `body` panicked). If the shared runtime cannot
/// start, or the task ends without the body's result, `body` runs here.
pub(crate) fn run_with_body<R, B, T, Fut>(body: B, task: T) -> R
where
    R: Send + 'static,
    B: FnOnce() -> R,
    T: FnOnce(BoxedBody<R>) -> Fut,
    Fut: Future<Output = Option<R>> + Send + 'static,
{
    let Some(runtime) = runtime() else {
        return body();
    };
    let (to_caller, inbox) = mpsc::channel();
    let ask = to_caller.clone();
    let run_body: BoxedBody<R> = Box::pin(async move {
        let (reply, result) = oneshot::channel();
        ask.send(Message::RunBody(reply)).ok()?;
        result.await.ok()
    });
    let future = task(run_body);
    runtime.spawn(async move {
        let _ = to_caller.send(Message::Done(future.await));
    });
    let mut body = Some(body);
    // At most two messages arrive: a request for the body, then the result.
    wait(|| {
        loop {
            match inbox.recv() {
                Ok(Message::RunBody(reply)) => {
                    let run = body.take().expect("the cache asks for the body once");
                    if let Err(result) = reply.send(run()) {
                        return result;
                    }
                }
                Ok(Message::Done(Some(result))) => return result,
                Ok(Message::Done(None)) | Err(_) => match body.take() {
                    Some(run) => return run(),
                    None => {
                        panic!("cachekit: the cache task ended after taking the function's result")
                    }
                },
            }
        }
    })
}

/// A future that runs the function's body on the calling thread.
pub(crate) type BoxedBody<R> = std::pin::Pin<Box<dyn Future<Output = Option<R>> + Send>>;

/// Runs `wait`, which blocks, in the way the current thread allows.
fn wait<T>(wait: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// The runtime shared by plain cached functions, started on first use.
fn runtime() -> Option<&'static Runtime> {
    static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("cachekit-blocking")
                .enable_all()
                .build()
                .inspect_err(|error| {
                    tracing::error!(%error, "cannot start the runtime of plain cached functions: they run uncached");
                })
                .ok()
        })
        .as_ref()
}
