//! Self-describing values, and the check that finds a torn or foreign one.

use crate::child::child_role;

/// The check the other tests rely on refuses what they must find: a
/// value cut anywhere, a flipped byte, another key's value.
#[test]
fn the_value_check_refuses_torn_and_foreign_values() {
    if child_role().is_some() {
        return;
    }
    let value = make_value("k", 3, 9, 200 << 10);
    assert_eq!(verify("k", &value), Ok((3, 9)));
    for cut in (0..value.len()).step_by(997) {
        assert!(verify("k", &value[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = value.clone();
    flipped[150 << 10] ^= 1;
    assert!(verify("k", &flipped).is_err(), "a flipped byte");
    assert!(verify("other", &value).is_err(), "another key's value");
}

/// A value that says what it is: a text header (key, writer, sequence
/// number, payload length, checksum of the payload) and a line feed, then
/// a payload, pseudo-random from the writer and the sequence number.
pub(crate) fn make_value(key: &str, writer: u64, seq: u64, len: usize) -> Vec<u8> {
    let payload = payload(writer, seq, len);
    let mut value = format!("{key}|{writer}|{seq}|{len}|{:08x}\n", checksum(&payload)).into_bytes();
    value.extend_from_slice(&payload);
    value
}

/// Checks a value read under `key`: its writer and sequence number, or
/// what is wrong with it.
pub(crate) fn verify(key: &str, value: &[u8]) -> Result<(u64, u64), String> {
    let newline = value
        .iter()
        .take(256)
        .position(|&b| b == b'\n')
        .ok_or_else(|| format!("no header in {} bytes", value.len()))?;
    let header = std::str::from_utf8(&value[..newline])
        .map_err(|_| "a header that is not text".to_owned())?;
    let fields: Vec<&str> = header.split('|').collect();
    let [named, writer, seq, len, sum] = fields[..] else {
        return Err(format!("a malformed header {header:?}"));
    };
    if named != key {
        return Err(format!("the value of {named:?}, read under {key:?}"));
    }
    let number = |field: &str| -> Result<u64, String> {
        field
            .parse()
            .map_err(|_| format!("a malformed header {header:?}"))
    };
    let (writer, seq, len) = (number(writer)?, number(seq)?, number(len)? as usize);
    let sum = u32::from_str_radix(sum, 16).map_err(|_| format!("a malformed header {header:?}"))?;
    let got = &value[newline + 1..];
    if got.len() != len {
        return Err(format!(
            "{header:?}: a payload of {} bytes, not {len}",
            got.len()
        ));
    }
    if checksum(got) != sum {
        return Err(format!(
            "{header:?}: the payload does not match its checksum"
        ));
    }
    if got != payload(writer, seq, len) {
        return Err(format!("{header:?}: not the payload its writer wrote"));
    }
    Ok((writer, seq))
}

/// `len` pseudo-random bytes from `writer` and `seq`: a block of up to
/// 64 KiB, repeated (so that an 8 MiB payload is quick to make and to
/// check in a debug build).
pub(crate) fn payload(writer: u64, seq: u64, len: usize) -> Vec<u8> {
    const BLOCK: usize = 64 << 10;
    let mut state = writer.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq;
    let mut block = Vec::with_capacity(BLOCK + 8);
    while block.len() < len.min(BLOCK) {
        block.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    block.truncate(len.min(BLOCK));
    let mut bytes = block.repeat(len.div_ceil(BLOCK).max(1));
    bytes.truncate(len);
    bytes
}

/// SplitMix64: the next pseudo-random number of `state`.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The checksum of a payload: CRC-32C.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

// ---------------------------------------------------------------------------
// Child processes.
