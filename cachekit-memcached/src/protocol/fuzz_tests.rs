//! The reply parser against a million random and mutated replies: streams
//! of valid meta-protocol replies (`VA`, `HD`, `EN`, `NF`, `NS`, `EX`, `MN`,
//! `SERVER_ERROR`, `CLIENT_ERROR`, `ERROR`) with bits flipped, bytes and
//! tokens inserted or deleted, lengths made huge, lines cut or run past the
//! line limit, and plain garbage.
//!
//! For every input: nothing panics; each call of `parse` gives a reply, asks
//! for more bytes (consuming none) or fails; a reply consumes exactly its own
//! bytes from the front, and a value is the bytes its line announced; a
//! reply whose echo is the one expected passes the echo check; and the
//! stream fed in pieces, as a socket delivers it, parses as it does whole
//! (small inputs fed one byte at a time, so split at every byte boundary).
//! Valid streams parse into exactly their replies, whatever the split.
//!
//! The generator is seeded: every run tries the same inputs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::*;

/// Inputs tried.
const INPUTS: usize = 1_000_000;

/// The run stops here even short of [`INPUTS`] (a guard against a hang;
/// about 15 times the usual run time on a loaded CI machine).
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// What one call of [`parse`] gave.
#[derive(Debug, PartialEq)]
enum Outcome {
    Reply(Response, Echo),
    More,
    Failed(ProtocolError),
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid replies of every kind.
fn seeds() -> Vec<Vec<u8>> {
    let replies: [&[u8]; 20] = [
        b"VA 5 O1 kfoo\r\nhello\r\n",
        b"VA 0\r\n\r\n",
        b"VA 4 f0 O4294967295 ka:b\r\na\r\nb\r\n",
        b"VA 3 b kZm9v O9\r\nbar\r\n",
        b"VA 2 O3 kns:f:2a\r\n\xff\x00\r\n",
        b"HD\r\n",
        b"HD O2 kfoo\r\n",
        b"HD t-1 O3 kns:f:2a\r\n",
        b"HD t2592000 O4 kx\r\n",
        b"EN\r\n",
        b"EN O0 kfoo\r\n",
        b"NF O6 kfoo\r\n",
        b"NS O7 kfoo\r\n",
        b"EX O8 kfoo\r\n",
        b"MN\r\n",
        b"SERVER_ERROR out of memory storing object\r\n",
        b"SERVER_ERROR object too large for cache\r\n",
        b"CLIENT_ERROR bad data chunk\r\n",
        b"CLIENT_ERROR \xc3\x28 not utf-8\r\n",
        b"ERROR\r\n",
    ];
    replies.iter().map(|reply| reply.to_vec()).collect()
}

/// A value long enough to be shared with the read buffer rather than copied.
fn shared_value_reply() -> Vec<u8> {
    let mut reply = format!("VA {SHARE_MIN} O5 kbig\r\n").into_bytes();
    reply.extend(std::iter::repeat_n(0x5a, SHARE_MIN));
    reply.extend_from_slice(b"\r\n");
    reply
}

/// Asserts that `response` is what the bytes it consumed, `consumed`, say.
fn check_reply(consumed: &[u8], response: &Response, echo: Echo) {
    let line_end = consumed
        .iter()
        .position(|&b| b == b'\n')
        .expect("a reply has a line");
    let header = line_end + 1;
    let code: &[u8] = match response {
        Response::Value(value) => {
            assert_eq!(
                &consumed[header..header + value.len()],
                &value[..],
                "the value"
            );
            assert_eq!(&consumed[header + value.len()..], b"\r\n", "then its end");
            b"VA "
        }
        Response::Stored | Response::Ttl(_) => b"HD",
        Response::Miss if consumed.starts_with(b"NF") => b"NF",
        Response::Miss => b"EN",
        Response::NotStored => b"NS",
        Response::Exists => b"EX",
        Response::Noop => b"MN",
        Response::ServerError(_) => b"SERVER_ERROR",
        Response::ClientError(_) => b"CLIENT_ERROR",
        Response::Error => b"ERROR",
    };
    if !matches!(response, Response::Value(_)) {
        assert_eq!(consumed.len(), header, "one line");
    }
    assert!(consumed.starts_with(code), "{response:?} from {consumed:?}");
    // The echo the request expected passes; another request's fails unless
    // the reply is an error line.
    let expected = Echo {
        base64: false,
        ..echo
    };
    assert_eq!(expected.check(response, echo), Ok(()));
    let other = Echo {
        opaque: Some(echo.opaque.map_or(0, |o| o.wrapping_add(1))),
        ..expected
    };
    if let Err(mismatch) = other.check(response, echo) {
        assert!(mismatch.to_string().contains("answers another request"));
    }
}

/// Parses `stream` as one buffer until `parse` asks for more bytes or fails.
fn parse_whole(stream: &[u8]) -> Vec<Outcome> {
    let mut buf = BytesMut::from(stream);
    let mut outcomes = Vec::new();
    // Every reply consumes at least one byte: at most one per byte.
    for _ in 0..=stream.len() {
        let before = buf.len();
        let outcome = match parse(&mut buf) {
            Ok(Some((response, echo))) => {
                let at = stream.len() - before;
                check_reply(&stream[at..at + before - buf.len()], &response, echo);
                Outcome::Reply(response, echo)
            }
            Ok(None) => Outcome::More,
            Err(error) => {
                assert!(!error.to_string().is_empty());
                Outcome::Failed(error)
            }
        };
        // Only ever consumed from the front, and only by a reply.
        assert_eq!(&buf[..], &stream[stream.len() - buf.len()..], "the rest");
        let done = !matches!(outcome, Outcome::Reply(..));
        assert_eq!(buf.len() < before, !done, "{outcome:?} consumed");
        outcomes.push(outcome);
        if done {
            return outcomes;
        }
    }
    unreachable!("more replies than bytes");
}

/// Parses `stream` fed in pieces that end at `cuts` (ascending), as a
/// connection does: after each piece, every reply complete so far.
fn parse_fed(stream: &[u8], cuts: &[usize]) -> Vec<Outcome> {
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    let mut fed = 0;
    for &cut in cuts.iter().chain([&stream.len()]) {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        for _ in 0..=buf.len() {
            match parse(&mut buf) {
                Ok(Some((response, echo))) => outcomes.push(Outcome::Reply(response, echo)),
                Ok(None) => break,
                Err(error) => {
                    outcomes.push(Outcome::Failed(error));
                    return outcomes;
                }
            }
        }
    }
    outcomes.push(Outcome::More);
    outcomes
}

/// One random change to `bytes`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    const BYTES: [u8; 12] = [
        b'\r', b'\n', b' ', b'0', b'9', b'-', b'O', b'k', b't', b'b', 0, 0xff,
    ];
    const TOKENS: [&[u8]; 21] = [
        b" O",
        b" O1",
        b" O4294967296",
        b" O-1",
        b" k",
        b" kx",
        b" t",
        b" t-1",
        b" t-2",
        b" b",
        b" ",
        b"\r\n",
        b"\r",
        b"\n",
        b"99999999999999999999",
        b"1073741824",
        b"1073741825",
        b"18446744073709551616",
        b"VA ",
        b"SERVER_ERROR ",
        b"\xc3\x28",
    ];
    let at = rng.below(bytes.len() + 1);
    match rng.below(32) {
        0..=10 if at == bytes.len() => bytes.push(BYTES[rng.below(BYTES.len())]),
        0..=5 => bytes[at] ^= 1 << rng.below(8),
        6..=10 => bytes[at] = BYTES[rng.below(BYTES.len())],
        11..=16 => {
            bytes.splice(at..at, TOKENS[rng.below(TOKENS.len())].iter().copied());
        }
        17..=20 => {
            let end = (at + 1 + rng.below(8)).min(bytes.len());
            bytes.drain(at.min(end)..end);
        }
        21..=23 => bytes.truncate(at),
        24..=26 => {
            let end = (at + 1 + rng.below(24)).min(bytes.len());
            let copy = bytes[at.min(end)..end].to_vec();
            bytes.splice(at..at, copy);
        }
        // A number (a `VA` length, most often) made huge or random.
        27..=30 => {
            if let Some(start) = bytes.iter().position(u8::is_ascii_digit) {
                let end = bytes[start..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(bytes.len(), |len| start + len);
                let number = match rng.below(3) {
                    0 => u64::MAX.to_string(),
                    1 => (MAX_VALUE + rng.below(3)).to_string(),
                    _ => rng.below(64).to_string(),
                };
                bytes.splice(start..end, number.into_bytes());
            }
        }
        // A run without a line end, around the line limit.
        _ => {
            let run = MAX_LINE - 8 + rng.below(16);
            bytes.splice(at..at, std::iter::repeat_n(b'A', run));
        }
    }
}

/// A stream to parse: garbage, or one to three replies (rarely a long
/// value) with no to four changes; and whether it is still valid.
fn input(rng: &mut Rng, seeds: &[Vec<u8>], shared: &[u8]) -> (Vec<u8>, bool) {
    if rng.below(8) == 0 {
        let alphabet = b"VAHDENFSXMRTOCLI_ t-0123456789kb\r\n\xff";
        let len = rng.below(120);
        let garbage = (0..len).map(|_| match rng.below(4) {
            0 => rng.next() as u8,
            _ => alphabet[rng.below(alphabet.len())],
        });
        return (garbage.collect(), false);
    }
    let mut stream = Vec::new();
    for _ in 0..1 + rng.below(3) {
        match rng.below(256) {
            0 => stream.extend_from_slice(shared),
            _ => stream.extend_from_slice(&seeds[rng.below(seeds.len())]),
        }
    }
    let changes = rng.below(5);
    for _ in 0..changes {
        mutate(rng, &mut stream);
    }
    (stream, changes == 0)
}

/// Where a stream is cut: after every byte when it is short (one time in
/// four), else at one to three random places.
fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    if len <= 256 && rng.below(4) == 0 {
        return (1..len).collect();
    }
    let mut cuts: Vec<usize> = (0..1 + rng.below(3)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Parses `stream` whole and fed in pieces ending at `cuts`, checking both.
fn check(stream: &[u8], cuts: &[usize], valid: bool) {
    let whole = parse_whole(stream);
    assert_eq!(parse_fed(stream, cuts), whole, "fed in pieces, as whole");
    if valid {
        assert_eq!(whole.last(), Some(&Outcome::More), "valid replies");
        assert!(!whole.iter().any(|o| matches!(o, Outcome::Failed(_))));
    }
}

#[test]
fn a_million_random_and_mutated_replies_parse_or_fail_without_panic() {
    let seeds = seeds();
    let shared = shared_value_reply();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut failures = 0;
    let mut first_failure = None;
    let mut fed_byte_by_byte = 0;
    let started = Instant::now();
    let mut tried = 0;
    while tried < INPUTS && started.elapsed() < TIME_LIMIT {
        let (stream, valid) = input(&mut rng, &seeds, &shared);
        let cuts = cuts(&mut rng, stream.len());
        fed_byte_by_byte += usize::from(stream.len() > 1 && cuts.len() == stream.len() - 1);
        if catch_unwind(AssertUnwindSafe(|| check(&stream, &cuts, valid))).is_err() {
            failures += 1;
            first_failure.get_or_insert_with(|| {
                format!("{:?} cut at {cuts:?}", String::from_utf8_lossy(&stream))
            });
        }
        tried += 1;
    }
    println!(
        "memcached replies: {tried} inputs ({fed_byte_by_byte} fed a byte at a time) in {:.1?}",
        started.elapsed()
    );
    assert_eq!(
        failures, 0,
        "inputs that failed; the first: {first_failure:?}"
    );
}

#[test]
fn every_pair_of_replies_split_at_every_byte_parses_as_whole() {
    let seeds = seeds();
    let mut streams = 0;
    for first in &seeds {
        for second in &seeds {
            let stream = [first.as_slice(), second].concat();
            let whole = parse_whole(&stream);
            assert_eq!(whole.len(), 3, "two replies, then more is asked for");
            for cut in 0..=stream.len() {
                assert_eq!(parse_fed(&stream, &[cut]), whole, "cut at {cut}");
                streams += 1;
            }
        }
    }
    println!("memcached replies: {streams} splits of valid pairs");
}
