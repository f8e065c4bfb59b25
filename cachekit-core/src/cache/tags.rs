//! Tags: `invalidate_tag("user:42")` drops every entry written with that
//! tag, on every backend, without scanning keys.
//!
//! Each tag has a generation in the backend (a random 64-bit number under
//! the tag's own key, `namespace!tag:tag`, with no TTL). An entry records
//! the generations of its tags when it is written; a read fetches the entry
//! and the tags' generations in one `get_many` (one round trip per server),
//! and an entry whose generations are not the current ones is a miss.
//! Invalidating a tag writes a new random generation.
//!
//! - A tag with no generation yet gets one when an entry is first written
//!   with it, so an entry never records "none": if a generation is lost (an
//!   eviction, a flush), entries of the tag read as misses rather than
//!   coming back.
//! - Two processes creating a tag's generation at once both write one; the
//!   entry written under the one that lost reads as a miss (never as a
//!   wrong value).
//! - Tagged entries are never kept in L1: a copy there could not see an
//!   invalidation made by another process. `Cache::get` cannot check the
//!   tags of an entry it does not know, so it reads a tagged entry as a miss.
//! - Tags belong to the cache's namespace (whatever its version).

use std::time::SystemTime;

use bytes::Bytes;

use super::Cache;
use crate::{Error, Result, codec, key, trace};

impl Cache {
    /// Drops every entry written with `tag` in this cache's namespace, in
    /// every process sharing the backend: their next reads are misses. One
    /// write, whatever the number of entries.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        let span = self.span("invalidate_tag", &self.tag_key(tag));
        trace::traced_result(span, async { self.new_generation(tag).await.map(drop) }).await
    }

    /// The backend key of `tag`'s generation.
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        key::tag_key(&self.inner.tag_prefix.build(tag))
    }

    /// Writes a new random generation of `tag`; returns it.
    async fn new_generation(&self, tag: &str) -> Result<u64> {
        let tag_key = self.tag_key(tag);
        let generation = rand::random::<u64>();
        let bytes = Bytes::copy_from_slice(&generation.to_le_bytes());
        self.call("set", &tag_key, true, || {
            self.raw().set(&tag_key, bytes.clone(), None)
        })
        .await?;
        Ok(generation)
    }

    /// The entry under `key` if it was written under the current
    /// generations of `tags` (in their order), and those generations
    /// (`None` for a tag that has none yet). One `get_many`.
    pub(super) async fn read_tagged(
        &self,
        key: &str,
        tags: &[String],
    ) -> Result<(Option<codec::Opened>, Vec<Option<u64>>)> {
        let tag_keys: Vec<String> = tags.iter().map(|tag| self.tag_key(tag)).collect();
        let mut keys = Vec::with_capacity(tags.len() + 1);
        keys.push(key);
        keys.extend(tag_keys.iter().map(String::as_str));
        let mut found = self
            .call("get_many", key, true, || self.raw().get_many(&keys))
            .await?
            .into_iter();
        let entry = found.next().flatten();
        let generations: Vec<Option<u64>> = found.map(|bytes| bytes.and_then(generation)).collect();
        let Some(entry) = entry else {
            return Ok((None, generations));
        };
        self.inner.counters.bytes_read.add(entry.len() as u64);
        let opened = match self.opened(key, entry)? {
            Some(opened) => opened,
            None => return Ok((None, generations)),
        };
        let current = generations.len() == opened.tags.len()
            && generations
                .iter()
                .zip(&opened.tags)
                .all(|(now, then)| *now == Some(*then));
        Ok((current.then_some(opened), generations))
    }

    /// The entry under `key`, if it was written with `tags` under their
    /// current generations ([`Cache::read`] for none).
    pub(super) async fn read_with(
        &self,
        key: &str,
        tags: &[String],
    ) -> Result<Option<codec::Opened>> {
        if tags.is_empty() {
            return self.read(key).await;
        }
        Ok(self.read_tagged(key, tags).await?.0)
    }

    /// The current generations of `tags`, each missing one made now: for
    /// a value about to be loaded under them.
    pub(crate) async fn current_generations(&self, key: &str, tags: &[String]) -> Result<Vec<u64>> {
        let (_, known) = self.read_tagged(key, tags).await?;
        self.generations(tags, &known).await
    }

    /// The generations of `tags` (`known`, as [`Cache::read_tagged`] found
    /// them), each missing one made now.
    pub(super) async fn generations(
        &self,
        tags: &[String],
        known: &[Option<u64>],
    ) -> Result<Vec<u64>> {
        let mut generations = Vec::with_capacity(tags.len());
        for (index, tag) in tags.iter().enumerate() {
            match known.get(index).copied().flatten() {
                Some(generation) => generations.push(generation),
                None => generations.push(self.new_generation(tag).await?),
            }
        }
        Ok(generations)
    }

    /// Checks a call's tags: at most [`codec::MAX_TAGS`].
    pub(super) fn check_tags(tags: &[String]) -> Result<()> {
        if tags.len() > codec::MAX_TAGS {
            return Err(Error::Codec(format!(
                "{} tags, more than the {} an entry records",
                tags.len(),
                codec::MAX_TAGS
            )));
        }
        Ok(())
    }
}

/// Until when an L1 copy of an entry may live: `until`, or, for a tagged
/// entry, which is never kept in L1, a time already past.
pub(super) fn copy_deadline(tagged: bool, until: Option<SystemTime>) -> Option<SystemTime> {
    match tagged {
        true => Some(SystemTime::UNIX_EPOCH),
        false => until,
    }
}

/// A generation as stored: 8 bytes, little endian; anything else is none.
fn generation(bytes: Bytes) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.as_ref().try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_are_apart_from_data_and_lock_keys() {
        assert_eq!(key::tag_key("ns:x"), "ns!tag:x");
        assert_ne!(key::tag_key("ns:x"), key::lock_key("ns:x"));
        assert_eq!(
            generation(Bytes::from_static(&[1, 0, 0, 0, 0, 0, 0, 0])),
            Some(1)
        );
        assert_eq!(generation(Bytes::from_static(b"short")), None);
    }
}
