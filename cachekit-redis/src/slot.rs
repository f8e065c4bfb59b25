//! Redis Cluster hash slots: which of the 16,384 slots a key belongs to,
//! and a hash tag for each slot, so that a key of the backend's own (a lock's
//! fencing counter) can be put in the slot of a given key.

use std::sync::OnceLock;

/// How many hash slots a Redis Cluster has.
pub(crate) const SLOTS: u16 = 16_384;

/// The slot of `key`, by Redis's rule: CRC16 (XMODEM) of the key's hash
/// tag, modulo 16,384. The hash tag is what lies between the first `{` and
/// the first `}` after it, if that is not empty; otherwise the whole key.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The hash tag of `key`, if it has one.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    let tag = &key[open + 1..open + 1 + close];
    (!tag.is_empty()).then_some(tag)
}

/// A short hash tag, without braces, whose slot is `slot` (`f` and a
/// number): the first such of `f0`, `f1`, ..., found once for every slot.
pub(crate) fn tag_for_slot(slot: u16) -> String {
    static TAGS: OnceLock<Box<[u32]>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![u32::MAX; usize::from(SLOTS)];
        let mut left = usize::from(SLOTS);
        // About 16,384 x ln(16,384), some 160,000 CRCs of a few bytes: a
        // few milliseconds, once per process.
        let mut n: u32 = 0;
        while left > 0 {
            let slot = usize::from(crc16(format!("f{n}").as_bytes()) % SLOTS);
            if tags[slot] == u32::MAX {
                tags[slot] = n;
                left -= 1;
            }
            n += 1;
        }
        tags.into_boxed_slice()
    });
    format!("f{}", tags[usize::from(slot % SLOTS)])
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis Cluster uses.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn slots_match_redis_rule() {
        // Redis's documented examples and the client's own computation.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        for key in [
            "foo",
            "bar",
            "{user1000}.following",
            "{user1000}.followers",
            "foo{}{bar}",
            "foo{{bar}}zap",
            "foo{bar}{zap}",
            "a}b",
            "}{",
            "{",
            "}",
            "x{}y",
            "myapp:k:1",
        ] {
            assert_eq!(
                Slot::new(slot_of(key.as_bytes())),
                Some(Slot::for_key(key)),
                "{key}"
            );
        }
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
    }

    #[test]
    fn every_slot_has_a_tag_in_that_slot() {
        for slot in 0..SLOTS {
            let tag = tag_for_slot(slot);
            assert_eq!(slot_of(format!("x{{{tag}}} y").as_bytes()), slot);
        }
    }
}
