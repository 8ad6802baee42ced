//! Fuzzes `kernel::frame_alloc::FrameAllocator`: construction from a firmware memory map
//! minus reserved ranges, then a bounded run of allocations.
//!
//! Invariants: construction fails only with `TooFragmented`; the free ranges are sorted,
//! disjoint, frame-aligned and non-empty; the initial free size equals an independent
//! interval-arithmetic model (frames fully inside usable RAM below the limit that touch no
//! reserved byte); every frame handed out is aligned, unique, inside usable RAM, below the
//! limit and outside every reserved range; `free_bytes + handed_out * 4096` stays equal to
//! the initial free size; and `alloc` returns `None` only when nothing is free.
//!
//! Usable ranges may overlap, as a buggy or hostile memory map's do: no frame may be
//! handed out twice all the same.
#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use kernel::frame_alloc::{Error, FrameAllocator, PhysRange, FRAME_SIZE};
use libfuzzer_sys::fuzz_target;

/// An address: raw, or a few frames from an interesting base plus a byte offset, so that
/// ranges meet, overlap and straddle frame boundaries often.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Raw(u64),
    Near { base: u8, frames: u8, offset: i16 },
}

impl Addr {
    fn get(self) -> u64 {
        match self {
            Self::Raw(a) => a,
            Self::Near { base, frames, offset } => {
                const BASES: [u64; 6] =
                    [0, 0x9_f000, 0x10_0000, 0x1_0000_0000, u64::MAX - 0xf_ffff, 1 << 52];
                let b = BASES[usize::from(base) % BASES.len()];
                b.wrapping_add(u64::from(frames) * FRAME_SIZE).wrapping_add_signed(offset.into())
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    usable: Vec<(Addr, Addr)>,
    reserved: Vec<(Addr, Addr)>,
    limit: Option<Addr>,
    allocs: u16,
}

fn range((start, len): (Addr, Addr)) -> PhysRange {
    let len = match len {
        // Lengths from `Near` are small multiples of frames plus an offset.
        Addr::Near { .. } => len.get() % (1 << 24),
        Addr::Raw(l) => l,
    };
    PhysRange::new(start.get(), len)
}

const fn align_up(x: u128) -> u128 {
    (x + FRAME_SIZE as u128 - 1) & !(FRAME_SIZE as u128 - 1)
}

const fn align_down(x: u128) -> u128 {
    x & !(FRAME_SIZE as u128 - 1)
}

/// The model: frames `[f, f + 4096)` with `f` aligned, fully inside a usable range and
/// below `limit`, that share no byte with a reserved range. Computed with intervals in
/// `u128` so no bound can overflow.
fn expected_free(usable: &[PhysRange], reserved: &[PhysRange], limit: u64) -> u128 {
    // A reserved byte range blocks every frame it touches. An empty one at an unaligned
    // address inside a usable range blocks the frame around it, as the allocator cuts
    // there too (conservative, never unsafe); the same formula covers both.
    let mut blocked: Vec<(u128, u128)> =
        reserved.iter().map(|r| (align_down(r.start.into()), align_up(r.end.into()))).collect();
    blocked.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (s, e) in blocked {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // Usable ranges may overlap: count each frame once.
    let mut spans: Vec<(u128, u128)> = usable
        .iter()
        .map(|u| (align_up(u.start.into()), align_down(u128::from(u.end.min(limit)))))
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_unstable();
    let mut union: Vec<(u128, u128)> = Vec::new();
    for (s, e) in spans {
        match union.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => union.push((s, e)),
        }
    }
    let mut total = 0u128;
    for (s, e) in union {
        let covered: u128 =
            merged.iter().map(|&(bs, be)| be.min(e).saturating_sub(bs.max(s))).sum();
        total += (e - s) - covered;
    }
    total
}

fn frame_is_allowed(f: u64, usable: &[PhysRange], reserved: &[PhysRange], limit: u64) -> bool {
    let frame = PhysRange::new(f, FRAME_SIZE);
    frame.end - frame.start == FRAME_SIZE
        && frame.end <= limit
        && usable.iter().any(|u| u.start <= frame.start && frame.end <= u.end)
        && !reserved.iter().any(|r| r.overlaps(&frame))
}

fn check_free_ranges(fa: &FrameAllocator, limit: u64) {
    let mut prev_end = 0u64;
    for (i, r) in fa.free_ranges().iter().enumerate() {
        assert!(!r.is_empty(), "free range {i} is empty: {r:?}");
        assert_eq!(r.start % FRAME_SIZE, 0, "free range {i} unaligned: {r:?}");
        assert_eq!(r.end % FRAME_SIZE, 0, "free range {i} unaligned: {r:?}");
        assert!(r.end <= limit, "free range {i} above the limit: {r:?}");
        assert!(i == 0 || r.start >= prev_end, "free ranges unsorted or overlapping");
        prev_end = r.end;
    }
}

fuzz_target!(|input: Input| {
    let usable: Vec<PhysRange> = input.usable.iter().map(|&r| range(r)).collect();
    let reserved: Vec<PhysRange> = input.reserved.iter().map(|&r| range(r)).collect();
    let limit = input.limit.map_or(u64::MAX, Addr::get);

    let mut fa = match FrameAllocator::new(usable.iter().copied(), &reserved, limit) {
        Ok(fa) => fa,
        Err(Error::TooFragmented) => return,
    };
    check_free_ranges(&fa, limit);
    let initial = fa.free_bytes();
    assert_eq!(
        u128::from(initial),
        expected_free(&usable, &reserved, limit),
        "free bytes differ from the model"
    );
    assert_eq!(fa.frames_handed_out(), 0);

    let mut seen = HashSet::new();
    for n in 1..=u64::from(input.allocs % 512) {
        let before = fa.free_bytes();
        let Some(f) = fa.alloc() else {
            assert_eq!(before, 0, "alloc failed with {before} bytes free");
            break;
        };
        assert_eq!(f % FRAME_SIZE, 0, "frame {f:#x} unaligned");
        assert!(seen.insert(f), "frame {f:#x} handed out twice");
        assert!(frame_is_allowed(f, &usable, &reserved, limit), "frame {f:#x} not allowed");
        assert_eq!(fa.frames_handed_out(), n);
        assert_eq!(fa.free_bytes() + n * FRAME_SIZE, initial, "accounting broken");
        check_free_ranges(&fa, limit);
    }
});
