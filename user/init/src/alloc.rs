//! The root task's bookkeeping of its own resources: free CSpace slots, the untyped
//! region to retype from (the largest first, then the next largest once it is used up),
//! and free virtual addresses.

use protocols::bootinfo::{self, slot, BOOTINFO_ADDR};
use protocols::error::Error;
use protocols::object::{map, Invocation, ObjectType};
use rt::ipc::{invoke, retype};

/// Where the root task's resources come from.
pub struct Alloc {
    next_slot: u64,
    next_vaddr: u64,
    /// The untyped capability objects are made from now.
    pub untyped: u64,
    /// Bit `i`: untyped `i` of the boot-information page was taken up (or is in use).
    taken: u64,
}

/// First virtual address handed out for mappings.
const VADDR_BASE: u64 = 0x1000_0000;

impl Alloc {
    /// Start with the largest untyped of the boot-information page.
    pub fn from_bootinfo() -> Option<Self> {
        let mut a =
            Self { next_slot: slot::FIRST_FREE, next_vaddr: VADDR_BASE, untyped: 0, taken: 0 };
        a.next_untyped().then_some(a)
    }

    /// Move on to the largest untyped not taken yet; false when none is left.
    fn bootinfo_words() -> &'static [u64] {
        // SAFETY: the kernel maps the boot-information page read-only at BOOTINFO_ADDR
        // before the root task starts, and nothing unmaps it.
        unsafe { core::slice::from_raw_parts(BOOTINFO_ADDR as *const u64, 512) }
    }

    fn next_untyped(&mut self) -> bool {
        let words = Self::bootinfo_words();
        let taken = self.taken;
        let next = bootinfo::untypeds(words).and_then(|list| {
            list.enumerate()
                .filter(|(i, _)| *i < 64 && taken & (1 << i) == 0)
                .max_by_key(|(_, u)| u.size_bits)
        });
        let Some((index, _)) = next else { return false };
        self.taken |= 1 << index;
        self.untyped = slot::FIRST_UNTYPED + index as u64;
        true
    }

    /// A free slot.
    pub fn slot(&mut self) -> u64 {
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// `pages` pages of free virtual addresses, followed by an unmapped guard page.
    pub fn vaddr(&mut self, pages: u64) -> u64 {
        let v = self.next_vaddr;
        self.next_vaddr += (pages + 1) * 4096;
        v
    }

    /// Make one object; returns its slot. When the current untyped region has no room
    /// left for it, the next largest one takes over. When none has room, the allocator
    /// stays as it was (a failed retype takes nothing), so a request too large for this
    /// machine (a manifest's, say) does not starve the ones after it.
    pub fn make(&mut self, ty: ObjectType, size_bits: u64) -> Result<u64, Error> {
        let s = self.slot();
        let before = (self.untyped, self.taken);
        loop {
            match retype(self.untyped, ty, size_bits, s, 1) {
                Err(Error::OutOfMemory) if self.next_untyped() => {}
                Err(e) => {
                    (self.untyped, self.taken) = before;
                    return Err(e);
                }
                Ok(_) => return Ok(s),
            }
        }
    }

    /// A large object (a VM's RAM): it needs a free stretch aligned to its size, which
    /// the untyped small objects come from rarely has left, so every untyped big enough
    /// is tried, the smallest first (the largest stay whole for larger requests). Which
    /// untyped small objects come from does not change.
    pub fn make_large(&mut self, ty: ObjectType, size_bits: u64) -> Result<u64, Error> {
        let s = self.slot();
        let list = bootinfo::untypeds(Self::bootinfo_words()).ok_or(Error::InvalidArgument)?;
        let mut fits: heapless::Vec<(u8, u64), 64> = list
            .enumerate()
            .filter(|(_, u)| u64::from(u.size_bits) >= size_bits)
            .map(|(i, u)| (u.size_bits, slot::FIRST_UNTYPED + i as u64))
            .take(64)
            .collect();
        fits.sort_unstable();
        for (_, untyped) in fits {
            match retype(untyped, ty, size_bits, s, 1) {
                Ok(_) => return Ok(s),
                Err(Error::OutOfMemory) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::OutOfMemory)
    }

    /// A fresh frame mapped writable in the root task's address space: `(slot, vaddr)`.
    pub fn page(&mut self) -> Result<(u64, u64), Error> {
        let f = self.make(ObjectType::Frame, 0)?;
        let va = self.vaddr(1);
        invoke(f, Invocation::FrameMap, &[slot::VSPACE, va, map::WRITE])?;
        Ok((f, va))
    }
}
