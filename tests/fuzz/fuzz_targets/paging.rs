//! Fuzzes the page-table walk and the user-pointer checks in `kernel::paging` over the
//! in-memory stand-in for physical memory, against a model of what was mapped.
//!
//! An arbitrary sequence of `map_page` (4 KiB and 2 MiB pages), `unmap_page`, `translate`,
//! `check_user_range` and `copy_from_user` runs on one address space, with a bounded
//! supply of page-table frames.
//! The model tracks each mapped page and, for every intermediate table, the USER bit it
//! was created with (intermediate entries take the flags of the first mapping below them).
//! After every step: `map_page`'s and `unmap_page`'s results are the model's (a large
//! page over a table, a small page under a large one refused); `translate` agrees with the model
//! on address and effective access; `check_user_range` and `copy_from_user` succeed exactly
//! when every page is mapped and user-accessible and the range stays in the user half,
//! report the first bad address otherwise, copy the right bytes, and copy nothing on error.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use kernel::paging::fake::Memory;
use kernel::paging::{
    check_user_range, copy_from_user, is_canonical, map_page, translate, unmap_page, Error,
    FrameSize, PhysMemory, UserFault, GLOBAL, NO_EXECUTE, USER, WRITABLE,
};
use libfuzzer_sys::fuzz_target;
use protocols::layout::USER_END;

const PAGE: u64 = 4096;
const LARGE: u64 = 2 << 20;
/// Data frames live below this; page tables come from a counter far above it, so the
/// fuzzer's mappings can never alias a page table (which the kernel guarantees by
/// allocating both from the frame allocator). Large frames are among the first 6 MiB.
const DATA_FRAMES: u64 = 0xf00;
const LARGE_FRAMES: u64 = 3;

/// An address near one of a few interesting places, or anywhere.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum VAddr {
    Near { base: u8, pages: i16, offset: u16 },
    Raw(u64),
}

impl VAddr {
    fn get(self) -> u64 {
        match self {
            Self::Near { base, pages, offset } => {
                const BASES: [u64; 9] = [
                    0,
                    0x40_0000,
                    0x3fff_f000,           // a 1 GiB boundary
                    0x7f_ffff_f000,        // a 512 GiB (PML4 entry) boundary
                    USER_END - PAGE,       // the last user page
                    USER_END,              // the first non-canonical address
                    0xffff_8000_0000_0000, // the first kernel-half address
                    0xffff_ffff_8000_0000, // the kernel image
                    u64::MAX - 0xfff,
                ];
                let b = BASES[usize::from(base) % BASES.len()];
                b.wrapping_add_signed(i64::from(pages) * PAGE as i64)
                    .wrapping_add(u64::from(offset % 0x1800))
            }
            Self::Raw(a) => a,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Map {
        vaddr: VAddr,
        frame: u16,
        unaligned_frame: bool,
        writable: bool,
        user: bool,
        nx: bool,
        global: bool,
        /// A 2 MiB page (of one of [`LARGE_FRAMES`] frames).
        large: bool,
    },
    /// `unmap_page` of the page at `vaddr`, naming its frame or (if `wrong`) another.
    Unmap {
        vaddr: VAddr,
        large: bool,
        wrong: bool,
    },
    Translate {
        vaddr: VAddr,
    },
    /// A length from the whole `u64` range finds wrap-around; the walk stops at the
    /// first unmapped page, so a huge length stays cheap.
    Check {
        vaddr: VAddr,
        len: u64,
        write: bool,
    },
    /// Copies are limited to a few pages (enough to cross every boundary).
    Copy {
        vaddr: VAddr,
        len: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    table_frames: Option<u8>,
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leaf {
    frame: u64,
    writable: bool,
    user: bool,
}

/// What the address space should look like.
#[derive(Default)]
struct Model {
    /// Mapped pages by virtual page address.
    pages: HashMap<u64, Leaf>,
    /// Mapped 2 MiB pages by virtual address.
    large: HashMap<u64, Leaf>,
    /// The USER bit of each intermediate entry, by (level, virtual address >> shift).
    tables: HashMap<(u32, u64), bool>,
    /// Page-table frames still available (`None` = unlimited).
    frames_left: Option<u64>,
}

impl Model {
    /// The intermediate entries (levels 3, 2, 1) on the walk to `vaddr`.
    fn path(vaddr: u64) -> [(u32, u64); 3] {
        [3, 2, 1].map(|level| (level, (vaddr & 0xffff_ffff_ffff) >> (12 + 9 * level)))
    }

    /// Effective `(writable, user)` for `vaddr`, `None` if not mapped.
    fn access(&self, vaddr: u64) -> Option<(Leaf, bool, bool)> {
        if !is_canonical(vaddr) {
            return None;
        }
        if let Some(big) = self.large.get(&(vaddr & !(LARGE - 1))) {
            let leaf = Leaf { frame: big.frame + (vaddr & (LARGE - 1) & !(PAGE - 1)), ..*big };
            let user = leaf.user && Self::path(vaddr)[..2].iter().all(|k| self.tables[k]);
            return Some((leaf, leaf.writable, user));
        }
        let leaf = *self.pages.get(&(vaddr & !(PAGE - 1)))?;
        let user = leaf.user && Self::path(vaddr).iter().all(|k| self.tables[k]);
        Some((leaf, leaf.writable, user))
    }

    /// What `map_page` must return, updating the model the way the walk updates tables.
    fn map(&mut self, vaddr: u64, paddr: u64, leaf: Leaf, size: FrameSize) -> Result<(), Error> {
        let span = size.bytes();
        if !vaddr.is_multiple_of(span) || !paddr.is_multiple_of(span) || !is_canonical(vaddr) {
            return Err(Error::BadAddress);
        }
        let levels = if size == FrameSize::Large { 2 } else { 3 };
        for key in &Self::path(vaddr)[..levels] {
            let key = *key;
            if key.0 == 1 && self.large.contains_key(&(vaddr & !(LARGE - 1))) {
                return Err(Error::HugePageInTheWay);
            }
            if self.tables.contains_key(&key) {
                continue;
            }
            if self.frames_left == Some(0) {
                return Err(Error::OutOfMemory);
            }
            self.frames_left = self.frames_left.map(|n| n - 1);
            self.tables.insert(key, leaf.user);
        }
        if size == FrameSize::Large {
            if self.tables.contains_key(&Self::path(vaddr)[2]) {
                return Err(Error::TableInTheWay);
            }
            if self.large.contains_key(&vaddr) {
                return Err(Error::AlreadyMapped);
            }
            self.large.insert(vaddr, leaf);
            return Ok(());
        }
        if self.pages.contains_key(&vaddr) {
            return Err(Error::AlreadyMapped);
        }
        self.pages.insert(vaddr, leaf);
        Ok(())
    }

    /// What `unmap_page` must return, removing the page if it goes.
    fn unmap(&mut self, vaddr: u64, paddr: u64, size: FrameSize) -> bool {
        let pages = if size == FrameSize::Large { &mut self.large } else { &mut self.pages };
        let key = vaddr & !(size.bytes() - 1);
        let hit = is_canonical(vaddr) && pages.get(&key).is_some_and(|l| l.frame == paddr);
        if hit {
            pages.remove(&key);
        }
        hit
    }

    /// What `check_user_range` must return.
    fn check(&self, addr: u64, len: u64, write: bool) -> Result<(), UserFault> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(UserFault::OutOfUserSpace)?;
        if end > USER_END {
            return Err(UserFault::OutOfUserSpace);
        }
        let mut page = addr & !(PAGE - 1);
        while page < end {
            let at = page.max(addr);
            match self.access(at) {
                Some((_, writable, true)) if writable || !write => {}
                _ => return Err(UserFault::NotAccessible { addr: at }),
            }
            page += PAGE;
        }
        Ok(())
    }
}

/// The byte every data frame holds at `offset`: distinct per frame and offset, so a
/// copy from the wrong frame or offset shows.
fn pattern(frame: u64, offset: u64) -> u8 {
    (frame.wrapping_mul(0x9e37_79b9) ^ offset.wrapping_mul(31) ^ (offset >> 8)) as u8
}

/// Give a data page its pattern the first time a copy may read it.
fn fill(mem: &mut Memory, filled: &mut std::collections::HashSet<u64>, frame: u64) {
    if !filled.insert(frame) {
        return;
    }
    let page = mem.frame(frame);
    for (i, b) in page.iter_mut().enumerate() {
        *b = pattern(frame, i as u64);
    }
}

fuzz_target!(|input: Input| {
    let mut mem = Memory::default();
    // Tables come from a second stand-in whose counter starts far above the data frames
    // (the kernel's own tests split memory the same way).
    let mut tables = Memory { next: 0x10_0000, ..Memory::default() };
    let root = kernel::paging::FrameSource::alloc_frame(&mut tables).expect("root table");
    mem.frame(root).fill(0);
    tables.limit = input.table_frames.map(u64::from);
    let mut model = Model { frames_left: tables.limit, ..Model::default() };
    let mut filled = std::collections::HashSet::new();

    for op in input.ops.iter().take(256) {
        match *op {
            Op::Map { vaddr, frame, unaligned_frame, writable, user, nx, global, large } => {
                let vaddr = vaddr.get();
                let size = if large { FrameSize::Large } else { FrameSize::Small };
                let frame = if large {
                    (u64::from(frame) % LARGE_FRAMES + 1) * LARGE
                } else {
                    (u64::from(frame) % DATA_FRAMES + 1) * PAGE
                };
                let paddr = if unaligned_frame { frame + 8 } else { frame };
                let mut flags = 0;
                for (on, bit) in
                    [(writable, WRITABLE), (user, USER), (nx, NO_EXECUTE), (global, GLOBAL)]
                {
                    if on {
                        flags |= bit;
                    }
                }
                let leaf = Leaf { frame, writable, user };
                let want = model.map(vaddr, paddr, leaf, size);
                let got = map_page(&mut mem, &mut tables, root, vaddr, paddr, flags, size);
                assert_eq!(got, want, "map_page({vaddr:#x}, {paddr:#x}, {flags:#x}, {size:?})");
            }
            Op::Unmap { vaddr, large, wrong } => {
                let vaddr = vaddr.get();
                let size = if large { FrameSize::Large } else { FrameSize::Small };
                let key = vaddr & !(size.bytes() - 1);
                let pages = if large { &model.large } else { &model.pages };
                let frame = pages.get(&key).map_or(PAGE, |l| l.frame);
                let paddr = if wrong { frame ^ LARGE } else { frame };
                let want = model.unmap(vaddr, paddr, size);
                let got = unmap_page(&mut mem, root, vaddr, paddr, size);
                assert_eq!(got, want, "unmap_page({vaddr:#x}, {paddr:#x}, {size:?})");
            }
            Op::Translate { vaddr } => {
                let vaddr = vaddr.get();
                let got = translate(&mut mem, root, vaddr);
                let want = model.access(vaddr);
                match (got, want) {
                    (None, None) => {}
                    (Some(t), Some((leaf, writable, user))) => {
                        assert_eq!(t.phys, leaf.frame + vaddr % PAGE, "translate({vaddr:#x})");
                        assert_eq!((t.writable, t.user), (writable, user), "access of {vaddr:#x}");
                    }
                    (got, want) => panic!("translate({vaddr:#x}) = {got:?}, model {want:?}"),
                }
            }
            Op::Check { vaddr, len, write } => {
                let addr = vaddr.get();
                let got = check_user_range(&mut mem, root, addr, len, write);
                assert_eq!(got, model.check(addr, len, write), "check({addr:#x}, {len}, {write})");
            }
            Op::Copy { vaddr, len } => {
                let addr = vaddr.get();
                let len = len % 0x4400;
                let mut page = addr & !(PAGE - 1);
                while page < addr.saturating_add(u64::from(len)) {
                    if let Some((leaf, _, _)) = model.access(page) {
                        fill(&mut mem, &mut filled, leaf.frame);
                    }
                    page = page.saturating_add(PAGE);
                }
                let mut buf = vec![0xa5u8; usize::from(len)];
                let got = copy_from_user(&mut mem, root, addr, &mut buf);
                let want = model.check(addr, u64::from(len), false);
                assert_eq!(got, want, "copy_from_user({addr:#x}, {len})");
                if got.is_err() {
                    assert!(buf.iter().all(|&b| b == 0xa5), "a refused copy wrote bytes");
                    continue;
                }
                // Compare page by page: one model look-up per page, then the bytes.
                let mut done = 0usize;
                while done < buf.len() {
                    let at = addr + done as u64;
                    assert!(at < USER_END, "copy read {at:#x}, beyond user space");
                    let (leaf, _, user) = model.access(at).expect("copied from an unmapped page");
                    assert!(user, "copied from a kernel-only page at {at:#x}");
                    let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
                    for (k, &b) in buf[done..done + n].iter().enumerate() {
                        let off = at % PAGE + k as u64;
                        assert_eq!(
                            b,
                            pattern(leaf.frame, off),
                            "wrong byte at {:#x}",
                            at + k as u64
                        );
                    }
                    done += n;
                }
            }
        }
    }
});
