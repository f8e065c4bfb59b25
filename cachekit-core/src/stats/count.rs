//! One counter: an atomic read by the snapshots ([`crate::stats()`],
//! [`Cache::stats`](crate::Cache::stats)) and, with the `metrics` feature,
//! its twin in the `metrics` facade; and [`HotCount`], the same counted
//! [per thread](super::per_thread) for L1 hits.

use std::sync::atomic::{AtomicU64, Ordering};

use super::per_thread::PerThread;

/// A counter kept by cachekit and exported under `name` with `labels`.
///
/// The exported twin is registered when the counter is made: a recorder
/// installed after that (after the cache was built) does not see it, which
/// is how every handle of the `metrics` crate behaves.
pub(crate) struct Count {
    value: AtomicU64,
    #[cfg(feature = "metrics")]
    exported: metrics::Counter,
}

impl Count {
    /// A counter at zero, exported as `name` with `labels` (label name, value).
    pub(crate) fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = (name, labels);
        Count {
            value: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            exported: metrics::counter!(name, export::labels(labels)),
        }
    }

    /// Adds one.
    #[inline]
    pub(crate) fn bump(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.exported.increment(n);
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// A [`Count`] for the hottest path, L1 hits, which threads on every core
/// take at once: a [`PerThread`] count, and its exported twin.
pub(crate) struct HotCount {
    count: PerThread,
    #[cfg(feature = "metrics")]
    exported: metrics::Counter,
}

impl HotCount {
    /// A counter at zero, exported as `name` with `labels` (label name, value).
    pub(crate) fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = (name, labels);
        HotCount {
            count: PerThread::new(),
            #[cfg(feature = "metrics")]
            exported: metrics::counter!(name, export::labels(labels)),
        }
    }

    /// Adds one.
    #[inline]
    pub(crate) fn bump(&self) {
        self.count.bump();
        #[cfg(feature = "metrics")]
        self.exported.increment(1);
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.count.get()
    }
}

impl std::fmt::Debug for HotCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// What the `metrics` feature adds: labels, and the L1 tiers' gauges.
#[cfg(feature = "metrics")]
pub(crate) mod export {
    /// `labels` as the `metrics` crate takes them.
    pub(crate) fn labels(labels: &[(&'static str, &str)]) -> Vec<metrics::Label> {
        labels
            .iter()
            .map(|&(name, value)| metrics::Label::new(name, value.to_owned()))
            .collect()
    }

    /// The exported size of an L1 tier: `cachekit_l1_entries` and
    /// `cachekit_l1_bytes` (gauges) and `cachekit_l1_evictions_total`,
    /// labelled with the tier's `cache`.
    #[derive(Debug)]
    pub(crate) struct L1Gauges {
        entries: metrics::Gauge,
        bytes: metrics::Gauge,
        evictions: metrics::Counter,
    }

    impl L1Gauges {
        pub(crate) fn new(cache: &str) -> Self {
            let labels = labels(&[("cache", cache)]);
            L1Gauges {
                entries: metrics::gauge!("cachekit_l1_entries", labels.clone()),
                bytes: metrics::gauge!("cachekit_l1_bytes", labels.clone()),
                evictions: metrics::counter!("cachekit_l1_evictions_total", labels),
            }
        }

        /// Reports a tier's size: entries, bytes, evictions so far.
        pub(crate) fn report(&self, (entries, bytes, evictions): (usize, usize, u64)) {
            self.entries.set(entries as f64);
            self.bytes.set(bytes as f64);
            self.evictions.absolute(evictions);
        }
    }
}
