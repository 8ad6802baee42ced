//! The root task's bookkeeping of its own resources: free CSpace slots, one untyped
//! region to retype from, and free virtual addresses.

use protocols::bootinfo::{self, slot, BOOTINFO_ADDR};
use protocols::error::Error;
use protocols::object::{map, Invocation, ObjectType};
use rt::ipc::{invoke, retype};

/// Where the root task's resources come from.
pub struct Alloc {
    next_slot: u64,
    next_vaddr: u64,
    /// The untyped capability everything is made from.
    pub untyped: u64,
}

/// First virtual address handed out for mappings.
const VADDR_BASE: u64 = 0x1000_0000;

impl Alloc {
    /// Pick the largest untyped from the boot-information page.
    pub fn from_bootinfo() -> Option<Self> {
        // SAFETY: the kernel maps the boot-information page read-only at BOOTINFO_ADDR
        // before the root task starts, and nothing unmaps it.
        let words = unsafe { core::slice::from_raw_parts(BOOTINFO_ADDR as *const u64, 512) };
        let (index, _) = bootinfo::untypeds(words)?.enumerate().max_by_key(|(_, u)| u.size_bits)?;
        Some(Self {
            next_slot: slot::FIRST_FREE,
            next_vaddr: VADDR_BASE,
            untyped: slot::FIRST_UNTYPED + index as u64,
        })
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

    /// Make one object; returns its slot.
    pub fn make(&mut self, ty: ObjectType, size_bits: u64) -> Result<u64, Error> {
        let s = self.slot();
        retype(self.untyped, ty, size_bits, s, 1)?;
        Ok(s)
    }

    /// A fresh frame mapped writable in the root task's address space: `(slot, vaddr)`.
    pub fn page(&mut self) -> Result<(u64, u64), Error> {
        let f = self.make(ObjectType::Frame, 0)?;
        let va = self.vaddr(1);
        invoke(f, Invocation::FrameMap, &[slot::VSPACE, va, map::WRITE])?;
        Ok((f, va))
    }
}
