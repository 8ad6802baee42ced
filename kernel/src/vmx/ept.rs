//! Extended page tables: the guest-physical → host-physical map of a GuestSpace (Intel
//! SDM Vol. 3, 29.3), and the EPT-pointer and EPT/VPID capability checks that go with it.
//!
//! The walk is written over the same `PhysMemory`/`FrameSource` seams as the kernel's own
//! page tables (`crate::paging`), so mapping, unmapping and translation are host-tested.
//! EPT entries differ from ordinary page-table entries in ways that matter here: there is
//! no present bit (an entry is present when any of read/write/execute is set), a leaf
//! carries its own memory type, and write-without-read is a misconfiguration (an exit on
//! every access), which [`Ept::map`] refuses instead of building.
//!
//! 4 KiB and 2 MiB leaves are created (a frame's [`FrameSize`]); a 4 KiB page is refused
//! under a 2 MiB leaf and a 2 MiB page over an existing table. 1 GiB leaves are only
//! understood by [`Ept::translate`] and refused as obstacles by [`Ept::map`].

use core::fmt;

use crate::paging::{self, FrameSize, FrameSource, PhysMemory};

/// IA32_VMX_EPT_VPID_CAP: which EPT and VPID features exist (SDM Vol. 3, A.10). Read it
/// only if the secondary controls allow "enable EPT" or "enable VPID".
pub const MSR_VMX_EPT_VPID_CAP: u32 = 0x48c;

/// Entry bit: reads allowed.
const READ: u64 = 1 << 0;
/// Entry bit: writes allowed.
const WRITE: u64 = 1 << 1;
/// Entry bit: instruction fetches allowed (supervisor fetches under mode-based control).
const EXECUTE: u64 = 1 << 2;
/// Leaf bits 5:3: memory type.
const MEMORY_TYPE_SHIFT: u32 = 3;
/// PDPTE/PDE bit 7: this entry maps a 1 GiB / 2 MiB page.
const LARGE: u64 = 1 << 7;
/// Host-physical address bits 51:12.
const ADDR_MASK: u64 = paging::ADDR_MASK;
/// Four levels translate 48 guest-physical address bits.
const GPA_LIMIT: u64 = 1 << 48;

/// EPTP bits 2:0 memory type, 5:3 walk length − 1, 6 A/D enable; 11:7 reserved here
/// (bit 7 is supervisor shadow-stack control, which this kernel never enables).
const EPTP_WALK_4: u64 = 3 << 3;
const EPTP_AD: u64 = 1 << 6;
const EPTP_FLAGS: u64 = 0xfff;

/// Memory types as EPT leaves and the EPTP encode them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MemoryType {
    /// Uncacheable.
    Uncacheable = 0,
    /// Write-back: guest RAM.
    WriteBack = 6,
}

/// The type of an INVEPT (SDM Vol. 3, 31.3, INVEPT); the value is the register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum InveptType {
    /// Mappings derived from one EPTP.
    SingleContext = 1,
    /// Mappings derived from every EPTP.
    AllContext = 2,
}

/// The type of an INVVPID; the value is the register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum InvvpidType {
    /// One linear address of one VPID.
    IndividualAddress = 0,
    /// Every mapping of one VPID.
    SingleContext = 1,
    /// Every mapping of every non-zero VPID.
    AllContext = 2,
    /// Every non-global mapping of one VPID.
    SingleContextRetainingGlobals = 3,
}

/// The decoded IA32_VMX_EPT_VPID_CAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EptVpidCaps(u64);

impl EptVpidCaps {
    /// Decode the raw MSR (0 if the MSR does not exist: nothing supported).
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value, for the boot log.
    pub const fn raw(self) -> u64 {
        self.0
    }

    const fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }

    /// Bit 0: execute-only translations (X without R) are allowed.
    pub const fn execute_only(self) -> bool {
        self.bit(0)
    }

    /// Bit 6: a page-walk length of 4 is supported.
    pub const fn walk_length_4(self) -> bool {
        self.bit(6)
    }

    /// Bit 8: the EPT paging structures may be uncacheable.
    pub const fn uncacheable(self) -> bool {
        self.bit(8)
    }

    /// Bit 14: the EPT paging structures may be write-back.
    pub const fn write_back(self) -> bool {
        self.bit(14)
    }

    /// Bit 16: 2 MiB EPT leaves.
    pub const fn pages_2m(self) -> bool {
        self.bit(16)
    }

    /// Bit 17: 1 GiB EPT leaves.
    pub const fn pages_1g(self) -> bool {
        self.bit(17)
    }

    /// Bit 21: accessed and dirty flags for EPT.
    pub const fn accessed_dirty(self) -> bool {
        self.bit(21)
    }

    /// Whether INVEPT of `kind` exists (bit 20 for the instruction, 25/26 for the types).
    pub const fn invept(self, kind: InveptType) -> bool {
        self.bit(20)
            && match kind {
                InveptType::SingleContext => self.bit(25),
                InveptType::AllContext => self.bit(26),
            }
    }

    /// Whether INVVPID of `kind` exists (bit 32 for the instruction, 40-43 for the types).
    pub const fn invvpid(self, kind: InvvpidType) -> bool {
        self.bit(32)
            && match kind {
                InvvpidType::IndividualAddress => self.bit(40),
                InvvpidType::SingleContext => self.bit(41),
                InvvpidType::AllContext => self.bit(42),
                InvvpidType::SingleContextRetainingGlobals => self.bit(43),
            }
    }

    /// The narrowest INVEPT that flushes one GuestSpace's mappings, if any exists.
    pub const fn invept_for_space(self) -> Option<InveptType> {
        if self.invept(InveptType::SingleContext) {
            Some(InveptType::SingleContext)
        } else if self.invept(InveptType::AllContext) {
            Some(InveptType::AllContext)
        } else {
            None
        }
    }

    /// The memory type to give EPT paging-structure accesses: write-back where the CPU
    /// allows it (the tables are ordinary RAM), else uncacheable.
    pub const fn table_memory_type(self) -> Option<MemoryType> {
        if self.write_back() {
            Some(MemoryType::WriteBack)
        } else if self.uncacheable() {
            Some(MemoryType::Uncacheable)
        } else {
            None
        }
    }
}

/// Access rights of a guest-physical page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Access {
    /// Guest reads allowed.
    pub read: bool,
    /// Guest writes allowed.
    pub write: bool,
    /// Guest instruction fetches allowed.
    pub execute: bool,
}

impl Access {
    /// Read, write and execute: guest RAM.
    pub const RWX: Self = Self { read: true, write: true, execute: true };
    /// Read and write: data the guest must not execute.
    pub const RW: Self = Self { read: true, write: true, execute: false };
    /// Read and execute: guest code the guest must not change.
    pub const RX: Self = Self { read: true, write: false, execute: true };
    /// Read only.
    pub const R: Self = Self { read: true, write: false, execute: false };

    const fn bits(self) -> u64 {
        (if self.read { READ } else { 0 })
            | (if self.write { WRITE } else { 0 })
            | (if self.execute { EXECUTE } else { 0 })
    }

    const fn from_bits(bits: u64) -> Self {
        Self { read: bits & READ != 0, write: bits & WRITE != 0, execute: bits & EXECUTE != 0 }
    }
}

/// Why an EPT operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The guest-physical address is unaligned or beyond the 48 bits four levels reach.
    BadGuestAddress,
    /// The host-physical address is unaligned or beyond 52 bits.
    BadHostAddress,
    /// A page is already mapped at that guest-physical address.
    AlreadyMapped,
    /// No frame left for a paging structure.
    OutOfMemory,
    /// A large page covers the address, so a 4 KiB mapping cannot be made or removed there.
    LargePageInTheWay,
    /// A paging structure covers the 2 MiB a large page would take.
    TableInTheWay,
    /// No access at all, write without read (an EPT misconfiguration), or execute-only on
    /// a CPU without execute-only translations.
    BadAccess,
    /// The CPU lacks a feature the EPT pointer needs; the text names it.
    Unsupported(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadGuestAddress => f.write_str("guest-physical address unaligned or above 2^48"),
            Self::BadHostAddress => f.write_str("host-physical address unaligned or above 2^52"),
            Self::AlreadyMapped => f.write_str("guest-physical page already mapped"),
            Self::OutOfMemory => f.write_str("no frame left for an EPT paging structure"),
            Self::LargePageInTheWay => f.write_str("a large EPT page covers the address"),
            Self::TableInTheWay => f.write_str("an EPT table covers the large page's range"),
            Self::BadAccess => f.write_str("access rights the CPU cannot express"),
            Self::Unsupported(what) => write!(f, "EPT needs {what}, which this CPU lacks"),
        }
    }
}

/// A validated EPT pointer: only [`Ept::eptp`] makes one, so a VMCS never receives a root
/// or a flag combination the CPU's capability MSR does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eptp(u64);

impl Eptp {
    /// The value for [`protocols::vmcs::Field::EptPointer`] and INVEPT descriptors.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The host-physical address of the PML4.
    pub const fn root(self) -> u64 {
        self.0 & ADDR_MASK
    }

    /// Whether accessed/dirty flags are enabled.
    pub const fn accessed_dirty(self) -> bool {
        self.0 & EPTP_AD != 0
    }
}

/// A successful guest-physical translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The host-physical address of the byte.
    pub host: u64,
    /// Effective access: a right is granted only if every level grants it.
    pub access: Access,
    /// Size of the page that maps it (4 KiB, 2 MiB or 1 GiB).
    pub page_size: u64,
}

/// One GuestSpace's EPT: the PML4's frame and the CPU's EPT capabilities. The paging
/// structures live in frames from the caller's [`FrameSource`]; [`Ept::for_each_table`]
/// hands them back when the space is destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept {
    root: u64,
    caps: EptVpidCaps,
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * level)) & 0x1ff) as usize
}

/// A guest-physical address aligned to the page size and within the 48 bits four
/// levels reach.
fn check_gpa(gpa: u64, size: FrameSize) -> Result<(), Error> {
    if gpa.is_multiple_of(size.bytes()) && gpa < GPA_LIMIT {
        Ok(())
    } else {
        Err(Error::BadGuestAddress)
    }
}

const fn present(entry: u64) -> bool {
    entry & (READ | WRITE | EXECUTE) != 0
}

impl Ept {
    /// A new, empty EPT with a zeroed PML4 from `frames`.
    pub fn new(
        mem: &mut impl PhysMemory,
        frames: &mut impl FrameSource,
        caps: EptVpidCaps,
    ) -> Result<Self, Error> {
        let root = paging::new_table(mem, frames).map_err(|_| Error::OutOfMemory)?;
        Ok(Self { root, caps })
    }

    /// An EPT whose PML4 already lives at `root` (for the kernel object that stores only
    /// the root).
    pub const fn from_root(root: u64, caps: EptVpidCaps) -> Self {
        Self { root: root & ADDR_MASK, caps }
    }

    /// The host-physical address of the PML4.
    pub const fn root(&self) -> u64 {
        self.root
    }

    /// The EPT pointer for this space: 4-level walk, write-back paging structures
    /// (uncacheable if the CPU offers only that), A/D flags if `accessed_dirty`.
    pub fn eptp(&self, accessed_dirty: bool) -> Result<Eptp, Error> {
        if !self.caps.walk_length_4() {
            return Err(Error::Unsupported("a 4-level page walk"));
        }
        let ty = self
            .caps
            .table_memory_type()
            .ok_or(Error::Unsupported("a write-back or uncacheable paging-structure type"))?;
        if accessed_dirty && !self.caps.accessed_dirty() {
            return Err(Error::Unsupported("accessed and dirty flags"));
        }
        let ad = if accessed_dirty { EPTP_AD } else { 0 };
        Ok(Eptp(self.root | EPTP_WALK_4 | ad | ty as u64))
    }

    /// Check a raw EPT pointer the way VM entry does (SDM 27.2.1.1) against `caps`, and
    /// that the root fits in `maxphyaddr` bits.
    pub fn check_eptp(raw: u64, caps: EptVpidCaps, maxphyaddr: u8) -> Option<Eptp> {
        let ty_ok = match raw & 7 {
            0 => caps.uncacheable(),
            6 => caps.write_back(),
            _ => false,
        };
        let walk_ok = raw & (7 << 3) == EPTP_WALK_4 && caps.walk_length_4();
        let ad_ok = raw & EPTP_AD == 0 || caps.accessed_dirty();
        let reserved = raw & EPTP_FLAGS & !0x7f != 0;
        let fits =
            raw & ADDR_MASK < 1u64.checked_shl(maxphyaddr.into()).unwrap_or(0) || maxphyaddr >= 52;
        (ty_ok && walk_ok && ad_ok && !reserved && fits && raw >> 52 == 0).then_some(Eptp(raw))
    }

    fn leaf_bits(&self, access: Access) -> Result<u64, Error> {
        let bits = access.bits();
        let write_without_read = access.write && !access.read;
        let execute_only = access.execute && !access.read;
        if bits == 0 || write_without_read || (execute_only && !self.caps.execute_only()) {
            return Err(Error::BadAccess);
        }
        Ok(bits | (MemoryType::WriteBack as u64) << MEMORY_TYPE_SHIFT)
    }

    /// Map the guest-physical page of `size` at `gpa` to the host frame `host` with
    /// `access`, memory type write-back (combined with the guest's PAT, which is how RAM
    /// should behave). Intermediate structures allow everything; the leaf decides.
    pub fn map(
        &self,
        mem: &mut impl PhysMemory,
        frames: &mut impl FrameSource,
        gpa: u64,
        host: u64,
        access: Access,
        size: FrameSize,
    ) -> Result<(), Error> {
        check_gpa(gpa, size)?;
        if !host.is_multiple_of(size.bytes()) || host & !ADDR_MASK != 0 {
            return Err(Error::BadHostAddress);
        }
        let mut leaf = self.leaf_bits(access)?;
        if size == FrameSize::Large {
            if !self.caps.pages_2m() {
                return Err(Error::Unsupported("2 MiB pages"));
            }
            leaf |= LARGE;
        }
        let mut table = self.root;
        for level in size.walk() {
            let i = index(gpa, level);
            let e = paging::entry(mem, table, i);
            table = if !present(e) {
                let t = paging::new_table(mem, frames).map_err(|_| Error::OutOfMemory)?;
                paging::set_entry(mem, table, i, t | READ | WRITE | EXECUTE);
                t
            } else if level < 3 && e & LARGE != 0 {
                return Err(Error::LargePageInTheWay);
            } else {
                e & ADDR_MASK
            };
        }
        let i = index(gpa, size.level());
        let e = paging::entry(mem, table, i);
        if present(e) {
            let same = size == FrameSize::Small || e & LARGE != 0;
            return Err(if same { Error::AlreadyMapped } else { Error::TableInTheWay });
        }
        paging::set_entry(mem, table, i, host | leaf);
        Ok(())
    }

    /// The table and index of the entry that maps the page of `size` at `gpa`, if the
    /// walk reaches that table.
    fn leaf_slot(
        &self,
        mem: &mut impl PhysMemory,
        gpa: u64,
        size: FrameSize,
    ) -> Result<Option<(u64, usize)>, Error> {
        check_gpa(gpa, size)?;
        let mut table = self.root;
        for level in size.walk() {
            let e = paging::entry(mem, table, index(gpa, level));
            if !present(e) {
                return Ok(None);
            }
            if level < 3 && e & LARGE != 0 {
                return Err(Error::LargePageInTheWay);
            }
            table = e & ADDR_MASK;
        }
        Ok(Some((table, index(gpa, size.level()))))
    }

    /// Remove the mapping of the page of `size` at `gpa`; returns the host frame it
    /// mapped, `None` if no such page was mapped. The paging structures stay (they are
    /// freed with the space). The caller must INVEPT before reusing the frame.
    pub fn unmap(
        &self,
        mem: &mut impl PhysMemory,
        gpa: u64,
        size: FrameSize,
    ) -> Result<Option<u64>, Error> {
        let Some((table, i)) = self.leaf_slot(mem, gpa, size)? else { return Ok(None) };
        let e = paging::entry(mem, table, i);
        if !present(e) || (size == FrameSize::Large && e & LARGE == 0) {
            return Ok(None);
        }
        paging::set_entry(mem, table, i, 0);
        Ok(Some(e & ADDR_MASK))
    }

    /// Change the rights of the existing 4 KiB mapping at `gpa`; returns the host frame,
    /// `None` if nothing is mapped there. The caller must INVEPT afterwards.
    pub fn protect(
        &self,
        mem: &mut impl PhysMemory,
        gpa: u64,
        access: Access,
    ) -> Result<Option<u64>, Error> {
        let leaf = self.leaf_bits(access)?;
        let Some((table, i)) = self.leaf_slot(mem, gpa, FrameSize::Small)? else {
            return Ok(None);
        };
        let e = paging::entry(mem, table, i);
        if !present(e) {
            return Ok(None);
        }
        paging::set_entry(mem, table, i, (e & ADDR_MASK) | leaf);
        Ok(Some(e & ADDR_MASK))
    }

    /// Translate a guest-physical address (any alignment); `None` if unmapped or beyond
    /// 48 bits. Large leaves are followed.
    pub fn translate(&self, mem: &mut impl PhysMemory, gpa: u64) -> Option<Translation> {
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        let mut rights = READ | WRITE | EXECUTE;
        for level in [3u32, 2, 1, 0] {
            let e = paging::entry(mem, table, index(gpa, level));
            if !present(e) {
                return None;
            }
            rights &= e;
            if level == 0 || (e & LARGE != 0 && (level == 1 || level == 2)) {
                let page_size = 1u64 << (12 + 9 * level);
                let host = (e & ADDR_MASK & !(page_size - 1)) | (gpa & (page_size - 1));
                return Some(Translation { host, access: Access::from_bits(rights), page_size });
            }
            table = e & ADDR_MASK;
        }
        None
    }

    /// Call `f` with every paging-structure frame of this EPT, leaves' tables first and
    /// the PML4 last, so a destroyed GuestSpace can return them to the allocator.
    pub fn for_each_table(&self, mem: &mut impl PhysMemory, mut f: impl FnMut(u64)) {
        for i3 in 0..512 {
            let e3 = paging::entry(mem, self.root, i3);
            if !present(e3) {
                continue;
            }
            let pdpt = e3 & ADDR_MASK;
            for i2 in 0..512 {
                let e2 = paging::entry(mem, pdpt, i2);
                if !present(e2) || e2 & LARGE != 0 {
                    continue;
                }
                let pd = e2 & ADDR_MASK;
                for i1 in 0..512 {
                    let e1 = paging::entry(mem, pd, i1);
                    if present(e1) && e1 & LARGE == 0 {
                        f(e1 & ADDR_MASK);
                    }
                }
                f(pd);
            }
            f(pdpt);
        }
        f(self.root);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed test is a panic")]
mod tests {
    use super::{
        Access, Ept, EptVpidCaps, Eptp, Error, InveptType, InvvpidType, MemoryType,
        MSR_VMX_EPT_VPID_CAP,
    };
    use crate::paging;
    use crate::paging::fake::Memory;
    use crate::paging::FrameSize::{Large, Small};

    /// A Skylake-like IA32_VMX_EPT_VPID_CAP: execute-only, 4-level walk, UC and WB, 2 MiB
    /// and 1 GiB pages, INVEPT (single and all context), A/D flags, advanced EPT-violation
    /// information, INVVPID (all four types).
    const SKYLAKE: u64 = 0x0000_0f01_0673_4141;

    fn caps() -> EptVpidCaps {
        EptVpidCaps::from_raw(SKYLAKE)
    }

    /// Table frames from a separate counter, so `mem` can be borrowed as memory.
    fn setup(caps: EptVpidCaps) -> (Memory, Memory, Ept) {
        let mut mem = Memory::default();
        let mut frames = Memory { next: 0x40_0000, ..Default::default() };
        let ept = Ept::new(&mut mem, &mut frames, caps).unwrap();
        (mem, frames, ept)
    }

    #[test]
    fn decodes_the_capability_msr() {
        assert_eq!(MSR_VMX_EPT_VPID_CAP, 0x48c);
        let c = caps();
        assert!(c.execute_only() && c.walk_length_4() && c.uncacheable() && c.write_back());
        assert!(c.pages_2m() && c.pages_1g() && c.accessed_dirty());
        assert!(c.invept(InveptType::SingleContext) && c.invept(InveptType::AllContext));
        assert!(c.invvpid(InvvpidType::IndividualAddress));
        assert!(c.invvpid(InvvpidType::SingleContextRetainingGlobals));
        assert_eq!(c.invept_for_space(), Some(InveptType::SingleContext));
        assert_eq!(c.table_memory_type(), Some(MemoryType::WriteBack));

        let none = EptVpidCaps::from_raw(0);
        assert!(!none.walk_length_4() && !none.invept(InveptType::AllContext));
        assert_eq!(none.invept_for_space(), None);
        // The type bits mean nothing without the instruction bit.
        let types_only = EptVpidCaps::from_raw(1 << 25 | 1 << 26 | 1 << 41);
        assert_eq!(types_only.invept_for_space(), None);
        assert!(!types_only.invvpid(InvvpidType::SingleContext));
        let all_only = EptVpidCaps::from_raw(1 << 20 | 1 << 26);
        assert_eq!(all_only.invept_for_space(), Some(InveptType::AllContext));
    }

    #[test]
    fn eptp_is_wb_walk4_and_checked_against_caps() {
        let (_, _, ept) = setup(caps());
        let p = ept.eptp(false).unwrap();
        assert_eq!(p.raw(), ept.root() | 0x1e, "WB (6) | walk length 4 (3 << 3)");
        assert_eq!(p.root(), ept.root());
        assert!(!p.accessed_dirty());
        let ad = ept.eptp(true).unwrap();
        assert_eq!(ad.raw(), ept.root() | 0x5e);
        assert!(ad.accessed_dirty());

        let no_ad = Ept::from_root(ept.root(), EptVpidCaps::from_raw(SKYLAKE & !(1 << 21)));
        assert_eq!(no_ad.eptp(true), Err(Error::Unsupported("accessed and dirty flags")));
        let uc_only = Ept::from_root(0x5000, EptVpidCaps::from_raw(1 << 6 | 1 << 8));
        assert_eq!(uc_only.eptp(false).unwrap().raw(), 0x5018);
        let no_walk = Ept::from_root(0x5000, EptVpidCaps::from_raw(1 << 14));
        assert!(matches!(no_walk.eptp(false), Err(Error::Unsupported(_))));
        let no_type = Ept::from_root(0x5000, EptVpidCaps::from_raw(1 << 6));
        assert!(matches!(no_type.eptp(false), Err(Error::Unsupported(_))));
    }

    #[test]
    fn check_eptp_applies_the_vm_entry_rules() {
        let c = caps();
        assert_eq!(Ept::check_eptp(0x5000 | 0x1e, c, 36), Some(Eptp(0x501e)));
        assert_eq!(Ept::check_eptp(0x5000 | 0x5e, c, 36).map(Eptp::raw), Some(0x505e));
        assert_eq!(Ept::check_eptp(0x5000 | 0x18, c, 36).map(Eptp::raw), Some(0x5018));
        assert_eq!(Ept::check_eptp(0x5000 | 0x1d, c, 36), None, "type 5 is not allowed");
        assert_eq!(Ept::check_eptp(0x5000 | 0x26, c, 36), None, "walk length 5");
        assert_eq!(Ept::check_eptp(0x5000 | 0x9e, c, 36), None, "bit 7 reserved here");
        assert_eq!(Ept::check_eptp(0x5000 | 0x81e, c, 36), None, "bit 11 reserved");
        assert_eq!(Ept::check_eptp(1 << 36 | 0x1e, c, 36), None, "beyond MAXPHYADDR");
        assert!(Ept::check_eptp(1 << 36 | 0x1e, c, 52).is_some());
        assert_eq!(Ept::check_eptp(1 << 60 | 0x1e, c, 52), None);
        let no_wb = EptVpidCaps::from_raw(SKYLAKE & !(1 << 14));
        assert_eq!(Ept::check_eptp(0x501e, no_wb, 36), None);
        let no_ad = EptVpidCaps::from_raw(SKYLAKE & !(1 << 21));
        assert_eq!(Ept::check_eptp(0x505e, no_ad, 36), None);
    }

    #[test]
    fn map_translate_unmap() {
        let (mut mem, mut frames, ept) = setup(caps());
        ept.map(&mut mem, &mut frames, 0x10_0000, 0x80_0000, Access::RWX, Small).unwrap();
        ept.map(&mut mem, &mut frames, 0x10_1000, 0x80_5000, Access::RX, Small).unwrap();
        ept.map(&mut mem, &mut frames, 0xffff_ffff_f000, 0x9000, Access::R, Small).unwrap();

        let t = ept.translate(&mut mem, 0x10_0123).unwrap();
        assert_eq!((t.host, t.access, t.page_size), (0x80_0123, Access::RWX, 4096));
        let t = ept.translate(&mut mem, 0x10_1fff).unwrap();
        assert_eq!((t.host, t.access), (0x80_5fff, Access::RX));
        assert_eq!(ept.translate(&mut mem, 0xffff_ffff_f001).unwrap().host, 0x9001);
        assert_eq!(ept.translate(&mut mem, 0x10_2000), None);
        assert_eq!(ept.translate(&mut mem, 1 << 48), None);

        // The leaf is RWX | WB (6 << 3) | host address, bits per SDM 29.3.2.
        let pml4e = paging::entry(&mut mem, ept.root(), 0);
        assert_eq!(pml4e & 7, 7, "intermediate entries allow everything");
        assert_eq!(pml4e & 0xff8, 0, "no memory type or large bit above a leaf");
        let t = ept.translate(&mut mem, 0x10_0000).unwrap();
        assert_eq!(t.host, 0x80_0000);

        assert_eq!(
            ept.map(&mut mem, &mut frames, 0x10_0000, 0x70_0000, Access::RW, Small),
            Err(Error::AlreadyMapped)
        );
        assert_eq!(ept.unmap(&mut mem, 0x10_0000, Small), Ok(Some(0x80_0000)));
        assert_eq!(ept.unmap(&mut mem, 0x10_0000, Small), Ok(None));
        assert_eq!(ept.unmap(&mut mem, 0x7000_0000, Small), Ok(None), "no tables there");
        assert_eq!(ept.translate(&mut mem, 0x10_0000), None);
        ept.map(&mut mem, &mut frames, 0x10_0000, 0x70_0000, Access::RW, Small).unwrap();
        assert_eq!(ept.translate(&mut mem, 0x10_0000).unwrap().access, Access::RW);
    }

    #[test]
    fn leaf_entry_layout() {
        let (mut mem, mut frames, ept) = setup(caps());
        ept.map(&mut mem, &mut frames, 0x3000, 0xabc_d000, Access::RW, Small).unwrap();
        let mut table = ept.root();
        for level in [3, 2, 1] {
            table = paging::entry(&mut mem, table, super::index(0x3000, level)) & paging::ADDR_MASK;
        }
        let leaf = paging::entry(&mut mem, table, 3);
        assert_eq!(leaf, 0xabc_d000 | 6 << 3 | 0b011);
    }

    #[test]
    fn refuses_bad_addresses_and_rights() {
        let (mut mem, mut frames, ept) = setup(caps());
        let mut map = |gpa, host, access| ept.map(&mut mem, &mut frames, gpa, host, access, Small);
        assert_eq!(map(0x1001, 0x2000, Access::RWX), Err(Error::BadGuestAddress));
        assert_eq!(map(1 << 48, 0x2000, Access::RWX), Err(Error::BadGuestAddress));
        assert_eq!(map(0x1000, 0x2001, Access::RWX), Err(Error::BadHostAddress));
        assert_eq!(map(0x1000, 1 << 52, Access::RWX), Err(Error::BadHostAddress));
        assert_eq!(map(0x1000, 0x2000, Access::default()), Err(Error::BadAccess));
        let write_only = Access { read: false, write: true, execute: false };
        assert_eq!(map(0x1000, 0x2000, write_only), Err(Error::BadAccess));
        let exec_only = Access { read: false, write: false, execute: true };
        assert_eq!(map(0x1000, 0x2000, exec_only), Ok(()));
        let (mut mem, mut frames, strict) = setup(EptVpidCaps::from_raw(SKYLAKE & !1));
        assert_eq!(
            strict.map(&mut mem, &mut frames, 0x1000, 0x2000, exec_only, Small),
            Err(Error::BadAccess)
        );
        assert_eq!(strict.unmap(&mut mem, 0x1234, Small), Err(Error::BadGuestAddress));
    }

    #[test]
    fn protect_changes_rights_only() {
        let (mut mem, mut frames, ept) = setup(caps());
        ept.map(&mut mem, &mut frames, 0x5000, 0x9000, Access::RWX, Small).unwrap();
        assert_eq!(ept.protect(&mut mem, 0x5000, Access::R), Ok(Some(0x9000)));
        let t = ept.translate(&mut mem, 0x5000).unwrap();
        assert_eq!((t.host, t.access), (0x9000, Access::R));
        assert_eq!(ept.protect(&mut mem, 0x6000, Access::R), Ok(None));
        let write_only = Access { read: false, write: true, execute: false };
        assert_eq!(ept.protect(&mut mem, 0x5000, write_only), Err(Error::BadAccess));
    }

    #[test]
    fn large_pages_are_translated_and_block_4k_mappings() {
        let (mut mem, mut frames, ept) = setup(caps());
        ept.map(&mut mem, &mut frames, 0x20_0000, 0x1000, Access::RWX, Small).unwrap();
        // Hand-install a 2 MiB leaf at 0x40_0000 and a 1 GiB leaf at 1 GiB.
        let pdpt = paging::entry(&mut mem, ept.root(), 0) & paging::ADDR_MASK;
        let pd = paging::entry(&mut mem, pdpt, 0) & paging::ADDR_MASK;
        paging::set_entry(&mut mem, pd, 2, 0x4000_0000 | 1 << 7 | 6 << 3 | 0b101);
        paging::set_entry(&mut mem, pdpt, 1, 0x8000_0000 | 1 << 7 | 6 << 3 | 0b111);
        let t = ept.translate(&mut mem, 0x45_6789).unwrap();
        assert_eq!((t.host, t.page_size), (0x4005_6789, 2 << 20));
        assert_eq!(t.access, Access { read: true, write: false, execute: true });
        let t = ept.translate(&mut mem, 0x4123_4567).unwrap();
        assert_eq!((t.host, t.page_size), (0x8123_4567, 1 << 30));
        assert_eq!(
            ept.map(&mut mem, &mut frames, 0x40_1000, 0x2000, Access::RWX, Small),
            Err(Error::LargePageInTheWay)
        );
        assert_eq!(ept.unmap(&mut mem, 0x4000_1000, Small), Err(Error::LargePageInTheWay));
    }

    #[test]
    fn large_frames_are_2m_leaves() {
        let (mut mem, mut frames, ept) = setup(caps());
        let mut map = |mem: &mut Memory, gpa, host, size| {
            ept.map(mem, &mut frames, gpa, host, Access::RWX, size)
        };
        assert_eq!(map(&mut mem, 0x30_0000, 0x20_0000, Large), Err(Error::BadGuestAddress));
        assert_eq!(map(&mut mem, 0x20_0000, 0x21_0000, Large), Err(Error::BadHostAddress));
        map(&mut mem, 0x20_0000, 0x60_0000, Large).unwrap();
        let t = ept.translate(&mut mem, 0x3f_ffff).unwrap();
        assert_eq!((t.host, t.page_size, t.access), (0x7f_ffff, 2 << 20, Access::RWX));
        let pdpt = paging::entry(&mut mem, ept.root(), 0) & paging::ADDR_MASK;
        let pd = paging::entry(&mut mem, pdpt, 0) & paging::ADDR_MASK;
        assert_eq!(paging::entry(&mut mem, pd, 1), 0x60_0000 | 1 << 7 | 6 << 3 | 0b111);
        assert_eq!(map(&mut mem, 0x20_0000, 0x80_0000, Large), Err(Error::AlreadyMapped));
        assert_eq!(map(&mut mem, 0x20_1000, 0x1000, Small), Err(Error::LargePageInTheWay));
        map(&mut mem, 0x40_0000, 0x1000, Small).unwrap();
        assert_eq!(map(&mut mem, 0x40_0000, 0x80_0000, Large), Err(Error::TableInTheWay));

        assert_eq!(ept.unmap(&mut mem, 0x20_1000, Small), Err(Error::LargePageInTheWay));
        assert_eq!(ept.unmap(&mut mem, 0x40_0000, Large), Ok(None), "a table, no leaf");
        assert_eq!(ept.unmap(&mut mem, 0x20_0000, Large), Ok(Some(0x60_0000)));
        assert_eq!(ept.translate(&mut mem, 0x20_0000), None);
        map(&mut mem, 0x20_0000, 0x60_0000, Large).unwrap();
        let mut seen = Vec::new();
        ept.for_each_table(&mut mem, |f| seen.push(f));
        assert!(!seen.contains(&0x60_0000), "a large leaf is no table");

        let (mut mem, mut frames, no_2m) = setup(EptVpidCaps::from_raw(SKYLAKE & !(1 << 16)));
        assert_eq!(
            no_2m.map(&mut mem, &mut frames, 0, 0x20_0000, Access::RW, Large),
            Err(Error::Unsupported("2 MiB pages"))
        );
    }

    #[test]
    fn running_out_of_frames_is_an_error() {
        let mut mem = Memory::default();
        let mut frames = Memory { next: 0x40_0000, limit: Some(2), ..Default::default() };
        let ept = Ept::new(&mut mem, &mut frames, caps()).unwrap();
        assert_eq!(
            ept.map(&mut mem, &mut frames, 0x1000, 0x2000, Access::RWX, Small),
            Err(Error::OutOfMemory)
        );
        let mut none = Memory { limit: Some(0), ..Default::default() };
        assert_eq!(Ept::new(&mut mem, &mut none, caps()), Err(Error::OutOfMemory));
    }

    #[test]
    fn for_each_table_visits_every_structure_once() {
        let (mut mem, mut frames, ept) = setup(caps());
        let before = frames.next;
        for gpa in [0x1000, 0x2000, 0x20_0000, 0x4000_0000, 0x80_0000_0000] {
            ept.map(&mut mem, &mut frames, gpa, 0x9000, Access::RWX, Small).unwrap();
        }
        let allocated = (frames.next - before) / 0x1000;
        let mut seen = Vec::new();
        ept.for_each_table(&mut mem, |f| seen.push(f));
        assert_eq!(seen.last(), Some(&ept.root()));
        // (PDPT, PD, PT) for 0x1000 and 0x2000, a PT for 2 MiB, (PD, PT) at 1 GiB and
        // (PDPT, PD, PT) at 512 GiB: nine structures besides the PML4.
        assert_eq!(allocated, 9);
        assert_eq!(seen.len(), 10);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10, "each structure once");
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            format!("{}", Error::Unsupported("a 4-level page walk")),
            "EPT needs a 4-level page walk, which this CPU lacks"
        );
    }
}
