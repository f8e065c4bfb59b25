//! A service whose cache counters, backend latencies and breaker state are
//! scraped by Prometheus: it installs the `metrics-exporter-prometheus`
//! recorder, then serves a cached workload until Ctrl-C.
//!
//! ```text
//! cargo run --example metrics_service --features metrics
//! curl -s http://127.0.0.1:9000/metrics | grep cachekit_
//! ```
//!
//! `METRICS_ADDR` changes the listen address (default `127.0.0.1:9000`),
//! `METRICS_SERVICE_SECONDS` stops it after that many seconds. The backend
//! is the one the configuration selects: in-process memory by default,
//! memcached with `--features metrics,memcached` and
//! `CACHEKIT_MEMCACHED_SERVERS=127.0.0.1:11211`.

use std::net::SocketAddr;
use std::time::Duration;

use cachekit::{Cache, cache};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::{Deserialize, Serialize};

/// The listen address when `METRICS_ADDR` is not set.
const DEFAULT_ADDR: &str = "127.0.0.1:9000";

/// Users most requests are for: hits once each was loaded.
const REGULAR_USERS: u64 = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

/// Stands for a slow database lookup.
#[cache(ttl = 60, namespace = "users")]
async fn user_profile(id: u64) -> Profile {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Profile {
        id,
        name: format!("user {id}"),
    }
}

/// Stands for a call to a rate provider.
async fn fetch_rate(currency: &str) -> f64 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if currency == "EUR" { 1.08 } else { 1.27 }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| DEFAULT_ADDR.to_owned())
        .parse()
        .map_err(|error| format!("METRICS_ADDR: {error}"))?;
    let run_for = match std::env::var("METRICS_SERVICE_SECONDS") {
        Ok(seconds) => {
            Some(Duration::from_secs(seconds.parse().map_err(|error| {
                format!("METRICS_SERVICE_SECONDS: {error}")
            })?))
        }
        Err(_) => None,
    };

    // First: cachekit registers its metrics when a cache is built, and the
    // recorder sees only those registered after it is installed.
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    println!("serving /metrics on http://{addr}/metrics");

    // A broken configuration stops the service here, not at the first call.
    cachekit::init()?;

    // Rates are read from the backend at every call (no L1), so that every
    // instance of the service sees a new rate at once.
    let rates = Cache::builder().namespace("rates").without_l1().build()?;

    let workload = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for request in 0u64.. {
            tick.tick().await;
            // Mostly regular users (hits); every fifth request a new one (a miss).
            let id = if request % 5 == 0 {
                1_000 + request
            } else {
                request % REGULAR_USERS
            };
            let profile = user_profile(id).await;
            let currency = if request % 2 == 0 { "EUR" } else { "GBP" };
            let rate = rates
                .get_or_insert_with(currency, Some(Duration::from_secs(5)), || {
                    fetch_rate(currency)
                })
                .await;
            if request % 50 == 0 {
                println!(
                    "request {request}: {} pays in {currency} at {rate}",
                    profile.name
                );
            }
        }
    };
    let deadline = async {
        match run_for {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = workload => {}
        signal = tokio::signal::ctrl_c() => signal?,
        () = deadline => {}
    }
    println!("stopped");
    Ok(())
}
