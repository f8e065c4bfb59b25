//! Locks with a lease on Redis: `SET key token NX PX lease` takes one, and
//! Lua scripts release or extend it only for the token that holds it, so a
//! holder whose lease ran out never frees or extends the next holder's.
//!
//! Each acquisition also takes a fencing value: the next value of a counter
//! (`INCR`) in the same script, so it is taken atomically with the lock.
//! A fencing value is greater than that of every earlier acquisition of the
//! same lock, so a resource that remembers the greatest it has seen can
//! refuse a former holder that still believes it holds the lock.
//!
//! # Where the counter lives
//!
//! A script may only touch keys of one cluster slot, so the counter must be
//! in the lock key's slot. There is one counter per slot, shared by every
//! lock in it: `<key_prefix>{<tag>} fence`, where `<tag>` is a short tag
//! (`f` and a number) whose slot is the lock key's slot, found by Redis's
//! hash-tag rule whatever braces the key holds (see [`crate::slot`]). The
//! counters are at most 16,384 small keys without expiry (never one per
//! lock), a shared counter still increases at every acquisition of each of
//! its locks, and the space in the name keeps it apart from every cache key
//! (which has none).

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use cachekit_core::backend::{Lock, LockToken, Result};
use redis::Script;

use crate::backend::RedisBackend;
use crate::slot::{slot_of, tag_for_slot};

/// Takes the lock and the next fencing value: `KEYS[1]` the lock, `KEYS[2]`
/// the slot's counter, `ARGV[1]` the token, `ARGV[2]` the lease in
/// milliseconds. Answers the fencing value (at least 1), or 0 if the lock
/// is held.
static TRY_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return redis.call('INCR', KEYS[2])
end
return 0
",
    )
});

/// Deletes the lock if `ARGV[1]` holds it: 1 if it did, else 0.
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Sets the lease of the lock to `ARGV[2]` milliseconds from now if
/// `ARGV[1]` holds it: 1 if it did, else 0.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// A lease in whole milliseconds, at least 1.
fn lease_millis(lease: Duration) -> u64 {
    crate::backend::ttl_millis(Some(lease)).unwrap_or(1)
}

impl RedisBackend {
    /// The fencing counter of the slot of the lock at `wire` (see the module).
    pub(crate) fn fence_key(&self, wire: &str) -> String {
        let tag = tag_for_slot(slot_of(wire.as_bytes()));
        format!("{}{{{tag}}} fence", self.inner.config.key_prefix)
    }
}

#[async_trait]
impl Lock for RedisBackend {
    /// Its token carries the acquisition's fencing value.
    async fn try_lock(&self, key: &str, lease: Duration) -> Result<Option<LockToken>> {
        let wire = self.wire_key(key)?;
        let fence_key = self.fence_key(&wire);
        let token = LockToken::random();
        let fence: u64 = self
            .call("try_lock", |mut connection| {
                let mut invocation = TRY_LOCK.key(&*wire);
                invocation
                    .key(&fence_key)
                    .arg(token.as_str())
                    .arg(lease_millis(lease));
                async move { invocation.invoke_async(&mut connection).await }
            })
            .await?;
        Ok((fence > 0).then(|| token.with_fence(fence)))
    }

    async fn extend(&self, key: &str, token: &LockToken, lease: Duration) -> Result<bool> {
        let wire = self.wire_key(key)?;
        let extended: u64 = self
            .call("extend", |mut connection| {
                let mut invocation = EXTEND.key(&*wire);
                invocation.arg(token.as_str()).arg(lease_millis(lease));
                async move { invocation.invoke_async(&mut connection).await }
            })
            .await?;
        Ok(extended == 1)
    }

    async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool> {
        let wire = self.wire_key(key)?;
        let released: u64 = self
            .call("unlock", |mut connection| {
                let mut invocation = UNLOCK.key(&*wire);
                invocation.arg(token.as_str());
                async move { invocation.invoke_async(&mut connection).await }
            })
            .await?;
        Ok(released == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisBackendConfig;

    #[test]
    fn the_fence_counter_is_in_the_slot_of_its_lock_whatever_the_braces() {
        for prefix in ["", "app:"] {
            let backend =
                RedisBackend::new(RedisBackendConfig::default().key_prefix(prefix)).unwrap();
            for key in [
                "plain",
                "{tag}rest",
                "a}b",
                "}{",
                "{",
                "}",
                "x{}y",
                "x{}{y}",
                "{a}{b}",
                "ns:f:{1}",
            ] {
                let wire = backend.wire_key(key).unwrap();
                let fence = backend.fence_key(&wire);
                assert_eq!(
                    slot_of(fence.as_bytes()),
                    slot_of(wire.as_bytes()),
                    "{wire}"
                );
                assert!(fence.starts_with(prefix), "{fence}");
                assert!(fence.contains(' '), "no cache key has a space: {fence}");
            }
        }
    }
}
