//! `#[cache]` in every form, against the in-process default backend: the
//! count of body runs proves hits.

use std::sync::atomic::{AtomicUsize, Ordering};

use cachekit::cache;
use serde::{Deserialize, Serialize};

static PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

#[cache]
async fn profile(user_id: u64) -> Profile {
    PROFILE_RUNS.fetch_add(1, Ordering::SeqCst);
    Profile {
        id: user_id,
        name: format!("user {user_id}"),
    }
}

#[tokio::test]
async fn async_fn_runs_once_per_arguments() {
    assert_eq!(profile(1).await.name, "user 1");
    assert_eq!(profile(1).await.name, "user 1");
    assert_eq!(profile(2).await.name, "user 2");
    assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 2);
    let stats = profile_stats();
    assert_eq!(stats.loads, 2);
    assert!(stats.l1_hits >= 1, "{stats:?}");
}

static SQUARES: AtomicUsize = AtomicUsize::new(0);

#[cache(ttl = 30)]
fn squares(n: u64) -> Vec<u64> {
    SQUARES.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| i * i).collect()
}

#[test]
fn plain_fn_from_plain_code() {
    assert_eq!(squares(4), vec![0, 1, 4, 9]);
    assert_eq!(squares(4), vec![0, 1, 4, 9]);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 1);
}
