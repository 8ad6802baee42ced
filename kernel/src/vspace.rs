//! Live address spaces. A VSpace object is a PML4 followed by a pool of pages that its
//! page tables are drawn from, so mapping can never take kernel memory the VSpace's
//! owner did not pay for. The table here records each live VSpace and its pool, so a
//! frame is only ever unmapped from a VSpace that still exists.

use crate::paging::{self, FrameSize, FrameSource, PhysMemory};
use crate::vmx::ept::{Access, Ept, EptVpidCaps};
use heapless::Vec;

/// The most address spaces alive at once.
pub const MAX_VSPACES: usize = 256;

/// One live address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VSpace {
    /// Physical address of the PML4 (also the object's address).
    pub root: u64,
    /// First page of the page-table pool.
    pub pool: u64,
    /// Pages in the pool.
    pub pool_pages: u64,
    /// Pages of the pool already used.
    pub used: u64,
    /// A guest-physical space (EPT) rather than a process address space.
    pub guest: bool,
}

/// Why a VSpace operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The table of live address spaces is full.
    TooMany,
    /// No such live address space.
    NotLive,
}

/// The set of live address spaces.
#[derive(Clone, Debug, Default)]
pub struct VSpaces {
    live: Vec<VSpace, MAX_VSPACES>,
}

impl VSpaces {
    /// None live.
    pub const fn new() -> Self {
        Self { live: Vec::new() }
    }
}

struct Pool<'a>(&'a mut VSpace);

impl FrameSource for Pool<'_> {
    fn alloc_frame(&mut self) -> Option<u64> {
        (self.0.used < self.0.pool_pages).then(|| {
            let f = self.0.pool + self.0.used * 4096;
            self.0.used += 1;
            f
        })
    }
}

impl VSpaces {
    /// Record a new address space whose PML4 (already holding the kernel half) is at
    /// `root`, with `pool_pages` pages for tables at `pool`.
    pub fn add(&mut self, root: u64, pool: u64, pool_pages: u64) -> Result<(), Error> {
        let v = VSpace { root, pool, pool_pages, used: 0, guest: false };
        self.live.push(v).map_err(|_| Error::TooMany)
    }

    /// Record a new guest-physical space whose (zeroed) EPT PML4 is at `root`.
    pub fn add_guest(&mut self, root: u64, pool: u64, pool_pages: u64) -> Result<(), Error> {
        let v = VSpace { root, pool, pool_pages, used: 0, guest: true };
        self.live.push(v).map_err(|_| Error::TooMany)
    }

    /// Map the host frame of `size` at `paddr` at guest-physical `gpa` in the guest
    /// space `root`.
    pub fn map_guest(
        &mut self,
        mem: &mut impl PhysMemory,
        root: u64,
        gpa: u64,
        (paddr, size): (u64, FrameSize),
        access: Access,
        caps: EptVpidCaps,
    ) -> Result<(), MapError> {
        let v =
            self.live.iter_mut().find(|v| v.root == root && v.guest).ok_or(MapError::NotLive)?;
        let ept = Ept::from_root(root, caps);
        ept.map(mem, &mut Pool(v), gpa, paddr, access, size).map_err(MapError::Ept)
    }

    /// Forget a destroyed address space.
    pub fn remove(&mut self, root: u64) {
        self.live.retain(|v| v.root != root);
    }

    /// Whether `root` is a live address space.
    pub fn is_live(&self, root: u64) -> bool {
        self.live.iter().any(|v| v.root == root)
    }

    /// How many more address spaces can be recorded.
    pub fn room(&self) -> usize {
        MAX_VSPACES - self.live.len()
    }

    /// Whether `root` is a live guest space.
    pub fn is_guest(&self, root: u64) -> bool {
        self.live.iter().any(|v| v.root == root && v.guest)
    }

    /// Map the frame of `size` at `paddr` at `vaddr` in `root`, drawing tables from its
    /// pool.
    pub fn map(
        &mut self,
        mem: &mut impl PhysMemory,
        root: u64,
        vaddr: u64,
        (paddr, size): (u64, FrameSize),
        flags: u64,
    ) -> Result<(), MapError> {
        let v =
            self.live.iter_mut().find(|v| v.root == root && !v.guest).ok_or(MapError::NotLive)?;
        paging::map_page(mem, &mut Pool(v), root, vaddr, paddr, flags, size)
            .map_err(MapError::Paging)
    }

    /// Unmap `vaddr` from `root` if it maps the frame of `size` at `paddr`; a dead VSpace
    /// is left alone. Says which translation caches went stale (the caller has them
    /// invalidated).
    pub fn unmap(
        &mut self,
        mem: &mut impl PhysMemory,
        root: u64,
        vaddr: u64,
        (paddr, size): (u64, FrameSize),
    ) -> Stale {
        match self.live.iter().find(|v| v.root == root) {
            Some(v) if v.guest => {
                let ept = Ept::from_root(root, EptVpidCaps::from_raw(0));
                let t = ept.translate(mem, vaddr);
                if t.is_some_and(|t| t.host == paddr && t.page_size == size.bytes()) {
                    let _ = ept.unmap(mem, vaddr, size);
                    return Stale::Ept;
                }
                Stale::Nothing
            }
            Some(_) if paging::unmap_page(mem, root, vaddr, paddr, size) => Stale::Tlb,
            _ => Stale::Nothing,
        }
    }
}

/// Which cached translations an unmap made stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Nothing was mapped there.
    Nothing,
    /// A process mapping: the TLB.
    Tlb,
    /// A guest mapping: EPT translations.
    Ept,
}

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The VSpace is not live.
    NotLive,
    /// The page-table walk failed (occupied, out of pool pages, bad address).
    Paging(paging::Error),
    /// The EPT walk failed.
    Ept(crate::vmx::ept::Error),
}

#[cfg(test)]
mod tests {
    use super::{MapError, Stale, VSpaces};
    use crate::paging::FrameSize::{Large, Small};
    use crate::paging::{fake::Memory, translate, Error, USER};
    use crate::vmx::ept::{self, Access, Ept, EptVpidCaps};

    #[test]
    fn tables_come_from_the_pool_and_run_out() {
        let mut mem = Memory::default();
        let mut v = VSpaces::default();
        v.add(0x10_0000, 0x10_1000, 3).unwrap();
        v.map(&mut mem, 0x10_0000, 0x40_0000, (0x80_0000, Small), USER).unwrap();
        assert_eq!(translate(&mut mem, 0x10_0000, 0x40_0123).unwrap().phys, 0x80_0123);
        // Same tables: no new pool page needed.
        v.map(&mut mem, 0x10_0000, 0x40_1000, (0x80_1000, Small), USER).unwrap();
        // A far address needs three new tables; the pool is spent.
        assert_eq!(
            v.map(&mut mem, 0x10_0000, 0x7f00_0000_0000, (0x80_2000, Small), USER),
            Err(MapError::Paging(Error::OutOfMemory))
        );
        v.unmap(&mut mem, 0x10_0000, 0x40_0000, (0x80_0000, Small));
        assert!(translate(&mut mem, 0x10_0000, 0x40_0000).is_none());
        v.remove(0x10_0000);
        assert_eq!(v.map(&mut mem, 0x10_0000, 0x40_0000, (0, Small), USER), Err(MapError::NotLive));
    }

    #[test]
    fn large_frames_map_unmap_and_remap() {
        let (root, guest) = (0x10_0000, 0x20_0000);
        let mut mem = Memory::default();
        let mut v = VSpaces::default();
        v.add(root, root + 0x1000, 4).unwrap();
        v.add_guest(guest, guest + 0x1000, 4).unwrap();
        let caps = EptVpidCaps::from_raw(1 << 16);
        let frame = (0x80_0000, Large);
        v.map(&mut mem, root, 0x40_0000, frame, USER).unwrap();
        assert_eq!(translate(&mut mem, root, 0x5f_f123).unwrap().phys, 0x9f_f123);
        assert_eq!(v.unmap(&mut mem, root, 0x40_0000, (0x80_0000, Small)), Stale::Nothing);
        assert_eq!(v.unmap(&mut mem, root, 0x40_0000, frame), Stale::Tlb);
        assert!(translate(&mut mem, root, 0x40_0000).is_none());
        v.map(&mut mem, root, 0x40_0000, frame, USER).unwrap();

        v.map_guest(&mut mem, guest, 0x20_0000, frame, Access::RWX, caps).unwrap();
        let t = Ept::from_root(guest, caps).translate(&mut mem, 0x20_0010).unwrap();
        assert_eq!((t.host, t.page_size), (0x80_0010, 2 << 20));
        assert_eq!(
            v.map_guest(&mut mem, guest, 0x20_1000, (0x1000, Small), Access::R, caps),
            Err(MapError::Ept(ept::Error::LargePageInTheWay))
        );
        assert_eq!(v.unmap(&mut mem, guest, 0x20_0000, frame), Stale::Ept);
        assert_eq!(v.unmap(&mut mem, guest, 0x20_0000, frame), Stale::Nothing);
        v.map_guest(&mut mem, guest, 0x20_0000, frame, Access::RW, caps).unwrap();
        assert_eq!(
            v.map_guest(&mut mem, guest, 0x40_0000, frame, Access::RW, EptVpidCaps::from_raw(0)),
            Err(MapError::Ept(ept::Error::Unsupported("2 MiB pages")))
        );
    }
}
