//! cachekit: caching for Rust services with pluggable backends.
//!
//! Results live in process, in Memcached, in Redis or in a local directory,
//! chosen by cargo features and configuration instead of code changes:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachekit::Result<()> {
//! use std::time::Duration;
//!
//! // No backend named: the process default, then the environment
//! // (`CACHEKIT_BACKEND`, `CACHEKIT_MEMCACHED_SERVERS`, ...), else in-process memory.
//! let cache = cachekit::Cache::builder().namespace("docs").build()?;
//! let answer = cache
//!     .get_or_insert_with("answer", Some(Duration::from_secs(60)), || async { 6 * 7 })
//!     .await;
//! assert_eq!(answer, 42);
//! # Ok(())
//! # }
//! ```
//!
//! ## Feature flags
//!
//! The in-process [`MemoryBackend`] is always available; each other
//! backend is a feature ([`backends`]).
//!
#![doc = document_features::document_features!()]
//!
//! What you call lives at the root: [`#[cache]`](macro@cache) and
//! [`Cache`] with its [builder](CacheBuilder), their settings
//! ([`L1Config`], [`ReliabilityConfig`], [`ConfigSource`]), the process
//! default backend ([`set_default_backend`]), [`health`] for readiness
//! probes (docs/health.md) and [`testing`] for tests.
//! Backends are in [`backends`]. To write a backend of your own, implement
//! [`backend::Backend`] with what the [`backend`] module gathers.

/// Caches a function's results (feature `macros`).
///
/// ```
/// use cachekit::cache;
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Profile { id: u64 }
///
/// #[cache(ttl = 300, namespace = "users")]
/// async fn profile(user_id: u64) -> Profile {
///     Profile { id: user_id } // the slow part: runs once per user for 5 minutes
/// }
///
/// #[cache(ttl = "1h")]
/// fn primes_below(n: u64) -> Vec<u64> {
///     (2..n).filter(|i| (2..*i).all(|d| i % d != 0)).collect()
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(profile(7).await.id, 7);
/// assert_eq!(primes_below(10), [2, 3, 5, 7]);
/// assert_eq!(primes_below(10), [2, 3, 5, 7]); // from the cache
/// assert_eq!(primes_below_stats().loads, 1);
/// # }
/// ```
///
/// Results go to the backend the process resolves (an
/// explicit `backend = ...`, else [`set_default_backend`], else the
/// environment such as `CACHEKIT_MEMCACHED_SERVERS`, else in-process memory),
/// through the same path as [`Cache::try_get_or_insert_with`]: concurrent
/// misses run the body once (single-flight, and the backend's lock when it
/// has one), and a backend outage runs the body uncached instead of failing.
///
/// Backend trouble goes through the backend's reliability layer (see
/// [`ReliabilityLayer`]): one circuit breaker for every cached function over a
/// backend. Tests can re-point every cached function at a backend of their
/// choice with [`testing::scoped_backend`].
///
/// Call [`init`] at startup: a broken configuration is then an error there.
/// Otherwise the first call logs it at ERROR (and at most once a minute
/// after), the function runs uncached (concurrent calls still once),
/// `name_invalidate` returns the error, and the cache is built again after
/// a back-off.
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `ttl = 300`, `ttl = "5m"` | lifetime in seconds, or with units `s`, `m`, `h`, `d` (`"1h30m"`); `0` is no expiry; default: the `default_ttl` setting |
/// | `ttl_jitter = 10` | spreads each TTL by up to 10% either way (0 to 50), so that results stored together do not expire together; default: the `ttl_jitter` setting (0) |
/// | `namespace = "users"` | first part of every key (letters, digits, `_-./`); default: the `namespace` setting, then the module path |
/// | `backend = expr` | any expression giving a backend, an `Arc` of one, or a `Result` of either; evaluated once, at the first call |
/// | `key = expr` | replaces the arguments in the key; anything `Display` (`key = format!("sku:{sku}")`) |
/// | `skip(a, b)` | arguments left out of the key (a pool, a client, a logger); `skip(self)` for a method whose result does not depend on `self` |
/// | `version = 2` | a version of what is stored (default 0): entries written under another version are never read |
/// | `cache_none = false` | for `-> Option<T>`: `None` is not stored (it is by default) |
/// | `none_ttl = "30s"` | for `-> Option<T>`: `None` is stored for this long (more than 0), a value for `ttl`: a negative answer is looked up again sooner |
/// | `err_ttl = "10s"` | for `-> Result<T, E>`: `Err` is stored too, for this long (more than 0), so a failing source is not called by every caller; `E` is then `Serialize + DeserializeOwned` (and `Clone` with L1) |
/// | `stale = "1m"` | after `ttl`, a result is still returned for this long (more than 0) while one background refresh runs the body; the backend keeps it for `ttl` plus `stale`. Needs owned arguments (`String`, not `&str`; `self: Arc<Self>`, not `&self`): the refresh outlives the call. An `async fn`'s refresh is a tokio task; a plain `fn`'s runs on the blocking pool of the cache's runtime (on a miss, its body still runs on the caller's thread) |
/// | `early_refresh`, `early_refresh = 2.0` | refreshes a hot result in the background before its TTL ends, with a probability that rises as the end nears, scaled by how long the body took (XFetch; the number is its beta, 1.0 when bare); the same needs as `stale` |
/// | `tags = ["user:{id}"]` | tags of each result, format strings over the arguments (at most 31): `Cache::invalidate_tag("user:42")` on a cache in the function's namespace makes every result tagged with it a miss, in every process. Tagged results are read with their tags' generations (one `get_many`) and not kept in L1. Implies `invalidate_all` |
/// | `invalidate_all` | every result carries the function's own tag, and `name_invalidate_all()` invalidates it: every stored result of the function, in every process, with one write. Not kept in L1, as `tags` |
/// | `batch` | for `async fn f(ids: Vec<K>) -> HashMap<K, V>` (or `BTreeMap`): each key's value is an entry of its own (the key of a call with that key alone); a call reads them all with one `get_many`, runs the body once with the keys that missed, and stores each value it returned (a key it leaves out is absent, not stored). Other arguments must be `skip`ped; companions `name_invalidate(ids)` and `name_stats()`; not kept in L1 |
/// | `l1 = false` | results are not kept in process: every call reads the backend |
/// | `l1_capacity = 1000` | the most results kept in process for this function (at least 1); default: the `l1_max_entries` setting |
///
/// # Keys
///
/// A call's key is `namespace:function:args`. `args` stands for the key
/// encoding ([`key::args`]: bincode 2's bytes, with maps'
/// entries sorted so that a `HashMap` gives one key) of the arguments, in
/// order, without the skipped ones (for a method, `self` first: see below):
/// its hex when it is at most 15 bytes
/// (`users:profile:2a` for `profile(42)` with an `id: u64`), else the hex of
/// 128 bits of BLAKE3 over it (32 digits), so keys stay short, and distinct
/// arguments get distinct keys (the hashed ones up to BLAKE3's collision
/// resistance). Without `namespace = ...`, the first part is the `namespace`
/// setting (`CACHEKIT_NAMESPACE`, default `cachekit`) and the module path
/// follows: `cachekit:my_crate.users:profile:2a`. The key is the same in
/// every process and build of one cachekit version, so services sharing a
/// backend share entries; a version that changes the key format says so in
/// its release notes. Arguments must be `serde::Serialize`.
///
/// A method's `self` is part of the key when `Self: Serialize`, so that
/// instances with different state never share entries; otherwise it is a
/// compile error, on `self`, that says to derive `Serialize`, to leave `self`
/// out with `skip(self)` (when the result does not depend on its state), or
/// to give the key yourself (`key = format!("{}/{id}", self.tenant)`).
///
/// `version = N` puts `@vN` after the namespace (`users@v2:profile:2a`):
/// raise it when what the function returns changes meaning without
/// changing type. A change of type needs none: an entry written by another
/// type (or with its struct fields in another order) is a miss, never
/// wrong data.
///
/// Two cached functions with the same name in one namespace (methods of two
/// types in one module, or a method of a generic type used with two types)
/// would share keys: cachekit notices at the second one's first call, logs
/// an error and runs it uncached (`name_invalidate` returns the error). Give one a `namespace`, or for a generic
/// type a `key` that includes the type
/// (`key = format!("{}/{id}", std::any::type_name::<T>())`).
///
/// # What is stored
///
/// The return type must be `Serialize + DeserializeOwned`. A
/// `Result<T, E>` stores only `Ok` values (an error reaches this caller only;
/// `E` needs no serde). An `Option<T>` stores `None` too, unless
/// `cache_none = false`. The function sees its own return type, so `?`,
/// `return` and a local `Result` alias work as usual.
///
/// Results are also kept in process, in the function's own L1 (at most
/// `l1_capacity` entries, else the `l1_max_entries` setting, and
/// `l1_max_bytes`; `l1_max_entries = 0` turns every function's off), never
/// past the expiry of the entry this process read or wrote; an
/// invalidation by another process reaches this one's copy when it
/// expires, within `l1_ttl`. A hit there costs one serialization of the
/// arguments, one map read and a clone of the value, so the stored type
/// must also be `Clone + Send + Sync + 'static`; for one that is not, write
/// `l1 = false`.
///
/// # Companions
///
/// Next to `fn name(args)` the attribute writes, with the same visibility:
///
/// - `name_invalidate(args) -> cachekit::Result<bool>`: removes the entry of
///   these arguments (same arguments as the function, skipped ones too);
/// - `name_refresh(args) -> R`: the bypass: runs the body whatever is cached
///   and stores the result for the next callers;
/// - `name_stats() -> CacheStats`: L1 hits, backend hits, misses, calls
///   that shared another's load, loads and errors since the first call
///   (see [`CacheStats`]).
///
/// They are `async` when the function is, and methods when it is one. So
/// `#[cache]` cannot go on a method of a trait `impl` (the companions are not
/// members of the trait): cache a helper that the trait method calls.
///
/// A cached body that calls its own function with the same arguments (or
/// two functions that call each other with the same arguments) waits for
/// itself: the single-flight wait has no timeout.
///
/// # Plain functions and runtimes
///
/// A plain `fn` works from any thread. Its body always runs on the calling
/// thread; the cache work runs on one small runtime shared by all plain
/// cached functions (thread `cachekit-blocking`), which the caller waits for:
/// blocking outside a runtime, inside [`tokio::task::block_in_place`] on a
/// multi-thread runtime, and blocking the thread on a current-thread runtime
/// for the round trip (no panic, no deadlock: the work runs elsewhere and
/// every operation has a timeout; if async code on that runtime opened the
/// backend connection, the first such call waits out the timeout and runs
/// uncached, see `docs/guide.md`). An L1 hit needs no runtime at all. Only
/// the stored part of the result crosses threads, so it must be `Send`;
/// an error type need not be.
///
/// # Misuse
///
/// Generic functions, `impl Trait` arguments, pattern arguments, functions
/// returning nothing, unknown options, `skip(..)` of an argument that does
/// not exist, a negative or malformed `ttl` or `version`, and arguments (or
/// a `self`) that are not `Serialize` are compile errors that point at the
/// token and say how to fix it.
///
/// The generated code names this crate by the name it has in your
/// `Cargo.toml`, so renaming the dependency works.
///
/// [`tokio::task::block_in_place`]: https://docs.rs/tokio/latest/tokio/task/fn.block_in_place.html
#[cfg(feature = "macros")]
pub use cachekit_macros::cache;

pub use cachekit_core::{
    Backend, BackendHealth, BackendStats, BreakerState, Cache, CacheBuilder, CacheStats,
    Capabilities, Capability, CircuitOpen, ConfigOrigin, ConfigSource, DomainHealth, DomainState,
    Error, EventStats, Health, HealthReport, KeyTtl, L1Config, L1Stats, LockGuard, LockToken,
    MemoryBackend, NamedStats, ReliabilityConfig, ReliabilityLayer, Result, Revalidate, Stats,
    backend, clear_default_backend, encryption, health, init, interop, key, set_default_backend,
    stats, testing,
};

/// The backends, each behind its cargo feature. Naming one whose feature is
/// off fails to compile with a note naming the feature
/// (`the item is gated behind the `memcached` feature`).
pub mod backends {
    /// The in-process backend, always available.
    pub use cachekit_core::MemoryBackend;

    /// Memcached (feature `memcached`).
    #[cfg(feature = "memcached")]
    #[doc(inline)]
    pub use cachekit_memcached as memcached;

    /// Redis (feature `redis`).
    #[cfg(feature = "redis")]
    #[doc(inline)]
    pub use cachekit_redis as redis;

    /// A local directory (feature `file`).
    #[cfg(feature = "file")]
    #[doc(inline)]
    pub use cachekit_file as file;
}

/// Every Rust block of the README and of docs/, compiled as doctests.
#[cfg(doctest)]
mod doc_pages;

/// Paths the code `#[cache]` generates relies on; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use cachekit_core::__private::{
        CacheAll, CacheOk, CacheOption, CacheResult, CacheSome, CachedFn, FnSpec, IntoBackend,
        WithL1, WithoutL1, check_l1_value,
    };
}

/// Backends whose feature is off are registered without a constructor, so
/// that selecting one by configuration is an error naming the feature.
mod disabled_backends {
    #[cfg(not(feature = "memcached"))]
    inventory::submit! {
        cachekit_core::backend::BackendFactory {
            name: "memcached",
            feature: "memcached",
            selecting_vars: &["CACHEKIT_MEMCACHED_SERVERS"],
            build: None,
        }
    }

    #[cfg(not(feature = "redis"))]
    inventory::submit! {
        cachekit_core::backend::BackendFactory {
            name: "redis",
            feature: "redis",
            selecting_vars: &["CACHEKIT_REDIS_URL", "CACHEKIT_REDIS_CLUSTER_NODES"],
            build: None,
        }
    }

    #[cfg(not(feature = "file"))]
    inventory::submit! {
        cachekit_core::backend::BackendFactory {
            name: "file",
            feature: "file",
            selecting_vars: &["CACHEKIT_FILE_CACHE_DIR"],
            build: None,
        }
    }
}
