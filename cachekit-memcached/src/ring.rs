//! Rendezvous (highest random weight) placement of keys on servers.
//!
//! Each server scores a key with MurmurHash3 (x86, 32-bit, seed 0) of
//! `"host:port-key"`; the highest score wins, ties go to the larger server
//! name. This is exactly pymemcache's `HashClient` with its default
//! `RendezvousHash`, so Rust and Python services sharing one fleet place keys
//! on the same servers (given the same key, before any `key_prefix`, as
//! pymemcache hashes keys before prefixing them too).
//!
//! Removing a server moves only its keys; adding one to `n` moves about
//! `1/(n+1)` of them, all to the new server.
//!
//! MurmurHash3 is written here rather than taken from the `murmur3` crate:
//! that crate hashes an `io::Read`, which over the chained server name and
//! key is slow for something every cache operation runs
//! (docs/benchmarks.md).

/// Longest `server-key` input hashed on the stack; longer ones are rare
/// (server names are short, keys at most 250 bytes) and go to the heap.
const STACK_INPUT: usize = 512;

/// The score of `server` for `key`.
pub(crate) fn score(server: &str, key: &str) -> u32 {
    let len = server.len() + 1 + key.len();
    let mut stack = [0u8; STACK_INPUT];
    let mut heap = Vec::new();
    let input: &mut [u8] = if len <= STACK_INPUT {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    input[..server.len()].copy_from_slice(server.as_bytes());
    input[server.len()] = b'-';
    input[server.len() + 1..].copy_from_slice(key.as_bytes());
    murmur3_32(input, 0)
}

/// MurmurHash3, x86 32-bit variant, as published by Austin Appleby.
fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        h ^= mix(u32::from_le_bytes(block.try_into().expect("4 bytes")));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .rev()
            .fold(0u32, |k, &b| (k << 8) | u32::from(b));
        h ^= mix(k);
    }
    // The length is mixed in modulo 2^32, as in the reference.
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The index of the server in `servers` that owns `key`; `None` if empty.
pub(crate) fn owner<'a>(
    servers: impl IntoIterator<Item = (usize, &'a str)>,
    key: &str,
) -> Option<usize> {
    let mut best: Option<(u32, &str, usize)> = None;
    for (index, server) in servers {
        let score = score(server, key);
        let wins = match best {
            None => true,
            Some((top, name, _)) => score > top || (score == top && server > name),
        };
        if wins {
            best = Some((score, server, index));
        }
    }
    best.map(|(_, _, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: [&str; 3] = ["mc1:11211", "mc2:11211", "mc3:11211"];

    fn place<'a>(servers: &[&'a str], key: &str) -> &'a str {
        servers[owner(servers.iter().copied().enumerate(), key).unwrap()]
    }

    #[test]
    fn murmur3_matches_pymemcache_and_the_reference() {
        // Values printed by pymemcache 4.0.0's murmur3_32.
        assert_eq!(murmur3_32(b"hello", 0), 613_153_351);
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(score("mc1:11211", "user:1"), 1_042_388_813);
        // Reference test vectors (SMHasher), covering every tail length.
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"\xff\xff\xff\xff", 0), 0x7629_3b50);
        assert_eq!(murmur3_32(b"\x21\x43\x65\x87", 0), 0xf55b_516b);
        assert_eq!(murmur3_32(b"\x21\x43\x65", 0), 0x7e4a_8634);
        assert_eq!(murmur3_32(b"\x21\x43", 0), 0xa0f7_b07a);
        assert_eq!(murmur3_32(b"\x21", 0), 0x7266_1cf4);
        assert_eq!(murmur3_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
    }

    #[test]
    fn long_inputs_hash_like_short_ones() {
        let key = "k".repeat(600);
        let mut input = b"mc1:11211-".to_vec();
        input.extend_from_slice(key.as_bytes());
        assert_eq!(score("mc1:11211", &key), murmur3_32(&input, 0));
    }

    #[test]
    fn placements_match_pymemcache_hash_client() {
        // Printed by pymemcache 4.0.0: RendezvousHash(["mc1:11211", "mc2:11211", "mc3:11211"]).get_node(key).
        let long = "x".repeat(200);
        let known: [(&str, &str); 10] = [
            ("user:1", "mc2:11211"),
            ("user:2", "mc3:11211"),
            ("user:3", "mc2:11211"),
            ("cachekit:profile:42", "mc1:11211"),
            ("a", "mc2:11211"),
            ("ns:~c95e5a48e784bd89e908893ff0a228fc", "mc3:11211"),
            ("session:abc", "mc3:11211"),
            (&long, "mc1:11211"),
            ("k17", "mc3:11211"),
            ("orders:2026-11-26", "mc2:11211"),
        ];
        for (key, server) in known {
            assert_eq!(place(&FLEET, key), server, "key {key:?}");
        }
    }

    #[test]
    fn adding_a_fourth_server_moves_about_a_quarter_of_keys_all_to_it() {
        let four = ["mc1:11211", "mc2:11211", "mc3:11211", "mc4:11211"];
        let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i}")).collect();
        let mut moved = 0;
        for key in &keys {
            let (before, after) = (place(&FLEET, key), place(&four, key));
            if before != after {
                assert_eq!(after, "mc4:11211", "a key may only move to the new server");
                moved += 1;
            }
        }
        assert!((2_000..=3_000).contains(&moved), "moved {moved} of 10000");
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let two = ["mc1:11211", "mc3:11211"];
        for i in 0..10_000 {
            let key = format!("key:{i}");
            let before = place(&FLEET, &key);
            if before != "mc2:11211" {
                assert_eq!(
                    place(&two, &key),
                    before,
                    "key {key} moved though its server stayed"
                );
            }
        }
    }

    #[test]
    fn keys_spread_over_all_servers() {
        let mut counts = [0; 3];
        for i in 0..9_000 {
            let server = place(&FLEET, &format!("key:{i}"));
            counts[FLEET.iter().position(|s| *s == server).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (2_500..=3_500).contains(&c)),
            "{counts:?}"
        );
    }
}
