//! Retyping untyped memory: where the next objects go and whether they fit.
//!
//! Objects are placed at the untyped's watermark, aligned to their own size, and never
//! overlap: the watermark only moves forward until a revoke deletes every object made
//! from the region and resets it.

/// Why a retype was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Zero objects, or a count whose size overflows.
    BadCount,
    /// The objects do not fit in what is left of the region.
    OutOfMemory,
}

/// Where `count` objects of `2^obj_bits` bytes go in an untyped region of `2^size_bits`
/// bytes at `base` whose first `free` bytes are used: `(first address, new free)`.
pub fn place(
    base: u64,
    size_bits: u8,
    free: u64,
    obj_bits: u8,
    count: u64,
) -> Result<(u64, u64), Error> {
    if count == 0 || obj_bits >= 64 || size_bits >= 64 {
        return Err(Error::BadCount);
    }
    let obj = 1u64 << obj_bits;
    let size = 1u64 << size_bits;
    if obj_bits > size_bits {
        return Err(Error::OutOfMemory);
    }
    let start = free.checked_add(obj - 1).ok_or(Error::OutOfMemory)? & !(obj - 1);
    let bytes = count.checked_mul(obj).ok_or(Error::BadCount)?;
    let end = start.checked_add(bytes).ok_or(Error::OutOfMemory)?;
    if end > size {
        return Err(Error::OutOfMemory);
    }
    Ok((base + start, end))
}

/// Split `[start, end)` into the largest naturally aligned power-of-two blocks (at least
/// `min_bits`, at most `max_bits`), as untyped capabilities must be.
pub fn blocks(start: u64, end: u64, min_bits: u8, max_bits: u8) -> impl Iterator<Item = (u64, u8)> {
    let mut at = start;
    core::iter::from_fn(move || loop {
        if at >= end {
            return None;
        }
        let align = if at == 0 { 63 } else { at.trailing_zeros().min(63) as u8 };
        let room = 63 - (end - at).leading_zeros().min(63) as u8;
        let bits = align.min(room).min(max_bits);
        if bits < min_bits {
            // Too small or misaligned for a block: skip to the next aligned address.
            at = (at | ((1u64 << min_bits) - 1)).checked_add(1)?;
            continue;
        }
        let block = (at, bits);
        at += 1u64 << bits;
        return Some(block);
    })
}

#[cfg(test)]
mod tests {
    use super::{blocks, place, Error};

    #[test]
    fn ranges_split_into_aligned_blocks() {
        let b: Vec<_> = blocks(0x10_3000, 0x20_0000, 12, 47).collect();
        assert_eq!(b.first(), Some(&(0x10_3000, 12)));
        let mut at = 0x10_3000;
        for (base, bits) in &b {
            assert_eq!(*base, at);
            assert_eq!(base % (1 << bits), 0);
            at += 1 << bits;
        }
        assert_eq!(at, 0x20_0000);
        assert_eq!(b.last(), Some(&(0x18_0000, 19)));
        let capped: Vec<_> = blocks(0, 1 << 30, 12, 24).collect();
        assert_eq!(capped.len(), 64);
        assert!(blocks(0x1800, 0x2800, 12, 47).next().is_none(), "no whole aligned page");
    }

    #[test]
    fn a_misaligned_start_skips_to_the_next_block_boundary_and_no_further() {
        let found: Vec<_> = blocks(0x800, 0x4000, 12, 20).collect();
        assert_eq!(found, [(0x1000, 12), (0x2000, 13)]);
    }

    #[test]
    fn objects_are_aligned_and_never_overlap() {
        let base = 0x40_0000;
        let (a, free) = place(base, 16, 0, 6, 3).unwrap();
        assert_eq!((a, free), (base, 192));
        let (b, free) = place(base, 16, free, 12, 1).unwrap();
        assert_eq!((b, free), (base + 4096, 8192), "aligned up to the object size");
        assert_eq!(place(base, 16, free, 12, 15), Err(Error::OutOfMemory));
        let (d, free) = place(base, 16, 8192, 12, 14).unwrap();
        assert_eq!((d, free), (base + 8192, 65536));
        assert_eq!(place(base, 16, free, 6, 1), Err(Error::OutOfMemory), "full");
        // One object may fill the whole region.
        assert_eq!(place(base, 16, 0, 16, 1), Ok((base, 65536)));
        assert_eq!(place(base, 16, 0, 17, 1), Err(Error::OutOfMemory));
    }

    #[test]
    fn hostile_arguments_are_errors() {
        assert_eq!(place(0, 20, 0, 12, 0), Err(Error::BadCount));
        assert_eq!(place(0, 20, 0, 12, u64::MAX), Err(Error::BadCount));
        assert_eq!(place(0, 20, 0, 21, 1), Err(Error::OutOfMemory));
        assert_eq!(place(0, 63, u64::MAX - 5, 12, 1), Err(Error::OutOfMemory));
        assert_eq!(place(0, 64, 0, 12, 1), Err(Error::BadCount));
    }
}
