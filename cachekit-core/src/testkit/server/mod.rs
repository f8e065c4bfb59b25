//! Real `memcached` and `redis-server` processes on free loopback ports, a
//! [`RedisCluster`] of `redis-server` nodes, and a [`SilentServer`] that
//! accepts connections and never answers, for the tests of the backend
//! crates.
//!
//! The server programs (and `redis-cli`, which forms a cluster) must be
//! installed (`cargo xtask test` installs them).
//! A test that needs a missing one panics with the command that installs it:
//! tests are never skipped.

mod cluster;
mod kind;
mod port;
mod process;
mod scratch;
mod silent;

pub use cluster::RedisCluster;
pub use kind::ServerKind;
pub use process::ServerProcess;
pub use silent::SilentServer;

#[cfg(test)]
mod tests;
