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

use std::io::Read;

/// The score of `server` for `key`.
pub(crate) fn score(server: &str, key: &str) -> u32 {
    let mut input = server.as_bytes().chain(&b"-"[..]).chain(key.as_bytes());
    murmur3::murmur3_32(&mut input, 0).expect("reading from memory cannot fail")
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
    fn murmur3_matches_pymemcache() {
        // Values printed by pymemcache 4.0.0's murmur3_32.
        assert_eq!(
            murmur3::murmur3_32(&mut &b"hello"[..], 0).unwrap(),
            613_153_351
        );
        assert_eq!(murmur3::murmur3_32(&mut &b""[..], 0).unwrap(), 0);
        assert_eq!(score("mc1:11211", "user:1"), 1_042_388_813);
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
