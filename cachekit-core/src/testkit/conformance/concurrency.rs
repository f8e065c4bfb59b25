//! Calls that overlap: a call dropped mid-flight leaves the backend right
//! for the next one (on a pipelined connection, the next caller must get its
//! own answer, never the dropped call's), and concurrent callers each get
//! their own value.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::case::{Case, Ctx, Need};

/// How many callers run at once.
const CALLERS: usize = 32;

/// How many rounds of write-then-read each caller runs.
const ROUNDS: usize = 10;

/// How many calls are dropped mid-flight, each followed by a checked call.
const DROPS: usize = 64;

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "concurrency::dropped_call_then_next_call",
        need: Need::Nothing,
        run: |c| Box::pin(dropped_call_then_next_call(c)),
    },
    Case {
        name: "concurrency::callers_get_their_own_values",
        need: Need::Nothing,
        run: |c| Box::pin(callers_get_their_own_values(c)),
    },
];

/// Polls `call` once, with a waker that does nothing, and drops it: the
/// request may be sent and its answer not read.
fn poll_once_and_drop<F: Future>(call: F) {
    let mut call = pin!(call);
    let _ = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
}

/// Runs `call` under a timeout of `after`, dropping it if it has not ended.
async fn cancel_after<F: Future>(after: Duration, call: F) {
    let _ = tokio::time::timeout(after, call).await;
}

/// A `get`, `set`, `exists` or `get_many` dropped mid-flight (polled once,
/// or cut by a timeout of 0 to 1 ms), then the next calls on the same
/// backend: each gets its own answer.
async fn dropped_call_then_next_call(c: &Ctx) {
    let (b, name) = (&c.backend, c.name());
    let (a, other) = (c.key("dropped"), c.key("next"));
    let a_value = Bytes::from(vec![b'a'; 3_000]);
    let other_value = Bytes::from_static(b"the next caller's own value");
    b.set(&a, a_value.clone(), None).await.unwrap();
    b.set(&other, other_value.clone(), None).await.unwrap();
    for i in 0..DROPS {
        let after = Duration::from_micros([0, 0, 50, 1_000][i % 4]);
        match (i / 4) % 4 {
            0 if i % 2 == 0 => poll_once_and_drop(b.get(&a)),
            0 => cancel_after(after, b.get(&a)).await,
            1 if i % 2 == 0 => poll_once_and_drop(b.set(&a, a_value.clone(), None)),
            1 => cancel_after(after, b.set(&a, a_value.clone(), None)).await,
            2 => cancel_after(after, b.exists(&a)).await,
            _ => cancel_after(after, b.get_many(&[a.as_str(), a.as_str()])).await,
        }
        let got = b
            .get(&other)
            .await
            .unwrap_or_else(|e| panic!("{name}: the call after dropped call {i} failed: {e}"));
        assert!(
            got.as_ref() == Some(&other_value),
            "{name}: after dropped call {i}, get of another key gave {:?} bytes, not its own value",
            got.map(|v| v.len())
        );
        let many = b.get_many(&[other.as_str(), a.as_str()]).await.unwrap();
        assert_eq!(
            many,
            vec![Some(other_value.clone()), Some(a_value.clone())],
            "{name}: after dropped call {i}, get_many answers each key with its own value"
        );
        assert!(
            !b.exists(&c.key("absent")).await.unwrap(),
            "{name}: after dropped call {i}, a missing key does not exist"
        );
    }
    b.delete(&a).await.unwrap();
    b.delete(&other).await.unwrap();
}

/// 32 callers at once, each writing and reading its own key for 10 rounds
/// (and dropping a read of its own mid-flight every third round), each read
/// giving the caller's own latest value.
async fn callers_get_their_own_values(c: &Ctx) {
    let name = c.name().to_owned();
    let mut tasks: JoinSet<crate::Result<Option<String>>> = JoinSet::new();
    for caller in 0..CALLERS {
        let backend = Arc::clone(&c.backend);
        let k = c.key(&format!("caller{caller}"));
        tasks.spawn(async move {
            for round in 0..ROUNDS {
                let value = Bytes::from(format!("caller {caller} round {round}"));
                backend.set(&k, value.clone(), None).await?;
                if round % 3 == 0 {
                    cancel_after(Duration::ZERO, backend.get(&k)).await;
                }
                let got = backend.get(&k).await?;
                if got.as_ref() != Some(&value) {
                    return Ok(Some(format!(
                        "caller {caller} round {round} read {got:?}, not its own {value:?}"
                    )));
                }
            }
            backend.delete(&k).await?;
            Ok(None)
        });
    }
    let outcomes = tasks.join_all().await;
    assert_eq!(outcomes.len(), CALLERS);
    for outcome in outcomes {
        match outcome {
            Ok(None) => {}
            Ok(Some(wrong)) => panic!("{name}: {wrong}"),
            Err(error) => panic!("{name}: a concurrent caller failed: {error}"),
        }
    }
}
