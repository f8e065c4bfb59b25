//! What reading a hostile entry costs in memory: never what its bytes
//! claim, and for an entry of another type, not the rest of the entry read
//! as this one. Measured by the process's peak resident memory (`VmHWM`),
//! so this binary holds this one test.

#![cfg(target_os = "linux")]

use cachekit_core::__private::codec;
use cachekit_core::backend::Bytes;
use serde::{Deserialize, Serialize};

/// A kibibyte of payload in memory, from one byte (its variant's index) on
/// the wire.
#[derive(Debug, Serialize, Deserialize)]
#[allow(dead_code, clippy::large_enum_variant)] // large on purpose
enum Event {
    Small,
    Big(Vec<u8>, [[u64; 32]; 4]),
}

/// A node of 1 KiB with children, for nested collections.
#[derive(Debug, Serialize, Deserialize)]
#[allow(dead_code)]
struct Tree {
    children: Vec<Tree>,
    blob: [[u64; 32]; 4],
}

/// The process's peak resident memory so far, in bytes.
fn peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// An envelope of format version 3 (16-byte header, still read) around
/// `body` with a valid checksum and no shape marks.
fn forged(body: &[u8]) -> Bytes {
    let mut envelope = b"CK\x03\x00".to_vec();
    envelope.extend_from_slice(&[0; 12]);
    envelope.extend_from_slice(&0_u64.to_le_bytes());
    envelope.push(0);
    envelope.extend_from_slice(body);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&envelope[2..12]), &envelope[16..]);
    envelope[12..16].copy_from_slice(&crc.to_le_bytes());
    let envelope: Bytes = envelope.into();
    assert!(codec::open(envelope.clone()).is_ok(), "a valid envelope");
    envelope
}

/// The growth of the peak while `read` runs, in bytes.
fn growth(read: impl FnOnce()) -> u64 {
    let before = peak();
    read();
    peak().saturating_sub(before)
}

#[test]
fn hostile_entries_cost_little_memory() {
    const LIMIT: u64 = 64 << 20;

    // A mebibyte of zeros written as `Vec<u8>` and read, after a deploy, as
    // `Vec<Event>`: every byte is a valid `Event::Small`, of 1 KiB in memory.
    // Read to its end, it would take a gibibyte; it stops at the first mark.
    let written = codec::encode(&vec![0_u8; 1 << 20], None).unwrap();
    let grew = growth(|| {
        let error = codec::decode::<Vec<Event>>(written).unwrap_err();
        assert!(error.to_string().contains("another type"), "{error}");
    });
    assert!(
        grew < LIMIT,
        "a Vec<u8> read as Vec<Event> grew the peak by {grew} bytes"
    );

    // Nested collections each declaring 8,192 elements of 1 KiB, with one
    // each: reserved as declared, 128 levels would take 128 MiB before the
    // depth limit. Padding makes the payload long enough for the declarations.
    let mut body = Vec::new();
    for _ in 0..200 {
        body.extend_from_slice(&[252]);
        body.extend_from_slice(&8_192_u32.to_le_bytes());
    }
    body.resize(1 << 20, 0);
    let grew = growth(|| {
        assert!(codec::decode::<Tree>(forged(&body)).is_err());
    });
    assert!(
        grew < LIMIT,
        "nested declarations grew the peak by {grew} bytes"
    );
}
