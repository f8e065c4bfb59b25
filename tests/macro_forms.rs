//! `#[cache]` in every form, against in-process backends: counting the runs
//! of each function's body proves hits. (tests/macro_memcached.rs runs the
//! forms against a real memcached.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachekit::cache;
use cachekit::{Backend, MemoryBackend};
use cachekit_core::backend::testkit::{Fault, FaultyBackend};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

static PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache]
async fn profile(user_id: u64) -> Profile {
    PROFILE_RUNS.fetch_add(1, Ordering::SeqCst);
    Profile {
        id: user_id,
        name: format!("user {user_id}"),
    }
}

#[tokio::test]
async fn async_fn_runs_once_per_arguments_and_has_companions() {
    assert_eq!(profile(1).await.name, "user 1");
    assert_eq!(profile(1).await.name, "user 1");
    assert_eq!(profile(2).await.name, "user 2");
    assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 2);

    assert!(profile_invalidate(1).await.unwrap(), "the entry was there");
    assert_eq!(profile(1).await.name, "user 1");
    assert_eq!(
        PROFILE_RUNS.load(Ordering::SeqCst),
        3,
        "invalidated: runs again"
    );

    assert_eq!(profile_refresh(2).await.id, 2);
    assert_eq!(
        PROFILE_RUNS.load(Ordering::SeqCst),
        4,
        "refresh always runs"
    );
    assert_eq!(profile(2).await.id, 2);
    assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 4, "and stores");

    let stats = profile_stats();
    assert_eq!(stats.loads, 3, "{stats:?}");
    assert_eq!(stats.l1_hits, 2, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
}

/// A backend shared by the tests that look at what is stored.
fn shared_backend() -> Arc<MemoryBackend> {
    static BACKEND: OnceLock<Arc<MemoryBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(MemoryBackend::new()))
        .clone()
}

static USERS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(ttl = 300, namespace = "users", backend = shared_backend())]
async fn user_name(user_id: u64) -> String {
    USERS_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("user {user_id}")
}

#[tokio::test]
async fn namespace_and_ttl_reach_the_backend() {
    assert_eq!(user_name(7).await, "user 7");
    assert_eq!(user_name(7).await, "user 7");
    assert_eq!(USERS_RUNS.load(Ordering::SeqCst), 1);
    let key = format!(
        "users:user_name:{}",
        cachekit::key::args_part(&(7u64,)).unwrap()
    );
    let ttl = shared_backend().as_ttl_inspect().unwrap().ttl(&key).await;
    match ttl.unwrap() {
        cachekit::KeyTtl::Expires(left) => {
            assert!(left > Duration::from_secs(290) && left <= Duration::from_secs(300))
        }
        other => panic!("expected a 300 s TTL on {key}, got {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Price(u64);

#[derive(Debug, PartialEq)]
struct DbError(String);

static PRICE_RUNS: AtomicUsize = AtomicUsize::new(0);

fn parse_sku(sku: &str) -> Result<u64, DbError> {
    sku.strip_prefix("sku-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| DbError(format!("no such sku: {sku}")))
}

#[cache(backend = shared_backend(), ttl = "1m")]
async fn price(sku: &str) -> Result<Price, DbError> {
    PRICE_RUNS.fetch_add(1, Ordering::SeqCst);
    let cents = parse_sku(sku)?;
    Ok(Price(cents * 100))
}

#[tokio::test]
async fn only_ok_results_are_cached() {
    assert_eq!(price("sku-3").await, Ok(Price(300)));
    assert_eq!(price("sku-3").await, Ok(Price(300)));
    assert_eq!(PRICE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(price("bad").await, Err(DbError("no such sku: bad".into())));
    assert_eq!(price("bad").await, Err(DbError("no such sku: bad".into())));
    assert_eq!(
        PRICE_RUNS.load(Ordering::SeqCst),
        3,
        "errors are not cached"
    );
}

/// Not serializable: must be skipped.
struct Pool {
    stock: u32,
}

static STOCK_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(skip(db), key = format!("sku:{sku}"), backend = shared_backend())]
async fn stock(db: &Pool, sku: &str) -> u32 {
    STOCK_RUNS.fetch_add(1, Ordering::SeqCst);
    db.stock
}

#[tokio::test]
async fn skip_and_custom_key() {
    let pool = Pool { stock: 5 };
    let other = Pool { stock: 9 };
    assert_eq!(stock(&pool, "abc").await, 5);
    assert_eq!(stock(&other, "abc").await, 5, "the pool is not in the key");
    assert_eq!(STOCK_RUNS.load(Ordering::SeqCst), 1);
    let backend = shared_backend();
    assert!(
        backend
            .exists("cachekit:macro_forms:stock:sku:abc")
            .await
            .unwrap(),
        "the custom key is readable on the backend"
    );
    assert!(stock_invalidate(&pool, "abc").await.unwrap());
    assert_eq!(stock(&other, "abc").await, 9);
}

static NONE_RUNS: AtomicUsize = AtomicUsize::new(0);
static SOME_ONLY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache]
async fn find(id: u64) -> Option<String> {
    NONE_RUNS.fetch_add(1, Ordering::SeqCst);
    (id % 2 == 0).then(|| format!("even {id}"))
}

#[cache(cache_none = false)]
async fn find_some(id: u64) -> Option<String> {
    SOME_ONLY_RUNS.fetch_add(1, Ordering::SeqCst);
    (id % 2 == 0).then(|| format!("even {id}"))
}

#[tokio::test]
async fn none_is_cached_unless_told_otherwise() {
    assert_eq!(find(1).await, None);
    assert_eq!(find(1).await, None);
    assert_eq!(NONE_RUNS.load(Ordering::SeqCst), 1, "None is cached");
    assert_eq!(find_some(1).await, None);
    assert_eq!(find_some(1).await, None);
    assert_eq!(
        SOME_ONLY_RUNS.load(Ordering::SeqCst),
        2,
        "None is not cached"
    );
    assert_eq!(find_some(2).await.as_deref(), Some("even 2"));
    assert_eq!(find_some(2).await.as_deref(), Some("even 2"));
    assert_eq!(SOME_ONLY_RUNS.load(Ordering::SeqCst), 3, "Some is cached");
}

static SQUARES_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(ttl = 30)]
fn expensive_computation(n: u64) -> Vec<u64> {
    SQUARES_RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| i * i).collect()
}

#[test]
fn plain_fn_from_plain_code() {
    assert_eq!(expensive_computation(4), vec![0, 1, 4, 9]);
    let before = SQUARES_RUNS.load(Ordering::SeqCst);
    assert_eq!(expensive_computation(4), vec![0, 1, 4, 9]);
    assert_eq!(SQUARES_RUNS.load(Ordering::SeqCst), before, "a hit");
    assert!(expensive_computation_invalidate(4).unwrap());
    assert_eq!(expensive_computation_refresh(4), vec![0, 1, 4, 9]);
    assert_eq!(SQUARES_RUNS.load(Ordering::SeqCst), before + 1);
}

static PLAIN_IN_RUNTIME_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(l1 = false)]
fn plain_in_runtime(n: u64) -> u64 {
    PLAIN_IN_RUNTIME_RUNS.fetch_add(1, Ordering::SeqCst);
    n * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_fn_inside_a_multi_thread_runtime() {
    assert_eq!(plain_in_runtime(100), 300);
    assert_eq!(plain_in_runtime(100), 300);
    assert_eq!(PLAIN_IN_RUNTIME_RUNS.load(Ordering::SeqCst), 1);
    // From a spawned task too.
    let value = tokio::spawn(async { plain_in_runtime(100) }).await.unwrap();
    assert_eq!(value, 300);
    assert_eq!(PLAIN_IN_RUNTIME_RUNS.load(Ordering::SeqCst), 1);
}

static CURRENT_THREAD_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(l1 = false)]
fn plain_in_current_thread(n: u64) -> u64 {
    CURRENT_THREAD_RUNS.fetch_add(1, Ordering::SeqCst);
    n + 1
}

#[tokio::test(flavor = "current_thread")]
async fn plain_fn_inside_a_current_thread_runtime_blocks_briefly_and_caches() {
    let started = std::time::Instant::now();
    assert_eq!(plain_in_current_thread(1), 2);
    assert_eq!(plain_in_current_thread(1), 2);
    assert_eq!(CURRENT_THREAD_RUNS.load(Ordering::SeqCst), 1);
    // Neither a panic nor a deadlock: a deadlock would show as the
    // operation timeout (1 s) on every call.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(plain_in_current_thread_stats().errors, 0);
}

static NESTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache]
fn outer(n: u64) -> u64 {
    NESTED_RUNS.fetch_add(1, Ordering::SeqCst);
    inner(n) + 1
}

#[cache]
fn inner(n: u64) -> u64 {
    n * 10
}

#[test]
fn plain_fn_calling_another_plain_cached_fn() {
    assert_eq!(outer(4), 41);
    assert_eq!(outer(4), 41);
    assert_eq!(NESTED_RUNS.load(Ordering::SeqCst), 1);
}

struct Repo {
    prefix: String,
    runs: AtomicUsize,
}

impl Repo {
    /// The result depends on `self`'s prefix, but `self` is skipped: the
    /// instances share entries (the first one's value wins).
    #[cache(namespace = "repo", skip(self))]
    async fn lookup(&self, id: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("{}{id}", self.prefix)
    }

    /// `self` joins the key only when the key says so.
    #[cache(namespace = "repo", key = format!("{}/{id}", self.prefix))]
    fn lookup_by_prefix(&self, id: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("{}{id}", self.prefix)
    }

    #[cache(namespace = "repo")]
    fn make(id: u64) -> Vec<u64> {
        vec![id; 2]
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_and_associated_functions() {
    let a = Repo {
        prefix: "a-".into(),
        runs: AtomicUsize::new(0),
    };
    let b = Repo {
        prefix: "b-".into(),
        runs: AtomicUsize::new(0),
    };
    assert_eq!(a.lookup(1).await, "a-1");
    assert_eq!(
        b.lookup(1).await,
        "a-1",
        "skip(self): self is not part of the key"
    );
    assert_eq!(b.runs.load(Ordering::SeqCst), 0);
    assert!(a.lookup_invalidate(1).await.unwrap());
    assert_eq!(b.lookup(1).await, "b-1");

    assert_eq!(a.lookup_by_prefix(2), "a-2");
    assert_eq!(b.lookup_by_prefix(2), "b-2", "the key includes the prefix");
    assert_eq!(a.lookup_by_prefix(2), "a-2");
    assert_eq!(a.runs.load(Ordering::SeqCst), 2);
    assert_eq!(Repo::make(3), vec![3, 3]);
    assert_eq!(Repo::make_stats().loads, 1);
    assert_eq!(Repo::lookup_stats().loads, 2);
}

static TENANT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A `Self` that is `Serialize` is part of the key.
#[derive(Clone, serde::Serialize)]
struct Tenant {
    name: String,
}

impl Tenant {
    #[cache(namespace = "tenant")]
    async fn greet(&self, id: u64) -> String {
        TENANT_RUNS.fetch_add(1, Ordering::SeqCst);
        format!("{}:{id}", self.name)
    }

    #[cache(namespace = "tenant")]
    fn into_label(self) -> String {
        TENANT_RUNS.fetch_add(1, Ordering::SeqCst);
        format!("label {}", self.name)
    }
}

#[tokio::test]
async fn self_is_part_of_the_key_when_it_is_serialize() {
    let a = Tenant { name: "a".into() };
    let b = Tenant { name: "b".into() };
    assert_eq!(a.greet(1).await, "a:1");
    assert_eq!(
        b.greet(1).await,
        "b:1",
        "instances with other state keep apart"
    );
    assert_eq!(a.greet(1).await, "a:1");
    assert_eq!(TENANT_RUNS.load(Ordering::SeqCst), 2);
    assert!(b.greet_invalidate(1).await.unwrap());
    assert_eq!(a.clone().into_label(), "label a");
    assert_eq!(b.clone().into_label(), "label b");
    assert_eq!(a.into_label(), "label a");
    assert_eq!(Tenant::into_label_stats().l1_hits, 1);
}

static FLIGHT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache]
async fn slow(n: u64) -> u64 {
    FLIGHT_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_body_once() {
    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(slow(8))).collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 8);
    }
    assert_eq!(FLIGHT_RUNS.load(Ordering::SeqCst), 1);
}

fn faulty() -> Arc<FaultyBackend<MemoryBackend>> {
    static BACKEND: OnceLock<Arc<FaultyBackend<MemoryBackend>>> = OnceLock::new();
    BACKEND
        .get_or_init(|| Arc::new(FaultyBackend::new(MemoryBackend::new())))
        .clone()
}

static OUTAGE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(backend = faulty(), l1 = false)]
async fn through_outage(n: u64) -> u64 {
    OUTAGE_RUNS.fetch_add(1, Ordering::SeqCst);
    n * 2
}

#[tokio::test]
async fn backend_outage_runs_the_function_uncached() {
    assert_eq!(through_outage(1).await, 2);
    assert_eq!(through_outage(1).await, 2);
    assert_eq!(OUTAGE_RUNS.load(Ordering::SeqCst), 1);
    faulty().set_fault(Fault::Down);
    assert_eq!(through_outage(1).await, 2);
    assert_eq!(through_outage(5).await, 10);
    assert_eq!(OUTAGE_RUNS.load(Ordering::SeqCst), 3, "ran uncached");
    assert!(through_outage_stats().errors >= 2);
    faulty().set_fault(Fault::None);
}

/// A local `Result` alias must not confuse the generated code.
mod own_result {
    use cachekit::cache;

    type Result<T> = std::result::Result<T, String>;

    #[cache]
    pub(crate) async fn parse(text: String) -> Result<u32> {
        text.parse::<u32>().map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn local_result_alias() {
    assert_eq!(own_result::parse("12".into()).await, Ok(12));
    assert!(own_result::parse("x".into()).await.is_err());
}

mod clash_a {
    pub(crate) struct A;
    impl A {
        #[cachekit::cache]
        pub(crate) fn get(id: u64) -> String {
            format!("a{id}")
        }
    }
    pub(crate) struct B;
    impl B {
        #[cachekit::cache]
        pub(crate) fn get(id: u64) -> u64 {
            id
        }
    }
}

#[test]
fn same_name_in_one_namespace_runs_the_second_uncached() {
    assert_eq!(clash_a::A::get(1), "a1");
    assert_eq!(clash_a::B::get(1), 1, "not A's value");
    assert_eq!(clash_a::B::get(1), 1);
    assert_eq!(clash_a::A::get_stats().errors, 0);
    assert_eq!(clash_a::B::get_stats().errors, 2, "B runs uncached");
}

mod generic_impl {
    use std::marker::PhantomData;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct User {
        pub(crate) id: u64,
        pub(crate) name: String,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Admin {
        pub(crate) id: u64,
        pub(crate) name: String,
    }

    pub(crate) trait Load {
        fn load(id: u64) -> Self;
    }

    impl Load for User {
        fn load(id: u64) -> Self {
            User {
                id,
                name: "user".into(),
            }
        }
    }

    impl Load for Admin {
        fn load(id: u64) -> Self {
            Admin {
                id,
                name: "admin".into(),
            }
        }
    }

    pub(crate) struct Repo<T>(pub(crate) PhantomData<T>);

    impl<T: Load + Clone + Send + Sync + Serialize + DeserializeOwned + 'static> Repo<T> {
        #[cachekit::cache(skip(self))]
        pub(crate) fn get(&self, id: u64) -> T {
            T::load(id)
        }
    }
}

/// One `static` serves every instantiation of a generic `impl`: each `Self`
/// type gets its own state, and since their keys would clash, the second
/// type runs uncached instead of reading the first one's values.
#[test]
fn instantiations_of_a_generic_impl_never_share_values() {
    use generic_impl::{Admin, Repo, User};
    use std::marker::PhantomData;
    let users = Repo::<User>(PhantomData);
    let admins = Repo::<Admin>(PhantomData);
    assert_eq!(users.get(1).name, "user");
    assert_eq!(admins.get(1).name, "admin");
    assert_eq!(admins.get(1).name, "admin");
    assert_eq!(users.get(1).name, "user");
    assert_eq!(Repo::<User>::get_stats().l1_hits, 1);
    assert_eq!(Repo::<Admin>::get_stats().errors, 2, "runs uncached");
}

static BOXED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The error type of a plain fn need not be `Send`: only stored values
/// cross to the cache's runtime.
#[cache(l1 = false)]
fn parse_port(text: String) -> Result<u16, Box<dyn std::error::Error>> {
    BOXED_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(text.parse::<u16>()?)
}

#[test]
fn plain_fn_with_a_non_send_error() {
    assert_eq!(parse_port("8080".into()).unwrap(), 8080);
    assert_eq!(parse_port("8080".into()).unwrap(), 8080);
    assert!(parse_port("x".into()).is_err());
    assert!(parse_port("x".into()).is_err());
    assert_eq!(
        BOXED_RUNS.load(Ordering::SeqCst),
        3,
        "Ok cached, errors not"
    );
    assert!(parse_port_refresh("x".into()).is_err());
    assert_eq!(parse_port_refresh("8080".into()).unwrap(), 8080);
}

/// An envelope of format version 3 around `body`, with a valid checksum and
/// any shape: what a buggy or hostile writer could store.
fn forged(body: &[u8]) -> cachekit::backend::Bytes {
    let mut envelope = b"CK\x03\x00".to_vec();
    envelope.extend_from_slice(&0_u64.to_le_bytes()); // no expiry
    envelope.extend_from_slice(&0_u32.to_le_bytes()); // checksum, below
    envelope.extend_from_slice(&0_u64.to_le_bytes()); // shape
    envelope.push(0); // no shape marks
    envelope.extend_from_slice(body);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&envelope[2..12]), &envelope[16..]);
    envelope[12..16].copy_from_slice(&crc.to_le_bytes());
    envelope.into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Nest {
    Leaf,
    Node(Box<Nest>),
}

static NEST_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(namespace = "hostile", backend = shared_backend(), l1 = false)]
async fn nest(n: u8) -> Nest {
    NEST_RUNS.fetch_add(1, Ordering::SeqCst);
    let _ = n;
    Nest::Leaf
}

#[tokio::test]
async fn a_deeply_nested_entry_is_a_miss_in_a_cached_function_and_on_a_plain_thread() {
    // 200,000 levels of `Node` under a valid checksum.
    let mut body = vec![1_u8; 200_000];
    body.push(0);
    let key = cachekit::key::for_call("nest", &(7_u8,)).unwrap();
    let wire = cachekit::key::build("hostile", &key, 250);
    shared_backend()
        .set(&wire, forged(&body), None)
        .await
        .unwrap();
    assert_eq!(nest(7).await, Nest::Leaf, "the body ran");
    assert_eq!(NEST_RUNS.load(Ordering::SeqCst), 1);

    shared_backend()
        .set(&wire, forged(&body), None)
        .await
        .unwrap();
    let cache = cachekit::Cache::builder()
        .shared_backend(shared_backend())
        .namespace("hostile")
        .without_l1()
        .config(cachekit::ConfigSource::defaults_only())
        .build()
        .unwrap();
    let read = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cache.get::<Nest>(&key))
    });
    assert_eq!(read.join().expect("no abort, no panic").unwrap(), None);
}

static LABEL_RUNS: AtomicUsize = AtomicUsize::new(0);

/// After a deploy that changed `fn label(n: u64) -> u64` into this.
#[cache(namespace = "deploy", backend = shared_backend(), l1 = false)]
async fn label(n: u64) -> String {
    LABEL_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("label {n}")
}

#[tokio::test]
async fn an_entry_of_the_old_return_type_is_a_miss_after_a_deploy() {
    let cache = cachekit::Cache::builder()
        .shared_backend(shared_backend())
        .namespace("deploy")
        .config(cachekit::ConfigSource::defaults_only())
        .build()
        .unwrap();
    let key = cachekit::key::for_call("label", &(3_u64,)).unwrap();
    cache.set(&key, &1_700_000_000_000_u64, None).await.unwrap();
    assert_eq!(label(3).await, "label 3");
    assert_eq!(label(3).await, "label 3");
    assert_eq!(LABEL_RUNS.load(Ordering::SeqCst), 1, "then stored anew");
}

static VERSIONED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(namespace = "versioned", version = 2, backend = shared_backend(), l1 = false)]
async fn versioned(n: u64) -> u64 {
    VERSIONED_RUNS.fetch_add(1, Ordering::SeqCst);
    n * 10
}

#[tokio::test]
async fn a_version_breaks_with_entries_written_before() {
    // What version 1 (no version) stored, with the same type.
    let old = cachekit::Cache::builder()
        .shared_backend(shared_backend())
        .namespace("versioned")
        .config(cachekit::ConfigSource::defaults_only())
        .build()
        .unwrap();
    let key = cachekit::key::for_call("versioned", &(4_u64,)).unwrap();
    old.set(&key, &999_u64, None).await.unwrap();
    assert_eq!(versioned(4).await, 40, "the old entry is not read");
    assert_eq!(versioned(4).await, 40);
    assert_eq!(VERSIONED_RUNS.load(Ordering::SeqCst), 1);
    assert!(
        shared_backend()
            .exists(&format!("versioned@v2:{key}"))
            .await
            .unwrap()
    );
}
