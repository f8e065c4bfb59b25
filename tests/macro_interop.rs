//! `#[cache(interop = ...)]`: the keys and values cachekit-py writes, read
//! back from the backend (the vectors of cachekit-py 0.24.1), the argument
//! rules (defaults passed, `*args` and `**kwargs` as a sequence and a map,
//! `skip(self)`), a value that is not interop data, and `encrypt` without
//! a master key. (tests/interop_python.rs runs the real Python package.)
#![cfg(feature = "macros")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use cachekit::{Backend, MemoryBackend, cache};
use serde::{Deserialize, Serialize};

fn shared_backend() -> Arc<MemoryBackend> {
    static BACKEND: OnceLock<Arc<MemoryBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(MemoryBackend::new()))
        .clone()
}

async fn stored(key: &str) -> Option<String> {
    let bytes = shared_backend().get(key).await.unwrap()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs of the bodies, one count per test (tests run in parallel).
static USERS_RAN: AtomicUsize = AtomicUsize::new(0);
static HALVED_RAN: AtomicUsize = AtomicUsize::new(0);
static SECRET_RAN: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    age: u32,
}

#[cache(interop = "get_user", namespace = "users", l1 = false, backend = shared_backend())]
async fn get_user(user_id: u64) -> User {
    let _ = user_id;
    USERS_RAN.fetch_add(1, Ordering::SeqCst);
    User {
        name: "alice".into(),
        age: 30,
    }
}

#[tokio::test]
async fn the_key_and_the_value_are_python_s() {
    assert_eq!(get_user(42).await.age, 30);
    assert_eq!(get_user(42).await.age, 30);
    assert_eq!(
        USERS_RAN.load(Ordering::SeqCst),
        1,
        "the second call is a hit"
    );
    let key = "users:get_user:61598716255080080f6456eb065c2e51badfaa4320b0efe97469c29cffee8875";
    assert_eq!(
        stored(key).await.as_deref(),
        Some("82a36167651ea46e616d65a5616c696365"),
        "the key of vector single_int_42 holds the canonical map"
    );
}

/// Python's `var(a, *rest, **opts)`, called `var(1, 2, 3, z=1, y=2)`.
#[cache(interop = "var", namespace = "vec", backend = shared_backend())]
fn var(a: i64, rest: Vec<i64>, opts: BTreeMap<String, i64>) -> i64 {
    a + rest.iter().sum::<i64>() + opts.values().sum::<i64>()
}

/// Python's `default(user_id, flag=False, tag=None)`, called `default(42)`.
#[cache(interop = "default", namespace = "vec", backend = shared_backend())]
fn default(user_id: u64, flag: bool, tag: Option<String>) -> u64 {
    let _ = (flag, tag);
    user_id
}

#[tokio::test]
async fn python_s_defaults_and_variadics_are_passed_explicitly() {
    let opts = BTreeMap::from([("z".to_owned(), 1), ("y".to_owned(), 2)]);
    assert_eq!(var(1, vec![2, 3], opts), 9);
    assert_eq!(default(42, false, None), 42);
    for (key, value) in [
        (
            "vec:var:a4ba467686fbf032e6e46e567cc4c7202d8b65d0793b842818f1ede514ed6665",
            "09",
        ),
        (
            "vec:default:5b2b74112a5685096de744604fe055b55477af31e87f0ba720342470b352997b",
            "2a",
        ),
    ] {
        assert_eq!(stored(key).await.as_deref(), Some(value), "{key}");
    }
}

#[cache(interop = "one", namespace = "floats", l1 = false, backend = shared_backend())]
fn halved(x: f64) -> f64 {
    HALVED_RAN.fetch_add(1, Ordering::SeqCst);
    x / 2.0
}

#[tokio::test]
async fn an_integral_float_is_its_integer_and_a_nan_runs_uncached() {
    assert_eq!(halved(2.0), 1.0);
    // The key of vector float_int_equivalence (`one(2)` and `one(2.0)`);
    // the value stays a float.
    let key = "floats:one:6df5e966da1ba347f99784f56e50e2f570e775e54c9c9349dd8944cb7fe01ea7";
    assert_eq!(stored(key).await.as_deref(), Some("cb3ff0000000000000"));
    assert!(halved(f64::NAN).is_nan());
    assert!(halved(f64::NAN).is_nan());
    assert_eq!(
        HALVED_RAN.load(Ordering::SeqCst),
        3,
        "a NaN is no key: every call runs"
    );
}

struct Repository;

impl Repository {
    /// A method keyed by its arguments alone.
    #[cache(interop = "count", namespace = "repo", skip(self), backend = shared_backend())]
    async fn count(&self, table: String) -> u64 {
        table.len() as u64
    }
}

#[tokio::test]
async fn a_method_skips_self() {
    assert_eq!(Repository.count("users".into()).await, 5);
    let args: &[&dyn cachekit::interop::InteropArg] = &[&"users"];
    let key = format!(
        "repo:{}",
        cachekit::interop::call_key("count", args).unwrap()
    );
    assert_eq!(stored(&key).await.as_deref(), Some("05"));
}

#[cache(interop = "secret", namespace = "vault", encrypt, backend = shared_backend())]
async fn secret(id: u64) -> u64 {
    SECRET_RAN.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test]
async fn encrypt_without_a_master_key_runs_uncached_and_counts_errors() {
    // This test process sets no CACHEKIT_MASTER_KEY: the cache cannot be
    // built (an error logged), and calls run uncached.
    assert!(std::env::var("CACHEKIT_MASTER_KEY").is_err());
    assert_eq!(secret(7).await, 7);
    assert_eq!(secret(7).await, 7);
    assert_eq!(SECRET_RAN.load(Ordering::SeqCst), 2);
    assert!(secret_stats().errors >= 2, "{:?}", secret_stats());
}
