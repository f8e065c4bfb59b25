//! The reliability layer under cached functions, against memcached: one
//! breaker per backend, shared by every cached function over it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachekit::backends::memcached::{MemcachedBackend, MemcachedBackendConfig};
use cachekit::cache;
use cachekit::testing::scoped_backend;
use cachekit_core::backend::testkit::SilentServer;

/// Twenty cached functions, and a way to call the `i`th.
macro_rules! functions {
    ($($i:literal => $name:ident),* $(,)?) => {
        $(
            #[cache]
            async fn $name(n: u64) -> u64 {
                n + $i
            }
        )*

        async fn call(i: usize, n: u64) -> u64 {
            match i {
                $($i => $name(n).await,)*
                _ => unreachable!("twenty functions"),
            }
        }
    };
}

functions!(
    0 => f0, 1 => f1, 2 => f2, 3 => f3, 4 => f4, 5 => f5, 6 => f6, 7 => f7, 8 => f8, 9 => f9,
    10 => f10, 11 => f11, 12 => f12, 13 => f13, 14 => f14, 15 => f15, 16 => f16, 17 => f17,
    18 => f18, 19 => f19,
);

/// The default `reliability.failure_threshold`.
const FAILURE_THRESHOLD: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cached_functions_over_a_silent_server_pay_the_timeout_threshold_times_in_all() {
    let silent = SilentServer::start();
    let timeout = Duration::from_millis(300);
    let backend = MemcachedBackend::new(MemcachedBackendConfig {
        servers: vec![silent.address()],
        timeout,
        ..Default::default()
    })
    .unwrap();
    let _scope = scoped_backend(Arc::new(backend));
    let mut waited = 0;
    let started = Instant::now();
    for round in 0..2 {
        for i in 0..20 {
            let started = Instant::now();
            assert_eq!(call(i, 1).await, 1 + i as u64, "the body's value, uncached");
            // Not a performance assertion: a call that paid the timeout
            // took most of it; one that skipped the backend took none.
            if started.elapsed() >= timeout / 2 {
                waited += 1;
            }
        }
        assert!(
            waited <= FAILURE_THRESHOLD,
            "round {round}: {waited} calls waited for the silent server"
        );
    }
    eprintln!(
        "measured: silent listener: 40 calls of 20 cached functions: {:?}, {waited} waited",
        started.elapsed()
    );
    assert_eq!(
        waited, FAILURE_THRESHOLD,
        "the breaker opened after that many"
    );
}
