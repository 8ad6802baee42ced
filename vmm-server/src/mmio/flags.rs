//! The results and arithmetic flags (CF, PF, AF, ZF, SF, OF) of the ALU instructions the
//! MMIO emulator performs, as the SDM defines them for each operand width.
//!
//! Pure functions of the operands, so every bit is tested against an independent
//! computation. AND, OR, XOR and TEST leave AF undefined; hardware is free to do anything
//! there, and this emulator clears it, as QEMU and Bochs do.

/// The flags by their SDM names (`protocols::x86` holds each bit once).
pub use protocols::x86::{
    RFLAGS_AF as AF, RFLAGS_CF as CF, RFLAGS_OF as OF, RFLAGS_PF as PF, RFLAGS_SF as SF,
    RFLAGS_ZF as ZF,
};
/// The six flags the ALU instructions write; the rest of RFLAGS is left alone.
pub const ARITHMETIC: u64 = CF | PF | AF | ZF | SF | OF;

/// An ALU operation with a memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    /// ADD: destination + source.
    Add,
    /// OR.
    Or,
    /// AND.
    And,
    /// SUB: destination - source.
    Sub,
    /// XOR.
    Xor,
    /// CMP: SUB that only sets flags.
    Cmp,
    /// TEST: AND that only sets flags.
    Test,
}

impl AluOp {
    /// Whether the result is written to the destination (not CMP and TEST).
    pub const fn writes(self) -> bool {
        !matches!(self, Self::Cmp | Self::Test)
    }

    /// `dest op source` on `width`-byte operands (1, 2, 4 or 8; higher bits of the inputs
    /// are ignored): the result, zero-extended, and the six arithmetic flags.
    pub const fn apply(self, dest: u64, source: u64, width: u8) -> (u64, u64) {
        let mask = mask(width);
        let (a, b) = (dest & mask, source & mask);
        match self {
            Self::Add => {
                let r = a.wrapping_add(b) & mask;
                let carry = r < a;
                (r, result_flags(r, width) | arith(a, b, r, width, carry, (a ^ r) & (b ^ r)))
            }
            Self::Sub | Self::Cmp => {
                let r = a.wrapping_sub(b) & mask;
                (r, result_flags(r, width) | arith(a, b, r, width, a < b, (a ^ b) & (a ^ r)))
            }
            Self::Or => logic(a | b, width),
            Self::And | Self::Test => logic(a & b, width),
            Self::Xor => logic(a ^ b, width),
        }
    }
}

/// All ones in the low `width` bytes.
pub const fn mask(width: u8) -> u64 {
    match width {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// The top bit of a `width`-byte value.
const fn sign(width: u8) -> u64 {
    (mask(width) >> 1).wrapping_add(1)
}

/// ZF, SF and PF of the result `r`.
const fn result_flags(r: u64, width: u8) -> u64 {
    let mut f = 0;
    if r == 0 {
        f |= ZF;
    }
    if r & sign(width) != 0 {
        f |= SF;
    }
    if (r as u8).count_ones() & 1 == 0 {
        f |= PF;
    }
    f
}

/// CF, AF and OF of an addition or subtraction `a, b -> r`; `overflow` has the top bit set
/// when the signed result overflowed.
const fn arith(a: u64, b: u64, r: u64, width: u8, carry: bool, overflow: u64) -> u64 {
    let mut f = 0;
    if carry {
        f |= CF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    if overflow & sign(width) != 0 {
        f |= OF;
    }
    f
}

/// A logical operation's result and flags: CF, OF (and AF) clear.
const fn logic(r: u64, width: u8) -> (u64, u64) {
    (r, result_flags(r, width))
}

/// `rflags` with its arithmetic flags replaced by `flags`.
pub const fn merge(rflags: u64, flags: u64) -> u64 {
    (rflags & !ARITHMETIC) | (flags & ARITHMETIC)
}

#[cfg(test)]
pub(super) mod tests {
    use super::{merge, AluOp, AF, ARITHMETIC, CF, OF, PF, SF, ZF};

    /// Known results, as a CPU computes them.
    #[test]
    fn known_values() {
        // 0xff + 1 (byte): zero, carry, half carry, even parity.
        assert_eq!(AluOp::Add.apply(0xff, 1, 1), (0, CF | PF | AF | ZF));
        // 0x7f + 1 (byte): signed overflow to 0x80.
        assert_eq!(AluOp::Add.apply(0x7f, 1, 1), (0x80, OF | SF | AF));
        // 0x7fff_ffff + 1 (dword).
        assert_eq!(AluOp::Add.apply(0x7fff_ffff, 1, 4), (0x8000_0000, OF | SF | AF | PF));
        // 0 - 1 (qword): borrow, all ones.
        assert_eq!(AluOp::Sub.apply(0, 1, 8), (u64::MAX, CF | SF | AF | PF));
        // 0x8000 - 1 (word): signed overflow.
        assert_eq!(AluOp::Sub.apply(0x8000, 1, 2), (0x7fff, OF | AF | PF));
        // cmp 5, 5: equal.
        assert_eq!(AluOp::Cmp.apply(5, 5, 4), (0, ZF | PF));
        // Inputs wider than the operand are cut: 0x1_0000_0001 + 0xffff_ffff (dword).
        assert_eq!(AluOp::Add.apply(0x1_0000_0001, 0xffff_ffff, 4), (0, CF | ZF | PF | AF));
        assert_eq!(AluOp::And.apply(0xf0, 0x0f, 1), (0, ZF | PF));
        assert_eq!(AluOp::Or.apply(0x8000, 1, 2), (0x8001, SF));
        assert_eq!(AluOp::Xor.apply(u64::MAX, 1, 8), (u64::MAX - 1, SF));
        assert_eq!(AluOp::Test.apply(0x03, 0x01, 1), (1, 0));
        assert!(AluOp::Add.writes() && !AluOp::Cmp.writes() && !AluOp::Test.writes());
        assert_eq!(merge(0x202 | CF | OF, ZF), 0x202 | ZF);
        assert_eq!(merge(0x246, ARITHMETIC), 0x202 | ARITHMETIC);
    }

    /// `op` computed through wider integers: the carry out of a wider sum, the signed
    /// result out of range (shared with the emulator's model test).
    pub(in crate::mmio) fn reference(op: AluOp, a: u64, b: u64, width: u8) -> (u64, u64) {
        let bits = u32::from(width) * 8;
        let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let (a, b) = (a & mask, b & mask);
        let signed = |v: u64| ((v << (64 - bits)) as i64 >> (64 - bits)) as i128;
        let (wide, swide) = match op {
            AluOp::Add => (i128::from(a) + i128::from(b), signed(a) + signed(b)),
            AluOp::Sub | AluOp::Cmp => (i128::from(a) - i128::from(b), signed(a) - signed(b)),
            AluOp::Or => (i128::from(a | b), 0),
            AluOp::And | AluOp::Test => (i128::from(a & b), 0),
            AluOp::Xor => (i128::from(a ^ b), 0),
        };
        let r = (wide as u64) & mask;
        let min = -(1i128 << (bits - 1));
        let max = (1i128 << (bits - 1)) - 1;
        let mut f = 0;
        f |= if wide < 0 || wide > i128::from(mask) { CF } else { 0 };
        f |= if swide < min || swide > max { OF } else { 0 };
        let arith = matches!(op, AluOp::Add | AluOp::Sub | AluOp::Cmp);
        let nibble = match op {
            AluOp::Add => (a & 0xf) + (b & 0xf) > 0xf,
            _ => (a & 0xf) < (b & 0xf),
        };
        f |= if arith && nibble { AF } else { 0 };
        f |= if r == 0 { ZF } else { 0 };
        f |= if r >> (bits - 1) & 1 == 1 { SF } else { 0 };
        f |= if (r & 0xff).count_ones().is_multiple_of(2) { PF } else { 0 };
        (r, f)
    }

    /// Every pair of bytes and a sample of wider pairs against [`reference`].
    #[test]
    fn matches_wide_arithmetic() {
        let ops = [AluOp::Add, AluOp::Or, AluOp::And, AluOp::Sub, AluOp::Xor, AluOp::Cmp];
        for op in ops {
            for a in 0..=0xffu64 {
                for b in 0..=0xffu64 {
                    assert_eq!(op.apply(a, b, 1), reference(op, a, b, 1), "{op:?} {a:#x} {b:#x}");
                }
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Edge values often: around zero and the sign boundaries.
            match seed % 5 {
                0 => seed >> (seed % 64),
                1 => (1u64 << (seed % 64)).wrapping_sub(seed >> 62),
                _ => seed,
            }
        };
        for _ in 0..200_000 {
            let (a, b) = (next(), next());
            for width in [2, 4, 8] {
                for op in ops {
                    let expect = reference(op, a, b, width);
                    assert_eq!(op.apply(a, b, width), expect, "{op:?} {a:#x} {b:#x} w{width}");
                }
            }
        }
    }
}
