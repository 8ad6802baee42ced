//! The boot-time physical frame allocator.
//!
//! It starts from the firmware's usable RAM, cuts out everything that is in use (the low
//! megabyte, the kernel image, the boot information block, every module), and hands out
//! 4 KiB frames. After boot the remaining ranges become Untyped memory; the kernel itself
//! allocates no more.

use heapless::Vec;

/// The frame size.
pub const FRAME_SIZE: u64 = 4096;
/// How many disjoint free ranges the allocator tracks.
pub const MAX_RANGES: usize = 64;

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl PhysRange {
    /// A range from start and length (saturating at the top of the address space).
    pub const fn new(start: u64, len: u64) -> Self {
        Self { start, end: start.saturating_add(len) }
    }

    /// Its length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether the two ranges share a byte.
    pub const fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The frames fully inside the range.
    const fn frame_aligned(self) -> Self {
        let start = self.start.saturating_add(FRAME_SIZE - 1) & !(FRAME_SIZE - 1);
        let end = self.end & !(FRAME_SIZE - 1);
        Self { start, end }
    }
}

/// Why the allocator could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The memory map is more fragmented than [`MAX_RANGES`] ranges.
    TooFragmented,
}

/// Hands out free frames.
#[derive(Debug)]
pub struct FrameAllocator {
    free: Vec<PhysRange, MAX_RANGES>,
    handed_out: u64,
}

impl FrameAllocator {
    /// Build from usable RAM minus reserved ranges, keeping only memory below `limit`
    /// (what the kernel can address through its physical-memory window).
    pub fn new(
        usable: impl IntoIterator<Item = PhysRange>,
        reserved: &[PhysRange],
        limit: u64,
    ) -> Result<Self, Error> {
        let mut free: Vec<PhysRange, MAX_RANGES> = Vec::new();
        for r in usable {
            let r = PhysRange { start: r.start, end: r.end.min(limit) }.frame_aligned();
            if !r.is_empty() {
                free.push(r).map_err(|_| Error::TooFragmented)?;
            }
        }
        // Firmware maps may list overlapping usable ranges: merge them, so no frame is
        // counted (and handed out) twice.
        free.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<PhysRange, MAX_RANGES> = Vec::new();
        for r in free {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r).map_err(|_| Error::TooFragmented)?,
            }
        }
        let mut free = merged;
        for cut in reserved {
            let mut next: Vec<PhysRange, MAX_RANGES> = Vec::new();
            for r in &free {
                if !r.overlaps(cut) {
                    next.push(*r).map_err(|_| Error::TooFragmented)?;
                    continue;
                }
                for piece in [
                    PhysRange { start: r.start, end: cut.start.min(r.end) },
                    PhysRange { start: cut.end.max(r.start), end: r.end },
                ] {
                    let piece = piece.frame_aligned();
                    if !piece.is_empty() {
                        next.push(piece).map_err(|_| Error::TooFragmented)?;
                    }
                }
            }
            free = next;
        }
        free.sort_unstable_by_key(|r| r.start);
        Ok(Self { free, handed_out: 0 })
    }

    /// One free frame's physical address, or `None` when memory is exhausted.
    pub fn alloc(&mut self) -> Option<u64> {
        let first = self.free.first_mut()?;
        let frame = first.start;
        first.start += FRAME_SIZE;
        if first.is_empty() {
            self.free.remove(0);
        }
        self.handed_out += 1;
        Some(frame)
    }

    /// A naturally aligned block of `2^bits` bytes (at least one frame), or `None`.
    /// The range it comes from is split around it.
    pub fn alloc_block(&mut self, bits: u8) -> Option<u64> {
        let size = 1u64.checked_shl(u32::from(bits))?.max(FRAME_SIZE);
        let (i, start) = self.free.iter().enumerate().find_map(|(i, r)| {
            let start = r.start.checked_add(size - 1)? & !(size - 1);
            (start.checked_add(size)? <= r.end).then_some((i, start))
        })?;
        let r = *self.free.get(i)?;
        let after = PhysRange { start: start + size, end: r.end };
        let before = PhysRange { start: r.start, end: start };
        // Replace the range by what is left on either side (at most one more entry).
        if !after.is_empty() && self.free.is_full() && !before.is_empty() {
            return None;
        }
        self.free.remove(i);
        for piece in [after, before] {
            if !piece.is_empty() {
                let _ = self.free.insert(i, piece);
            }
        }
        self.handed_out += size / FRAME_SIZE;
        Some(start)
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(PhysRange::len).sum()
    }

    /// Frames handed out so far.
    pub fn frames_handed_out(&self) -> u64 {
        self.handed_out
    }

    /// The free ranges, lowest first.
    pub fn free_ranges(&self) -> &[PhysRange] {
        &self.free
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, FrameAllocator, PhysRange, FRAME_SIZE, MAX_RANGES};

    const MIB: u64 = 1 << 20;

    #[test]
    fn reserved_ranges_are_never_handed_out() {
        let usable = [PhysRange::new(0, 0x9f000), PhysRange::new(MIB, 15 * MIB)];
        let reserved = [
            PhysRange::new(0, MIB),            // low memory
            PhysRange::new(MIB, 2 * MIB),      // kernel
            PhysRange::new(4 * MIB + 10, 100), // boot info, unaligned
            PhysRange::new(5 * MIB, 3 * MIB),  // modules
        ];
        let mut fa = FrameAllocator::new(usable, &reserved, u64::MAX).unwrap();
        let expected = 16 * MIB - 3 * MIB - FRAME_SIZE - 3 * MIB;
        assert_eq!(fa.free_bytes(), expected);
        let mut n = 0;
        while let Some(f) = fa.alloc() {
            assert_eq!(f % FRAME_SIZE, 0);
            for r in &reserved {
                assert!(!PhysRange::new(f, FRAME_SIZE).overlaps(r), "{f:#x} is reserved");
            }
            n += 1;
        }
        assert_eq!(n * FRAME_SIZE, expected);
        assert_eq!(fa.frames_handed_out(), n);
        assert_eq!(fa.free_bytes(), 0);
    }

    #[test]
    fn aligned_blocks_split_their_range() {
        let mut fa =
            FrameAllocator::new([PhysRange::new(MIB + 0x3000, 3 * MIB)], &[], u64::MAX).unwrap();
        let total = fa.free_bytes();
        let b = fa.alloc_block(20).unwrap();
        assert_eq!(b, 2 * MIB);
        assert_eq!(fa.free_bytes(), total - MIB);
        assert_eq!(
            fa.free_ranges(),
            &[
                PhysRange { start: MIB + 0x3000, end: 2 * MIB },
                PhysRange { start: 3 * MIB, end: 4 * MIB + 0x3000 }
            ]
        );
        assert_eq!(fa.alloc_block(22), None);
        assert_eq!(fa.alloc(), Some(MIB + 0x3000));
    }

    #[test]
    fn overlapping_usable_ranges_never_hand_out_a_frame_twice() {
        let usable = [PhysRange::new(MIB, 0x3000), PhysRange::new(MIB + 0x1000, 0x3000)];
        let mut fa = FrameAllocator::new(usable, &[], u64::MAX).unwrap();
        let frames: Vec<u64> = std::iter::from_fn(|| fa.alloc()).collect();
        assert_eq!(frames, [MIB, MIB + 0x1000, MIB + 0x2000, MIB + 0x3000]);
    }

    #[test]
    fn memory_above_the_limit_is_ignored() {
        let fa = FrameAllocator::new([PhysRange::new(MIB, 8 * MIB)], &[], 4 * MIB).unwrap();
        assert_eq!(fa.free_ranges(), &[PhysRange { start: MIB, end: 4 * MIB }]);
    }

    #[test]
    fn fragmentation_is_an_error_not_a_crash() {
        let usable: Vec<_> =
            (0..=MAX_RANGES as u64).map(|i| PhysRange::new(i * 2 * MIB, MIB)).collect();
        assert_eq!(FrameAllocator::new(usable, &[], u64::MAX).unwrap_err(), Error::TooFragmented);
    }
}
