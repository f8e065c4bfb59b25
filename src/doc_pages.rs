//! The hand-written pages of `docs/` and the README, each included as the
//! documentation of an empty module so that `cargo test --doc` compiles
//! (and, unless marked `no_run`, runs) every Rust block in them. A page is
//! gated on the features its blocks use; `--all-features` checks them all.

/// The README's examples.
#[cfg(feature = "macros")]
#[doc = include_str!("../README.md")]
mod readme {}

/// docs/README.md, the index.
#[doc = include_str!("../docs/README.md")]
mod docs_readme {}

/// docs/getting-started.md: from the dependency to a tested cached function.
#[cfg(feature = "macros")]
#[doc = include_str!("../docs/getting-started.md")]
mod getting_started_md {}

/// docs/guide.md: the layered backend and the testing scope.
#[cfg(feature = "memcached")]
#[doc = include_str!("../docs/guide.md")]
mod guide_md {}

/// docs/capabilities.md: checking capabilities and matching `Unsupported`.
#[cfg(feature = "memcached")]
#[doc = include_str!("../docs/capabilities.md")]
mod capabilities_md {}

/// docs/backends.md, generated (no Rust blocks: any the generator adds is checked).
#[doc = include_str!("../docs/backends.md")]
mod backends_md {}

/// docs/configuration.md, generated (no Rust blocks: any the generator adds is checked).
#[doc = include_str!("../docs/configuration.md")]
mod configuration_md {}

/// docs/writing-a-backend.md: the factory and the conformance binary.
#[doc = include_str!("../docs/writing-a-backend.md")]
mod writing_a_backend_md {}

/// docs/backends/memory.md.
#[doc = include_str!("../docs/backends/memory.md")]
mod memory_md {}

/// docs/backends/memcached.md.
#[cfg(feature = "memcached")]
#[doc = include_str!("../docs/backends/memcached.md")]
mod memcached_md {}

/// docs/backends/redis.md.
#[cfg(feature = "redis")]
#[doc = include_str!("../docs/backends/redis.md")]
mod redis_md {}

/// docs/backends/file.md.
#[cfg(feature = "file")]
#[doc = include_str!("../docs/backends/file.md")]
mod file_md {}

/// The readiness probe of docs/health.md.
#[cfg(feature = "memcached")]
#[doc = include_str!("../docs/health.md")]
mod health_md {}

/// The snapshots and the Prometheus setup of docs/observability.md.
#[cfg(feature = "metrics")]
#[doc = include_str!("../docs/observability.md")]
mod observability_md {}

/// docs/reliability.md (no Rust blocks yet: any added is checked).
#[doc = include_str!("../docs/reliability.md")]
mod reliability_md {}

/// docs/benchmarks.md (no Rust blocks yet: any added is checked).
#[doc = include_str!("../docs/benchmarks.md")]
mod benchmarks_md {}

/// docs/interop.md: sharing entries with Python services, and encryption.
#[cfg(feature = "macros")]
#[doc = include_str!("../docs/interop.md")]
mod interop_md {}
