//! `health()` over a fleet of three real servers: each listed up with its
//! latency, down with the error, or ejected since when; `Ok` while one
//! answers.

mod common;

use std::time::{Duration, SystemTime};

use cachekit_core::backend::Bytes;
use cachekit_core::{Backend, BreakerState, DomainState, Error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_each_server_up_down_or_ejected_and_fails_only_when_none_answers() {
    let mut servers = common::servers(3);
    let backend = common::backend(&servers, |c| c.dead_time = Duration::from_secs(60));
    let addresses: Vec<String> = servers.iter().map(|s| s.address()).collect();

    let health = backend.health().await.expect("every server answers");
    assert_eq!(health.backend, "memcached");
    assert_eq!(health.breaker, BreakerState::Closed);
    let names: Vec<&str> = health.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, addresses, "one domain per server, in order");
    for domain in &health.domains {
        assert_eq!(domain.state, DomainState::Up, "{domain:?}");
        let latency = domain.latency.expect("an answer has a latency");
        assert!(latency <= health.latency, "{health:?}");
    }

    // Stopped and used: its keys' calls eject it.
    let victim = &addresses[1];
    let key = (0..1000)
        .map(|i| format!("health:{i}"))
        .find(|k| backend.server_for(k) == victim)
        .expect("some key belongs to the victim");
    servers[1].stop();
    let stopped = SystemTime::now();
    for _ in 0..10 {
        if !backend.live_servers().contains(&victim.as_str()) {
            break;
        }
        backend
            .set(&key, Bytes::from_static(b"v"), None)
            .await
            .expect("stored on another server once the victim is out");
    }
    assert!(!backend.live_servers().contains(&victim.as_str()));
    // Stopped and never used since: not ejected, so asked, and down.
    servers[2].stop();

    let health = backend.health().await.expect("one server still answers");
    eprintln!("measured: one ejected, one down: {health:?}");
    let [up, ejected, down] = &health.domains[..] else {
        panic!("three domains: {health:?}");
    };
    assert_eq!(up.state, DomainState::Up);
    match ejected.state {
        DomainState::Ejected { since } => {
            assert!(since <= SystemTime::now(), "not in the future");
            // Millisecond clock: the ejection, seen from the wall clock.
            assert!(since + Duration::from_millis(5) >= stopped, "{since:?}");
        }
        ref other => panic!("the used server is ejected, not {other:?}"),
    }
    assert_eq!(ejected.latency, None, "an ejected server is not asked");
    match &down.state {
        DomainState::Down { error } => assert!(!error.is_empty()),
        other => panic!("the unused stopped server is down, not {other:?}"),
    }

    servers[0].stop();
    match backend.health().await {
        Err(error @ Error::Unavailable { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&addresses[0]), "{message}");
        }
        other => panic!("no server answers: {other:?}"),
    }
}
