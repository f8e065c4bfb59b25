//! The span of a cached function's call: named after the function, under
//! the caller's span, with the backend, a hashed key and the outcome, and
//! nothing of the arguments or the value.

use std::io::Write;
use std::sync::{Arc, Mutex};

use cachekit::cache;
use tracing::Instrument;
use tracing_subscriber::fmt::format::FmtSpan;

/// Where the subscriber writes: one buffer the test reads.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl Write for Written {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cache(ttl = 60, namespace = "traced")]
async fn greeting(name: String) -> String {
    format!("hello {name}, your token is t0ps3cret")
}

#[tokio::test]
async fn a_cached_call_has_a_span_with_its_outcome() {
    let written = Written::default();
    let sink = written.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("cachekit_core=debug,trace=info")
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    async {
        greeting("mallory".to_owned()).await;
        greeting("mallory".to_owned()).await;
    }
    .instrument(tracing::info_span!("request"))
    .await;

    let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
    let calls: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("cachekit.operation{") && line.contains("close"))
        // A round trip's line names its operation's span first.
        .filter(|line| !line.contains("cachekit.backend{"))
        .collect();
    assert_eq!(calls.len(), 2, "{text}");
    for (call, outcome) in calls.iter().zip(["miss", "l1_hit"]) {
        assert!(
            call.contains("request:cachekit.operation"),
            "nested: {call}"
        );
        assert!(call.contains("cache=\"trace::greeting\""), "{call}");
        assert!(call.contains("operation=\"call\""), "{call}");
        assert!(call.contains(&format!("outcome=\"{outcome}\"")), "{call}");
    }
    assert!(calls[0].contains("backend=\"memory\""), "{}", calls[0]);
    assert!(calls[0].contains("key="), "{}", calls[0]);
    let round_trips: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("cachekit.backend{"))
        .collect();
    assert!(!round_trips.is_empty(), "{text}");
    assert!(
        round_trips
            .iter()
            .all(|line| line.contains("request:cachekit.operation{")),
        "every round trip under its call: {text}"
    );
    assert!(!text.contains("mallory"), "no argument: {text}");
    assert!(!text.contains("t0ps3cret"), "no value: {text}");
}
