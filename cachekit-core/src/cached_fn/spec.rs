//! What `#[cache]` records about a cached function at compile time.

use std::time::Duration;

/// What `#[cache]` records about a function at compile time.
#[derive(Debug, Clone, Copy)]
pub struct FnSpec {
    /// `module_path!()` where the function is defined.
    pub module: &'static str,
    /// The function's name, the second part of its keys.
    pub name: &'static str,
    /// The namespace given in the attribute; `None` for the module path.
    pub namespace: Option<&'static str>,
    /// The TTL given in the attribute; `None` for the configured default.
    pub ttl: Option<Duration>,
    /// The version given in the attribute (0: none); see
    /// [`CacheBuilder::version`](crate::CacheBuilder::version).
    pub version: u32,
    /// Which expansion of the attribute this is (its place and a hash of
    /// the item's tokens). The function and its companions (`_invalidate`,
    /// `_refresh`, `_stats`) each declare a [`CachedFn`](super::CachedFn); the ones of one
    /// expansion share their state.
    pub site: &'static str,
    /// The most entries the function's L1 holds, given in the attribute
    /// (`l1_capacity = N`); `None` for the `l1_max_entries` setting.
    pub l1_capacity: Option<usize>,
    /// The spread of its TTLs in percent, given in the attribute
    /// (`ttl_jitter = N`); `None` for the `ttl_jitter` setting.
    pub ttl_jitter: Option<u32>,
    /// How long a `None` result is stored, given in the attribute
    /// (`none_ttl = ...`); `None` for the function's TTL.
    pub none_ttl: Option<Duration>,
    /// How long an `Err` result is stored, given in the attribute
    /// (`err_ttl = ...`); `None`: errors are not stored.
    pub err_ttl: Option<Duration>,
    /// How long a result is served stale past its TTL while refreshed in
    /// the background (`stale = ...`); zero for none.
    pub stale: Duration,
    /// Early refresh's beta (`early_refresh`, 1.0 when bare); 0 for none.
    pub early_refresh: f64,
    /// Whether its results carry the function's own tag, for
    /// `_invalidate_all` (`invalidate_all`, or `tags = [...]`).
    pub invalidate_all: bool,
    /// The interop operation (`interop = "get_user"`): keys and values as
    /// cachekit-py's interop mode writes them; `None`: cachekit's own.
    pub interop: Option<&'static str>,
    /// Whether its entries are encrypted whatever `encryption.enabled`
    /// says (`encrypt`).
    pub encrypt: bool,
}
