//! The spans of cache operations and backend round trips: names, fields,
//! outcomes, nesting under the caller's span, and nothing of the values or
//! the key's text.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use cachekit_core::backend::testkit::{Fault, FaultyBackend};
use cachekit_core::{Cache, MemoryBackend};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as the test sees it: its name, its fields, its parent's name.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: &'static str,
    parent: Option<&'static str>,
    fields: HashMap<&'static str, String>,
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(u64, Seen)>>>);

struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attributes.metadata().name(),
            parent: ctx
                .span(id)
                .and_then(|span| span.parent())
                .map(|parent| parent.name()),
            ..Seen::default()
        };
        attributes.record(&mut Fields(&mut seen.fields));
        self.0.lock().unwrap().push((id.into_u64(), seen));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, seen)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<Seen> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .map(|(_, seen)| seen.clone())
            .filter(|seen| seen.name == name)
            .collect()
    }
}

#[tokio::test]
async fn each_operation_has_a_span_under_the_callers_with_its_outcome() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let cache = Cache::builder()
        .backend(MemoryBackend::new())
        .namespace("traced")
        .build()
        .unwrap();
    let secret_key = "user:alice@example.com";
    let secret_value = "s3cr3t-value".to_owned();
    async {
        let value = cache
            .get_or_insert_with(secret_key, None, || async { secret_value.clone() })
            .await;
        assert_eq!(value, secret_value);
        let again: Option<String> = cache.get(secret_key).await.unwrap();
        assert_eq!(again.as_deref(), Some("s3cr3t-value"));
        let absent: Option<String> = cache.get("absent").await.unwrap();
        assert!(absent.is_none());
    }
    .instrument(tracing::info_span!("request"))
    .await;

    let operations = spans.named("cachekit.operation");
    let summary: Vec<(String, String)> = operations
        .iter()
        .map(|s| (s.fields["operation"].clone(), s.fields["outcome"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("get_or_insert".to_owned(), "miss".to_owned()),
            ("get".to_owned(), "l1_hit".to_owned()),
            ("get".to_owned(), "miss".to_owned()),
        ],
        "{operations:#?}"
    );
    for operation in &operations {
        assert_eq!(operation.parent, Some("request"), "{operation:?}");
        assert_eq!(operation.fields["cache"], "traced");
        assert_eq!(operation.fields["backend"], "memory");
        assert!(operation.fields.contains_key("elapsed_us"), "{operation:?}");
        assert_eq!(operation.fields["key"].len(), 16, "a hash: {operation:?}");
    }
    let round_trips = spans.named("cachekit.backend");
    assert!(!round_trips.is_empty());
    for round_trip in &round_trips {
        assert_eq!(
            round_trip.parent,
            Some("cachekit.operation"),
            "{round_trip:?}"
        );
        assert_eq!(round_trip.fields["outcome"], "ok", "{round_trip:?}");
        assert_eq!(round_trip.fields["backend"], "memory");
    }
    assert_eq!(
        operations[0].fields["key"], round_trips[0].fields["key"],
        "the cache's span and its round trips name one key"
    );
    let everything = format!("{:?}", spans.0.lock().unwrap());
    assert!(!everything.contains("alice"), "no key text: {everything}");
    assert!(!everything.contains("s3cr3t"), "no value: {everything}");
}

#[tokio::test]
async fn a_failed_round_trip_records_the_errors_kind() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let backend = FaultyBackend::new(MemoryBackend::new());
    backend.set_fault(Fault::Down);
    let cache = Cache::builder()
        .backend(backend.clone())
        .namespace("failing")
        .build()
        .unwrap();
    let loaded = cache.get_or_insert_with("k", None, || async { 7 }).await;
    assert_eq!(loaded, 7, "degrades to the loader");
    let round_trips = spans.named("cachekit.backend");
    assert!(
        round_trips
            .iter()
            .any(|s| s.fields["outcome"] == "unavailable"),
        "{round_trips:#?}"
    );
    let operations = spans.named("cachekit.operation");
    assert_eq!(operations.len(), 1);
    assert_eq!(
        operations[0].fields["outcome"], "miss",
        "ran the loader after the error"
    );

    assert!(cache.set("k", &1, None).await.is_err());
    backend.set_fault(Fault::None);
    cache.set("k", &2, None).await.unwrap();
    let writes: Vec<String> = spans.named("cachekit.operation")[1..]
        .iter()
        .map(|s| format!("{}={}", s.fields["operation"], s.fields["outcome"]))
        .collect();
    assert_eq!(writes, ["set=error", "set=ok"]);
}
