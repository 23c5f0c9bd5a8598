//! A small deterministic generator (xorshift64*): the same seed gives the same run.

/// Xorshift64* state.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The byte at `offset` of the payload stream `stream` (content checks without storing the
/// payload).
pub fn pattern(stream: u64, offset: u64) -> u8 {
    let x = stream.wrapping_mul(0x100_0000_01B3) ^ offset.wrapping_mul(0x9E37_79B9);
    (x ^ (x >> 29) ^ (x >> 47)) as u8
}
