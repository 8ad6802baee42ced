//! A small seeded random generator for the fuzzers (the in-image syscall fuzzer and the
//! mutating VMM): a seed replays the same run.

/// xorshift64*: tiny, seedable, with no zero state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is mapped to a fixed odd one).
    pub const fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits().checked_rem(n).unwrap_or(0)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// An interesting 64-bit value: a boundary, a single bit, a small number, `near`
    /// with a bit flipped, or anything.
    pub fn value(&mut self, near: u64) -> u64 {
        match self.below(6) {
            0 => {
                let edges = [0, 1, u64::MAX, 0xffff_ffff, 0x8000_0000_0000_0000, 0xffff];
                edges.get(self.below(6) as usize).copied().unwrap_or(0)
            }
            1 => 1u64 << self.below(64),
            2 => self.below(0x1_0000),
            3 => near ^ (1u64 << self.below(64)),
            4 => near,
            _ => self.bits(),
        }
    }
}
