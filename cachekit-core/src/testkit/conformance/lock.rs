//! The lock with a lease, where declared: the holder releases and extends
//! it, nobody else can, one holder at a time among many contenders, the
//! lease ends, and fencing values (where the backend gives them) grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::case::{Case, Ctx, Need};
use crate::{Lock, LockToken};

/// How many callers contend for one lock.
const CONTENDERS: usize = 32;

/// How many times one contender tries to take the lock before giving up.
const ATTEMPTS: usize = 2_000;

/// The pause between two attempts of a contender.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

/// The cases of this topic.
pub(super) const CASES: &[Case] = &[
    Case {
        name: "lock::holder_releases",
        need: Need::Lock,
        run: |c| Box::pin(holder_releases(c)),
    },
    Case {
        name: "lock::only_the_owner_releases",
        need: Need::Lock,
        run: |c| Box::pin(only_the_owner_releases(c)),
    },
    Case {
        name: "lock::mutual_exclusion",
        need: Need::Lock,
        run: |c| Box::pin(mutual_exclusion(c)),
    },
    Case {
        name: "lock::lease_expiry",
        need: Need::Lock,
        run: |c| Box::pin(lease_expiry(c)),
    },
    Case {
        name: "lock::holder_extends",
        need: Need::Lock,
        run: |c| Box::pin(holder_extends(c)),
    },
    Case {
        name: "lock::fences_grow",
        need: Need::Lock,
        run: |c| Box::pin(fences_grow(c)),
    },
];

/// The backend's lock (the cases are gated on it).
fn lock_of(c: &Ctx) -> &dyn Lock {
    c.backend.as_lock().expect("gated on lock")
}

/// A free lock is taken; held, it is contended; its holder releases it
/// once, and it is free again.
async fn holder_releases(c: &Ctx) {
    let (lock, name) = (lock_of(c), c.name());
    let k = c.key("locked");
    let lease = Duration::from_secs(30);
    let token = lock
        .try_lock(&k, lease)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name}: a free lock is taken"));
    assert!(
        lock.try_lock(&k, lease).await.unwrap().is_none(),
        "{name}: a held lock is contended"
    );
    assert!(
        lock.unlock(&k, &token).await.unwrap(),
        "{name}: the holder releases"
    );
    assert!(
        !lock.unlock(&k, &token).await.unwrap(),
        "{name}: a released lock is not released twice"
    );
    let again = lock.try_lock(&k, lease).await.unwrap();
    assert!(again.is_some(), "{name}: a released lock is free");
    lock.unlock(&k, &again.expect("checked")).await.unwrap();
}

/// A made-up token, and the token of another key's holder, release
/// nothing: the lock stays held until its holder releases it.
async fn only_the_owner_releases(c: &Ctx) {
    let (lock, name) = (lock_of(c), c.name());
    let (k, other) = (c.key("owned"), c.key("owned-other"));
    let lease = Duration::from_secs(30);
    let token = lock.try_lock(&k, lease).await.unwrap().expect("free");
    let other_token = lock.try_lock(&other, lease).await.unwrap().expect("free");
    for (label, stranger) in [
        ("a made-up token", LockToken::new("not-the-holder")),
        ("a fresh random token", LockToken::random()),
        ("another key's holder", other_token.clone()),
    ] {
        assert!(
            !lock.unlock(&k, &stranger).await.unwrap(),
            "{name}: {label} must not release the lock"
        );
        assert!(
            lock.try_lock(&k, lease).await.unwrap().is_none(),
            "{name}: the lock is still held after {label} tried to release it"
        );
    }
    assert!(
        lock.unlock(&k, &token).await.unwrap(),
        "{name}: the holder releases"
    );
    assert!(
        lock.unlock(&other, &other_token).await.unwrap(),
        "{name}: the other key's holder releases"
    );
}

/// Of 32 callers trying at once, exactly one takes the lock; then, taking
/// turns, each of the 32 holds it once, never two at a time.
async fn mutual_exclusion(c: &Ctx) {
    let name = c.name();
    let k = Arc::new(c.key("contended"));
    let lease = Duration::from_secs(30);

    let start = Arc::new(Barrier::new(CONTENDERS));
    let mut tasks = JoinSet::new();
    for _ in 0..CONTENDERS {
        let (backend, k, start) = (Arc::clone(&c.backend), Arc::clone(&k), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            let lock = backend.as_lock().expect("gated on lock");
            lock.try_lock(&k, lease).await.unwrap()
        });
    }
    let winners: Vec<LockToken> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(
        winners.len(),
        1,
        "{name}: of {CONTENDERS} callers taking a free lock at once, exactly one gets it"
    );
    assert!(lock_of(c).unlock(&k, &winners[0]).await.unwrap());

    let inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for id in 0..CONTENDERS {
        let (backend, k, inside) = (Arc::clone(&c.backend), Arc::clone(&k), Arc::clone(&inside));
        tasks.spawn(async move {
            let lock = backend.as_lock().expect("gated on lock");
            for _ in 0..ATTEMPTS {
                if let Some(token) = lock.try_lock(&k, lease).await.unwrap() {
                    let others = inside.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    let released = lock.unlock(&k, &token).await.unwrap();
                    return Ok((others, released));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(format!(
                "contender {id} never got the lock in {ATTEMPTS} attempts"
            ))
        });
    }
    for outcome in tasks.join_all().await {
        let (others, released) = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(others, 0, "{name}: two contenders held the lock at once");
        assert!(
            released,
            "{name}: a contender could not release its own lock"
        );
    }
}

/// A lock is free once its lease ends, and its former holder cannot
/// release the next holder's lock.
async fn lease_expiry(c: &Ctx) {
    let (lock, name) = (lock_of(c), c.name());
    let k = c.key("leased");
    let short = lock
        .try_lock(&k, Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name}: a free lock is taken"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let next = lock.try_lock(&k, Duration::from_secs(30)).await.unwrap();
    assert!(next.is_some(), "{name}: a lock is free after its lease");
    assert!(
        !lock.unlock(&k, &short).await.unwrap(),
        "{name}: an expired holder cannot release the next one's lock"
    );
    assert!(
        lock.unlock(&k, &next.expect("checked")).await.unwrap(),
        "{name}: the next holder releases"
    );
}

/// The holder extends its lease past its first end; a stranger's token
/// extends nothing, and neither does the holder's once its lease ran out.
async fn holder_extends(c: &Ctx) {
    let (lock, name) = (lock_of(c), c.name());
    let k = c.key("extended");
    // Pauses of a quarter lease: a busy host may oversleep them a lot
    // before the lease runs out between two extensions.
    let lease = Duration::from_secs(1);
    let token = lock.try_lock(&k, lease).await.unwrap().expect("free");
    assert!(
        !lock.extend(&k, &LockToken::random(), lease).await.unwrap(),
        "{name}: a stranger's token extends nothing"
    );
    for _ in 0..6 {
        tokio::time::sleep(lease / 4).await;
        assert!(
            lock.extend(&k, &token, lease).await.unwrap(),
            "{name}: the holder extends its lease"
        );
    }
    // 1.5 leases after it was taken, the lock is still held.
    assert!(
        lock.try_lock(&k, lease).await.unwrap().is_none(),
        "{name}: an extended lock is held past its first lease"
    );
    tokio::time::sleep(lease * 2).await;
    assert!(
        !lock.extend(&k, &token, lease).await.unwrap(),
        "{name}: a lease that ran out is not extended"
    );
    let next = lock.try_lock(&k, lease).await.unwrap();
    assert!(next.is_some(), "{name}: the lock is free after its lease");
    assert!(lock.unlock(&k, &next.expect("checked")).await.unwrap());
    assert!(
        !lock.extend(&k, &token, lease).await.unwrap(),
        "{name}: a released lock is not extended"
    );
}

/// Where the backend gives fencing values, each acquisition of a lock gets
/// a larger one than the one before; a backend gives them to every token
/// or to none.
async fn fences_grow(c: &Ctx) {
    let (lock, name) = (lock_of(c), c.name());
    let k = c.key("fenced");
    let lease = Duration::from_secs(30);
    let mut fences = Vec::new();
    for _ in 0..5 {
        let token = lock.try_lock(&k, lease).await.unwrap().expect("free");
        fences.push(token.fence());
        assert!(lock.unlock(&k, &token).await.unwrap());
    }
    if fences.iter().all(Option::is_none) {
        return;
    }
    let values: Vec<u64> = fences
        .iter()
        .map(|fence| {
            fence
                .unwrap_or_else(|| panic!("{name}: some tokens have a fence, some not: {fences:?}"))
        })
        .collect();
    assert!(
        values.windows(2).all(|pair| pair[0] < pair[1]),
        "{name}: fences must grow with every acquisition: {values:?}"
    );
}
