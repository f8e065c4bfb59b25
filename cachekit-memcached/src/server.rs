//! One server of the fleet: its pool and its health (consecutive failures,
//! ejection until a dead time has passed).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::MemcachedBackendConfig;
use crate::pool::Pool;
use crate::tls::Tls;

#[derive(Debug)]
pub(crate) struct Server {
    /// `host:port`, as configured; also the server's name in the ring.
    pub(crate) name: String,
    /// Its place in the server list: its failure domain in errors.
    pub(crate) index: usize,
    pub(crate) pool: Pool,
    /// Failures in a row that eject the server (`eject_after`).
    eject_after: u32,
    /// How long an ejected server stays out.
    dead_time: Duration,
    failures: AtomicU32,
    /// Milliseconds after [`epoch`] until which the server is out of the ring; 0: in.
    ejected_until: AtomicU64,
}

impl Server {
    /// The server `name`, number `index` in `config`'s list, with its pool
    /// (over `tls` when given); connects on first use.
    pub(crate) fn new(
        index: usize,
        name: &str,
        config: &MemcachedBackendConfig,
        tls: Option<&Arc<Tls>>,
    ) -> Self {
        Server {
            name: name.to_owned(),
            index,
            pool: Pool::new(
                name.to_owned(),
                config.connect_timeout,
                config.timeout,
                config.max_pool_size,
                tls.cloned(),
            ),
            eject_after: config.eject_after,
            dead_time: config.dead_time,
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// Whether the server takes keys now: never ejected, or its dead time is over.
    pub(crate) fn is_live(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until == 0 || now_millis() >= until
    }

    /// When the server left the ring, if it is out now (ejected, and its
    /// dead time not over). A server that fails again while out (every
    /// server out, so calls still go to it) restarts its dead time: the
    /// time is that of the last restart.
    pub(crate) fn ejected_since(&self) -> Option<SystemTime> {
        let until = self.ejected_until.load(Ordering::Acquire);
        let now = now_millis();
        if until == 0 || now >= until {
            return None;
        }
        let dead_time = u64::try_from(self.dead_time.as_millis()).unwrap_or(u64::MAX / 2);
        let ago = now.saturating_sub(until.saturating_sub(dead_time));
        let ago = Duration::from_millis(ago);
        Some(
            SystemTime::now()
                .checked_sub(ago)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )
    }

    /// Records an answer: the server is healthy (again).
    pub(crate) fn succeeded(&self) {
        // Read before written: on the hot path nothing changes, and a read
        // leaves the cache line shared between threads.
        if self.failures.load(Ordering::Acquire) != 0 {
            self.failures.store(0, Ordering::Release);
        }
        if self.ejected_until.load(Ordering::Acquire) != 0
            && self.ejected_until.swap(0, Ordering::AcqRel) != 0
        {
            tracing::info!(server = %self.name, "memcached server answers again: back in the ring");
        }
    }

    /// Records a failure; after `eject_after` in a row the server leaves
    /// the ring for `dead_time`. A server back from its dead time that fails
    /// again leaves at once.
    pub(crate) fn failed(&self) {
        let (failures, dead_time) = (
            self.failures.fetch_add(1, Ordering::AcqRel) + 1,
            self.dead_time,
        );
        if failures >= self.eject_after {
            let until = now_millis() + u64::try_from(dead_time.as_millis()).unwrap_or(u64::MAX / 2);
            if self.ejected_until.swap(until, Ordering::AcqRel) == 0 {
                cachekit_core::backend::count_event(
                    "cachekit_memcached_ejections_total",
                    &[("server", &self.name)],
                );
                tracing::warn!(
                    server = %self.name,
                    failures,
                    ?dead_time,
                    "memcached server ejected from the ring: its keys go to the others"
                );
            }
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_millis() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX / 2) + 1
}
