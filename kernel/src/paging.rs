//! x86-64 4-level page tables, manipulated through a physical-memory seam.
//!
//! The kernel reaches every page table through its physical-memory window; the host
//! tests use an in-memory stand-in. Keeping the walk here (and not in `arch`) lets the
//! user-pointer checks and the ELF loader's mappings be unit-tested.

/// Present.
pub const PRESENT: u64 = 1 << 0;
/// Writable.
pub const WRITABLE: u64 = 1 << 1;
/// Accessible from ring 3.
pub const USER: u64 = 1 << 2;
/// A 2 MiB / 1 GiB leaf at the PD / PDPT level.
pub const HUGE: u64 = 1 << 7;
/// Not flushed from the TLB on CR3 loads (kernel mappings).
pub const GLOBAL: u64 = 1 << 8;
/// No instruction fetch.
pub const NO_EXECUTE: u64 = 1 << 63;
/// The physical-address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

const PAGE: u64 = 4096;

/// The sizes a frame object comes in, and where each is mapped: the same walk serves
/// both, stopping one level higher for a large frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSize {
    /// 4 KiB: a leaf in a page table (level 0).
    Small,
    /// 2 MiB: a leaf in a page directory (level 1, the PS bit set).
    Large,
}

impl FrameSize {
    /// log2 of the size in bytes.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Small => 12,
            Self::Large => 21,
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.bits()
    }

    /// The level of the table whose entry maps it.
    pub const fn level(self) -> u32 {
        match self {
            Self::Small => 0,
            Self::Large => 1,
        }
    }

    /// The levels walked through above that entry, top first.
    pub fn walk(self) -> impl Iterator<Item = u32> {
        (self.level() + 1..=3).rev()
    }
}

/// Physical memory as the kernel sees it: any frame can be borrowed as bytes.
pub trait PhysMemory {
    /// The 4 KiB frame at `phys` (page-aligned).
    fn frame(&mut self, phys: u64) -> &mut [u8; 4096];
}

/// Where new page-table frames come from.
pub trait FrameSource {
    /// A frame, not yet zeroed; `None` when exhausted.
    fn alloc_frame(&mut self) -> Option<u64>;
}

impl FrameSource for crate::frame_alloc::FrameAllocator {
    fn alloc_frame(&mut self) -> Option<u64> {
        self.alloc()
    }
}

/// Why a mapping or a walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The address is not aligned to the page size or not canonical.
    BadAddress,
    /// A page is already mapped there.
    AlreadyMapped,
    /// No frame left for a page table.
    OutOfMemory,
    /// A huge page covers that address, so it cannot be split here.
    HugePageInTheWay,
    /// A page table covers the 2 MiB a large page would take (tables stay until their
    /// address space goes, even when empty).
    TableInTheWay,
}

fn index(vaddr: u64, level: u32) -> usize {
    ((vaddr >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Read entry `i` of the table at `table`.
pub fn entry(mem: &mut impl PhysMemory, table: u64, i: usize) -> u64 {
    let f = mem.frame(table & ADDR_MASK);
    let at = (i & 0x1ff) * 8;
    let mut b = [0u8; 8];
    if let Some(src) = f.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// Write entry `i` of the table at `table`.
pub fn set_entry(mem: &mut impl PhysMemory, table: u64, i: usize, value: u64) {
    let f = mem.frame(table & ADDR_MASK);
    let at = (i & 0x1ff) * 8;
    if let Some(dst) = f.get_mut(at..at + 8) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

/// Whether `vaddr` is canonical (bits 63:47 all equal).
pub const fn is_canonical(vaddr: u64) -> bool {
    let top = vaddr >> 47;
    top == 0 || top == 0x1_ffff
}

/// A zeroed frame for a new table.
pub fn new_table(mem: &mut impl PhysMemory, frames: &mut impl FrameSource) -> Result<u64, Error> {
    let t = frames.alloc_frame().ok_or(Error::OutOfMemory)?;
    mem.frame(t).fill(0);
    Ok(t)
}

/// Map the page of `size` at `vaddr` to `paddr` with `flags` (PRESENT is implied).
/// Intermediate tables get the most permissive flags; the leaf decides.
pub fn map_page(
    mem: &mut impl PhysMemory,
    frames: &mut impl FrameSource,
    root: u64,
    vaddr: u64,
    paddr: u64,
    flags: u64,
    size: FrameSize,
) -> Result<(), Error> {
    let span = size.bytes();
    if !vaddr.is_multiple_of(span) || !paddr.is_multiple_of(span) || !is_canonical(vaddr) {
        return Err(Error::BadAddress);
    }
    let mut table = root;
    for level in size.walk() {
        let i = index(vaddr, level);
        let e = entry(mem, table, i);
        table = if e & PRESENT == 0 {
            let t = new_table(mem, frames)?;
            let inter = PRESENT | WRITABLE | (flags & USER);
            set_entry(mem, table, i, t | inter);
            t
        } else if e & HUGE != 0 {
            return Err(Error::HugePageInTheWay);
        } else {
            e & ADDR_MASK
        };
    }
    let i = index(vaddr, size.level());
    let e = entry(mem, table, i);
    let huge = if size == FrameSize::Large { HUGE } else { 0 };
    if e & PRESENT != 0 {
        return Err(if e & HUGE == huge { Error::AlreadyMapped } else { Error::TableInTheWay });
    }
    set_entry(mem, table, i, (paddr & ADDR_MASK) | flags | huge | PRESENT);
    Ok(())
}

/// Clear the mapping of the page of `size` at `vaddr` if it maps `paddr` (tables stay;
/// they belong to the address space's pool).
pub fn unmap_page(
    mem: &mut impl PhysMemory,
    root: u64,
    vaddr: u64,
    paddr: u64,
    size: FrameSize,
) -> bool {
    let mut table = root;
    for level in size.walk() {
        let e = entry(mem, table, index(vaddr, level));
        if e & PRESENT == 0 || e & HUGE != 0 {
            return false;
        }
        table = e & ADDR_MASK;
    }
    let i = index(vaddr, size.level());
    let e = entry(mem, table, i);
    let huge = if size == FrameSize::Large { HUGE } else { 0 };
    if !is_canonical(vaddr)
        || e & PRESENT == 0
        || e & HUGE != huge
        || e & ADDR_MASK != paddr & ADDR_MASK
    {
        return false;
    }
    set_entry(mem, table, i, 0);
    true
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the byte.
    pub phys: u64,
    /// Effective access: writable and user only if every level allows it.
    pub writable: bool,
    /// Reachable from ring 3.
    pub user: bool,
}

/// Walk the tables for `vaddr`; `None` if unmapped or non-canonical.
pub fn translate(mem: &mut impl PhysMemory, root: u64, vaddr: u64) -> Option<Translation> {
    if !is_canonical(vaddr) {
        return None;
    }
    let mut table = root;
    let (mut writable, mut user) = (true, true);
    for level in [3u32, 2, 1, 0] {
        let e = entry(mem, table, index(vaddr, level));
        if e & PRESENT == 0 {
            return None;
        }
        writable &= e & WRITABLE != 0;
        user &= e & USER != 0;
        let leaf = level == 0 || (e & HUGE != 0 && level <= 2);
        if leaf {
            let span = 1u64 << (12 + 9 * level);
            let phys = (e & ADDR_MASK & !(span - 1)) | (vaddr & (span - 1));
            return Some(Translation { phys, writable, user });
        }
        table = e & ADDR_MASK;
    }
    None
}

/// Why a user buffer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserFault {
    /// The range leaves the user half or wraps.
    OutOfUserSpace,
    /// A page in the range is unmapped, kernel-only, or read-only for a write.
    NotAccessible {
        /// The first offending address.
        addr: u64,
    },
}

/// Check that `[addr, addr + len)` is user-accessible (and writable if `write`) in the
/// address space `root`, page by page.
pub fn check_user_range(
    mem: &mut impl PhysMemory,
    root: u64,
    addr: u64,
    len: u64,
    write: bool,
) -> Result<(), UserFault> {
    if len == 0 {
        return Ok(());
    }
    let end = addr.checked_add(len).ok_or(UserFault::OutOfUserSpace)?;
    if end > protocols::layout::USER_END {
        return Err(UserFault::OutOfUserSpace);
    }
    let mut page = addr & !(PAGE - 1);
    while page < end {
        let at = page.max(addr);
        match translate(mem, root, at) {
            Some(t) if t.user && (t.writable || !write) => {}
            _ => return Err(UserFault::NotAccessible { addr: at }),
        }
        page += PAGE;
    }
    Ok(())
}

/// Copy `dst.len()` bytes from user address `src` in the address space `root`. The whole
/// range is checked before the first byte moves, so a bad buffer copies nothing; nothing
/// is dereferenced through the user's own mapping.
pub fn copy_from_user(
    mem: &mut impl PhysMemory,
    root: u64,
    src: u64,
    dst: &mut [u8],
) -> Result<(), UserFault> {
    check_user_range(mem, root, src, dst.len() as u64, false)?;
    let mut done = 0usize;
    while done < dst.len() {
        let addr = src + done as u64;
        let t = translate(mem, root, addr).ok_or(UserFault::NotAccessible { addr })?;
        let in_page = (PAGE - (addr % PAGE)) as usize;
        let n = in_page.min(dst.len() - done);
        let off = (t.phys % PAGE) as usize;
        let frame = mem.frame(t.phys & !(PAGE - 1));
        if let (Some(d), Some(s)) = (dst.get_mut(done..done + n), frame.get(off..off + n)) {
            d.copy_from_slice(s);
        }
        done += n;
    }
    Ok(())
}

/// A host stand-in for physical memory, for tests and fuzzing.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake {
    use std::collections::HashMap;

    /// Frames created on first touch; frames come from a bump counter.
    #[derive(Default)]
    pub struct Memory {
        pub frames: HashMap<u64, Box<[u8; 4096]>>,
        pub next: u64,
        pub limit: Option<u64>,
    }

    impl super::PhysMemory for Memory {
        fn frame(&mut self, phys: u64) -> &mut [u8; 4096] {
            self.frames.entry(phys).or_insert_with(|| Box::new([0; 4096]))
        }
    }

    impl super::FrameSource for Memory {
        fn alloc_frame(&mut self) -> Option<u64> {
            if self.limit == Some(0) {
                return None;
            }
            self.limit = self.limit.map(|l| l - 1);
            self.next += 4096;
            Some(0x100_0000 + self.next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Memory;
    use super::FrameSize::{Large, Small};
    use super::{
        copy_from_user, map_page, translate, unmap_page, Error, FrameSource, PhysMemory, UserFault,
        USER, WRITABLE,
    };

    fn split(m: &mut Memory) -> (&mut Memory, Memory) {
        // Frames for tables come from a second counter so `m` can be borrowed as memory.
        let frames = Memory { next: m.next, ..Default::default() };
        (m, frames)
    }

    #[test]
    fn map_translate_and_copy() {
        let mut mem = Memory::default();
        let root = mem.alloc_frame().unwrap();
        let (mem, mut frames) = split(&mut mem);
        frames.next = 0x10_0000;
        map_page(mem, &mut frames, root, 0x40_0000, 0x5000, USER | WRITABLE, Small).unwrap();
        map_page(mem, &mut frames, root, 0x40_1000, 0x9000, USER, Small).unwrap();
        assert_eq!(
            map_page(mem, &mut frames, root, 0x40_1000, 0x9000, USER, Small),
            Err(Error::AlreadyMapped)
        );
        assert_eq!(
            map_page(mem, &mut frames, root, 0x40_0001, 0, 0, Small),
            Err(Error::BadAddress)
        );
        let t = translate(mem, root, 0x40_1234).unwrap();
        assert_eq!((t.phys, t.writable, t.user), (0x9234, false, true));
        assert!(translate(mem, root, 0x40_2000).is_none());

        mem.frame(0x5000)[0xffe..].copy_from_slice(b"he");
        mem.frame(0x9000)[..3].copy_from_slice(b"llo");
        let mut buf = [0u8; 5];
        copy_from_user(mem, root, 0x40_0ffe, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let mut big = [0u8; 0x1003];
        assert_eq!(
            copy_from_user(mem, root, 0x40_0ffe, &mut big),
            Err(UserFault::NotAccessible { addr: 0x40_2000 })
        );
        assert_eq!(
            copy_from_user(mem, root, 0x7fff_ffff_fffe, &mut buf),
            Err(UserFault::OutOfUserSpace)
        );
        assert_eq!(
            copy_from_user(mem, root, u64::MAX - 1, &mut buf),
            Err(UserFault::OutOfUserSpace)
        );
    }

    #[test]
    fn kernel_only_pages_are_not_user_accessible() {
        let mut mem = Memory::default();
        let root = mem.alloc_frame().unwrap();
        let (mem, mut frames) = split(&mut mem);
        frames.next = 0x10_0000;
        map_page(mem, &mut frames, root, 0x1000, 0x2000, WRITABLE, Small).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            copy_from_user(mem, root, 0x1000, &mut b),
            Err(UserFault::NotAccessible { addr: 0x1000 })
        );
    }

    #[test]
    fn running_out_of_frames_is_an_error() {
        let mut mem = Memory::default();
        let root = mem.alloc_frame().unwrap();
        let (mem, mut frames) = split(&mut mem);
        frames.limit = Some(2);
        assert_eq!(
            map_page(mem, &mut frames, root, 0x1000, 0x2000, USER, Small),
            Err(Error::OutOfMemory)
        );
    }

    #[test]
    fn large_pages_map_as_one_pd_leaf_and_refuse_to_mix() {
        let mut mem = Memory::default();
        let root = mem.alloc_frame().unwrap();
        let (mem, mut frames) = split(&mut mem);
        frames.next = 0x10_0000;
        let big = 0x20_0000;
        let mut map = |mem: &mut Memory, va, pa, size| {
            map_page(mem, &mut frames, root, va, pa, USER | WRITABLE, size)
        };
        assert_eq!(map(mem, 0x40_1000, big, Large), Err(Error::BadAddress), "vaddr unaligned");
        assert_eq!(map(mem, 0x40_0000, big + 0x1000, Large), Err(Error::BadAddress));
        map(mem, 0x40_0000, big, Large).unwrap();
        let t = translate(mem, root, 0x5f_fffe).unwrap();
        assert_eq!((t.phys, t.writable, t.user), (0x3f_fffe, true, true));
        assert_eq!(map(mem, 0x40_0000, big, Large), Err(Error::AlreadyMapped));
        assert_eq!(map(mem, 0x43_0000, 0x5000, Small), Err(Error::HugePageInTheWay));
        // A 4 KiB page next door makes a page table, which then blocks a large page.
        map(mem, 0x60_0000, 0x5000, Small).unwrap();
        assert!(unmap_page(mem, root, 0x60_0000, 0x5000, Small));
        assert_eq!(map(mem, 0x60_0000, big, Large), Err(Error::TableInTheWay));

        assert!(!unmap_page(mem, root, 0x40_0000, big, Small), "a 4 KiB unmap misses it");
        assert!(!unmap_page(mem, root, 0x40_0000, big + (2 << 20), Large), "another frame");
        assert!(unmap_page(mem, root, 0x40_0000, big, Large));
        assert!(translate(mem, root, 0x40_0000).is_none());
        assert!(!unmap_page(mem, root, 0x40_0000, big, Large));
        map(mem, 0x40_0000, big, Large).unwrap();
        map(mem, 0x80_0000, big, Large).unwrap();
        map(mem, 0xa0_0000, 0x40_0000, Large).unwrap();
        mem.frame(0x3f_f000)[0xfff] = 7;
        mem.frame(0x40_0000)[0] = 9;
        let mut b = [0u8; 2];
        copy_from_user(mem, root, 0x9f_ffff, &mut b).unwrap();
        assert_eq!(b, [7, 9], "a copy crosses from one large page into the next");
    }
}
