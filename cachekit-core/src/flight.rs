//! In-process single-flight: concurrent misses on one key run the loader once.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::OnceCell;

/// The calls in flight, by cache key. The first caller for a key leads: it
/// runs the load; callers arriving meanwhile wait and share its result (the
/// encoded payload). If the leader fails or is cancelled, the next waiter
/// leads, so a failed load is retried rather than shared.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    calls: DashMap<String, Arc<OnceCell<Bytes>>>,
}

/// How a caller took part in a flight.
pub(crate) enum Joined<E, L> {
    /// This caller ran the load; the payload it shares, or its error.
    Led(Result<Bytes, E>),
    /// Another caller ran the load: its payload, and this caller's unused load.
    Followed(Bytes, L),
}

impl Flights {
    /// Runs `load` unless a call for `key` is already running, in which case
    /// waits for it. `load` returns the payload to share with followers.
    pub(crate) async fn join<E, L, Fut>(&self, key: &str, load: L) -> Joined<E, L>
    where
        L: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        // Leaves the flight however this call ends, dropped included.
        let leave = Leave {
            flights: self,
            key,
            cell: Some(self.calls.entry(key.to_owned()).or_default().clone()),
        };
        let cell = leave.cell();
        let mut load = Some(load);
        let mut led = None;
        let shared = cell
            .get_or_try_init(|| async {
                let load = load
                    .take()
                    .expect("a caller initialises the cell at most once");
                let result = load().await;
                let shared = result.as_ref().map(Bytes::clone).map_err(|_| ());
                led = Some(result);
                shared
            })
            .await
            .cloned();
        match (led, load) {
            (Some(result), _) => Joined::Led(result),
            // The cell errs only with this caller's own load, so a caller that
            // did not lead holds the leader's payload.
            (None, Some(load)) => Joined::Followed(
                shared.expect("a follower receives the leader's payload"),
                load,
            ),
            (None, None) => unreachable!("a caller that ran its load led"),
        }
    }
}

/// A caller's place in a flight, holding the flight's cell. When it goes
/// (done, failed or dropped), the flight is forgotten if it has a result,
/// or if no other caller waits on it (a waiter leads it next, so it stays
/// for the callers arriving).
struct Leave<'a> {
    flights: &'a Flights,
    key: &'a str,
    /// `None` only while dropped.
    cell: Option<Arc<OnceCell<Bytes>>>,
}

impl Leave<'_> {
    fn cell(&self) -> &Arc<OnceCell<Bytes>> {
        self.cell.as_ref().expect("held until dropped")
    }
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let cell = self.cell.take().expect("held until dropped");
        let ours = Arc::as_ptr(&cell);
        // This caller's hold goes first, so that two callers leaving at once
        // cannot each count the other's: the map's is then the only one
        // left if nobody waits. Counted under the map's shard lock, where
        // callers join, so the count cannot grow meanwhile. (Should the cell
        // be freed and another made at its address, that one is forgotten
        // only if it has a result or no caller: as its own callers would.)
        drop(cell);
        self.flights.calls.remove_if(self.key, |_, current| {
            std::ptr::eq(Arc::as_ptr(current), ours)
                && (current.initialized() || Arc::strong_count(current) == 1)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_load() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (flights, runs) = (flights.clone(), runs.clone());
                tokio::spawn(async move {
                    let joined = flights
                        .join("k", || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok::<_, ()>(Bytes::from_static(b"v"))
                        })
                        .await;
                    match joined {
                        Joined::Led(result) => result.unwrap(),
                        Joined::Followed(payload, _) => payload,
                    }
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Bytes::from_static(b"v"));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.calls.is_empty(), "finished flights are forgotten");
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_over_and_leaves_nothing_behind() {
        let flights = Flights::default();
        let slow = flights.join("k", || async {
            std::future::pending::<Result<Bytes, ()>>().await
        });
        // Dropped mid-load, alone: the flight is forgotten.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), slow)
                .await
                .is_err()
        );
        assert!(
            flights.calls.is_empty(),
            "a dropped lone leader leaves no flight"
        );

        // Dropped with a waiter: the waiter leads at once.
        let flights = Arc::new(Flights::default());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .join("k", std::future::pending::<Result<Bytes, ()>>)
                    .await;
            })
        };
        tokio::task::yield_now().await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move {
                match flights
                    .join("k", || async { Ok::<_, ()>(Bytes::from_static(b"v")) })
                    .await
                {
                    Joined::Led(result) => result.unwrap(),
                    Joined::Followed(payload, _) => payload,
                }
            })
        };
        tokio::task::yield_now().await;
        leader.abort();
        let value = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter did not wait for a dropped leader")
            .unwrap();
        assert_eq!(value, Bytes::from_static(b"v"));
        assert!(flights.calls.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_leader_hands_over_to_a_waiter() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (flights, runs) = (flights.clone(), runs.clone());
                tokio::spawn(async move {
                    let joined = flights
                        .join("k", || async {
                            let run = runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            if run == 0 {
                                Err("first load fails")
                            } else {
                                Ok(Bytes::from_static(b"v"))
                            }
                        })
                        .await;
                    match joined {
                        Joined::Led(result) => result.is_ok(),
                        Joined::Followed(..) => true,
                    }
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            ok += usize::from(task.await.unwrap());
        }
        assert_eq!(ok, 9, "only the failed leader sees the failure");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one failed load, one retry");
    }
}
