//! The deterministic generator of the fuzz tests: seeded, so that every
//! run tries the same inputs, and a failure replays.

/// A xorshift generator.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 for `n` = 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One random change to `bytes`: a bit flipped, a byte set to one of
    /// `markers`, noise inserted, bytes removed, repeated, or taken from
    /// `other`, or the tail cut.
    pub(crate) fn mutate(&mut self, bytes: &mut Vec<u8>, other: &[u8], markers: &[u8]) {
        let at = self.below(bytes.len() + 1);
        match self.below(7) {
            0 if at < bytes.len() => bytes[at] ^= 1 << self.below(8),
            1 if at < bytes.len() => bytes[at] = markers[self.below(markers.len())],
            2 => {
                let noise: Vec<u8> = (0..1 + self.below(8)).map(|_| self.next() as u8).collect();
                bytes.splice(at..at, noise);
            }
            3 => {
                let end = (at + 1 + self.below(8)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + self.below(16)).min(bytes.len());
                let copy = bytes[at.min(end)..end].to_vec();
                bytes.splice(at..at, copy);
            }
            5 => {
                let from = self.below(other.len() + 1);
                let end = (from + 1 + self.below(32)).min(other.len());
                bytes.splice(at..at, other[from.min(end)..end].iter().copied());
            }
            _ => bytes.truncate(at),
        }
    }
}
