//! Guest linear-to-physical translation for the few instructions the VMM emulates with a
//! memory operand (string I/O), by walking the guest's own page tables in guest memory.
//!
//! All four x86 modes are handled: no paging, 32-bit (with 4 MiB PSE pages and PSE-36),
//! PAE and 4-level IA-32e. The walk reports the effective user and write permissions so
//! the caller can apply the guest's privilege rules; it never sets accessed/dirty bits
//! (the data access itself is done by the VMM, so nothing else would). A translation
//! failure cannot become a #PF here: CR2 is not VMCS state, so injecting one needs kernel
//! support; callers stop the VM with the failing address instead.
//!
//! A walk can be recorded ([`translate_recorded`]): the paging-structure entries it read,
//! by address and value. A walk is a function of CR3, the linear address and those
//! entries alone, so while every recorded entry still holds its value
//! ([`WalkRecord::holds`]) the same walk gives the same result: the MMIO emulator's
//! instruction cache (`mmio::site_cache`) re-validates a translation with those reads
//! instead of walking again.

use crate::guest_memory::{GuestMemory, MemoryError};
use protocols::x86::{CR0_PG, CR0_WP, CR4_PAE, CR4_PSE, EFER_LMA, PF_PRESENT, PF_USER, PF_WRITE};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const LARGE: u64 = 1 << 7;
/// Physical-address bits 51:12 of a 64-bit entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The guest's paging mode, from CR0, CR4 and EFER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG = 0: linear addresses are physical.
    Disabled,
    /// 32-bit paging; `pse` allows 4 MiB pages.
    Bits32 {
        /// CR4.PSE.
        pse: bool,
    },
    /// PAE paging (three levels, 64-bit entries).
    Pae,
    /// IA-32e 4-level paging.
    Long4,
}

impl PagingMode {
    /// The mode selected by these control registers.
    pub const fn from_regs(cr0: u64, cr4: u64, efer: u64) -> Self {
        if cr0 & CR0_PG == 0 {
            Self::Disabled
        } else if efer & EFER_LMA != 0 {
            Self::Long4
        } else if cr4 & CR4_PAE != 0 {
            Self::Pae
        } else {
            Self::Bits32 { pse: cr4 & CR4_PSE != 0 }
        }
    }
}

/// The #PF a guest access raises: the address for CR2 and the error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting linear address.
    pub linear: u64,
    /// The error code: present (a protection fault), write, user.
    pub error: u32,
}

impl PageFault {
    /// The fault of an access at `linear`: `present` when the page was there but its
    /// permissions refused the access, `write` for a write, `user` at CPL 3.
    pub fn new(linear: u64, present: bool, write: bool, user: bool) -> Self {
        let bit = |on: bool, value: u32| if on { value } else { 0 };
        Self { linear, error: bit(present, PF_PRESENT) | bit(write, PF_WRITE) | bit(user, PF_USER) }
    }
}

/// A data access the guest makes (the VMM makes it for the guest, emulating).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAccess {
    /// A write rather than a read.
    pub write: bool,
    /// At CPL 3.
    pub user: bool,
    /// CR0.WP: supervisor writes honour read-only pages.
    pub write_protect: bool,
}

impl DataAccess {
    /// A read or write (`write`) at `cpl` under `cr0`.
    pub fn new(write: bool, cpl: u8, cr0: u64) -> Self {
        Self { write, user: cpl == 3, write_protect: cr0 & CR0_WP != 0 }
    }
}

/// Why a data access cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// The guest takes this #PF.
    PageFault(PageFault),
    /// The translation (or a paging structure) lies outside the RAM the VMM sees.
    Memory(MemoryError),
}

/// The guest-physical address of `access` at `linear`, judged as the CPU would: a #PF
/// when a paging-structure entry is not present (error code without the present bit),
/// or when the entries forbid it (present bit): a user access to a supervisor page, or a
/// write to a read-only page by CPL 3 or with CR0.WP set.
pub fn translate_access(
    mem: &impl GuestMemory,
    mode: PagingMode,
    cr3: u64,
    linear: u64,
    access: DataAccess,
) -> Result<u64, AccessError> {
    let DataAccess { write, user, write_protect } = access;
    let t = translate(mem, mode, cr3, linear).map_err(|e| match e {
        TranslateError::NotPresent { .. } => {
            AccessError::PageFault(PageFault::new(linear, false, write, user))
        }
        TranslateError::Memory(m) => AccessError::Memory(m),
    })?;
    let denied = (user && !t.user) || (write && !t.writable && (user || write_protect));
    if denied {
        return Err(AccessError::PageFault(PageFault::new(linear, true, write, user)));
    }
    Ok(t.gpa)
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The guest-physical address.
    pub gpa: u64,
    /// Every level allows writes.
    pub writable: bool,
    /// Every level allows user-mode access.
    pub user: bool,
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// A paging-structure entry on the walk is not present: the guest would take #PF.
    NotPresent {
        /// The linear address being translated.
        linear: u64,
    },
    /// A paging structure lies outside the RAM the VMM can see.
    Memory(MemoryError),
}

impl From<MemoryError> for TranslateError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

/// The most paging-structure entries one walk reads (4-level paging).
pub const MAX_WALK: usize = 4;

/// The paging-structure entries one walk read: guest-physical address and value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkRecord {
    entries: [(u64, u64); MAX_WALK],
    len: u8,
    /// The entries are 32-bit (32-bit paging), not 64-bit.
    narrow: bool,
}

impl WalkRecord {
    fn push(&mut self, gpa: u64, value: u64, narrow: bool) {
        if let Some(slot) = self.entries.get_mut(usize::from(self.len)) {
            *slot = (gpa, value);
            self.len = self.len.saturating_add(1);
        }
        self.narrow = narrow;
    }

    /// Whether every recorded entry still holds the value the walk read (then the walk
    /// would read the same entries and give the same translation).
    pub fn holds(&self, mem: &impl GuestMemory) -> bool {
        let recorded = self.entries.get(..usize::from(self.len)).unwrap_or_default();
        recorded.iter().all(|&(gpa, value)| {
            let now =
                if self.narrow { mem.read_u32(gpa).map(u64::from) } else { mem.read_u64(gpa) };
            now == Ok(value)
        })
    }
}

/// What a walk does with each entry it reads besides using it: nothing, or record it.
trait Recorder {
    fn read(&mut self, gpa: u64, value: u64, narrow: bool);
}

/// The plain walk's recorder.
struct NoRecord;

impl Recorder for NoRecord {
    #[inline(always)]
    fn read(&mut self, _: u64, _: u64, _: bool) {}
}

impl Recorder for WalkRecord {
    fn read(&mut self, gpa: u64, value: u64, narrow: bool) {
        self.push(gpa, value, narrow);
    }
}

/// Accumulated permissions along a walk.
struct Walk {
    writable: bool,
    user: bool,
}

impl Walk {
    fn step(&mut self, entry: u64) {
        self.writable &= entry & WRITABLE != 0;
        self.user &= entry & USER != 0;
    }
}

/// Index bits of `linear` for a table level whose entries map `1 << shift` bytes.
fn index(linear: u64, shift: u32, bits: u32) -> u64 {
    (linear >> shift) & ((1u64 << bits).wrapping_sub(1))
}

/// Translate `linear` under `mode` with page-table root `cr3`.
pub fn translate(
    mem: &impl GuestMemory,
    mode: PagingMode,
    cr3: u64,
    linear: u64,
) -> Result<Translation, TranslateError> {
    translate_with(mem, mode, cr3, linear, &mut NoRecord)
}

/// [`translate`], recording in `record` (emptied first) the entries the walk read.
pub fn translate_recorded(
    mem: &impl GuestMemory,
    mode: PagingMode,
    cr3: u64,
    linear: u64,
    record: &mut WalkRecord,
) -> Result<Translation, TranslateError> {
    *record = WalkRecord::default();
    translate_with(mem, mode, cr3, linear, record)
}

fn translate_with(
    mem: &impl GuestMemory,
    mode: PagingMode,
    cr3: u64,
    linear: u64,
    rec: &mut impl Recorder,
) -> Result<Translation, TranslateError> {
    let mut walk = Walk { writable: true, user: true };
    let not_present = TranslateError::NotPresent { linear };
    let gpa = match mode {
        PagingMode::Disabled => linear & 0xffff_ffff,
        PagingMode::Bits32 { pse } => {
            let linear = linear & 0xffff_ffff;
            let pde_addr = (cr3 & 0xffff_f000) | index(linear, 22, 10) << 2;
            let pde = u64::from(mem.read_u32(pde_addr)?);
            rec.read(pde_addr, pde, true);
            if pde & PRESENT == 0 {
                return Err(not_present);
            }
            walk.step(pde);
            if pse && pde & LARGE != 0 {
                // PSE-36: entry bits 20:13 supply physical bits 39:32.
                let high = (pde >> 13) & 0xff;
                (pde & 0xffc0_0000) | high << 32 | (linear & 0x3f_ffff)
            } else {
                let pte_addr = (pde & 0xffff_f000) | index(linear, 12, 10) << 2;
                let pte = u64::from(mem.read_u32(pte_addr)?);
                rec.read(pte_addr, pte, true);
                if pte & PRESENT == 0 {
                    return Err(not_present);
                }
                walk.step(pte);
                (pte & 0xffff_f000) | (linear & 0xfff)
            }
        }
        PagingMode::Pae => {
            let linear = linear & 0xffff_ffff;
            let pdpte_addr = (cr3 & 0xffff_ffe0) | index(linear, 30, 2) << 3;
            let pdpte = mem.read_u64(pdpte_addr)?;
            rec.read(pdpte_addr, pdpte, false);
            // PDPTEs carry no permission bits.
            if pdpte & PRESENT == 0 {
                return Err(not_present);
            }
            walk_64(mem, &mut walk, rec, pdpte & ADDR_MASK, linear, &[21, 12])?
        }
        PagingMode::Long4 => {
            let pml4 = cr3 & ADDR_MASK;
            walk_64(mem, &mut walk, rec, pml4, linear, &[39, 30, 21, 12])?
        }
    };
    Ok(Translation { gpa, writable: walk.writable, user: walk.user })
}

/// Walk 64-bit-entry tables starting at `table`, one level per shift in `shifts`; large
/// pages are honoured at 1 GiB (shift 30) and 2 MiB (shift 21).
fn walk_64(
    mem: &impl GuestMemory,
    walk: &mut Walk,
    rec: &mut impl Recorder,
    mut table: u64,
    linear: u64,
    shifts: &[u32],
) -> Result<u64, TranslateError> {
    for &shift in shifts {
        let at = table | index(linear, shift, 9) << 3;
        let entry = mem.read_u64(at)?;
        rec.read(at, entry, false);
        if entry & PRESENT == 0 {
            return Err(TranslateError::NotPresent { linear });
        }
        walk.step(entry);
        let page_mask = (1u64 << shift).wrapping_sub(1);
        if shift == 12 || (matches!(shift, 21 | 30) && entry & LARGE != 0) {
            return Ok((entry & ADDR_MASK & !page_mask) | (linear & page_mask));
        }
        table = entry & ADDR_MASK;
    }
    Err(TranslateError::NotPresent { linear })
}

#[cfg(test)]
mod tests {
    use super::{translate, PagingMode, TranslateError, Translation};
    use crate::guest_memory::{GuestMemory, SliceMemory};

    fn put64(m: &mut SliceMemory<'_>, at: u64, v: u64) {
        m.write(at, &v.to_le_bytes()).unwrap();
    }

    fn put32(m: &mut SliceMemory<'_>, at: u64, v: u32) {
        m.write(at, &v.to_le_bytes()).unwrap();
    }

    #[test]
    fn mode_selection() {
        assert_eq!(PagingMode::from_regs(0x11, 0x20, 0x500), PagingMode::Disabled);
        assert_eq!(PagingMode::from_regs(0x8000_0011, 0x20, 0x500), PagingMode::Long4);
        assert_eq!(PagingMode::from_regs(0x8000_0011, 0x20, 0), PagingMode::Pae);
        assert_eq!(PagingMode::from_regs(0x8000_0011, 0x10, 0), PagingMode::Bits32 { pse: true });
    }

    #[test]
    fn no_paging_is_identity_within_4g() {
        let mut ram = [0u8; 0];
        let m = SliceMemory::new(0, &mut ram);
        let t = translate(&m, PagingMode::Disabled, 0, 0x1_0000_b800).unwrap();
        assert_eq!(t, Translation { gpa: 0xb800, writable: true, user: true });
    }

    #[test]
    fn long_mode_4k_2m_and_1g_pages() {
        let mut ram = vec![0u8; 0x10000];
        let mut m = SliceMemory::new(0, &mut ram);
        // PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000, PT at 0x4000.
        put64(&mut m, 0x1000 + 511 * 8, 0x2000 | 0x7); // 0xffff_ff80_0000_0000
        put64(&mut m, 0x2000, 0x3000 | 0x7);
        put64(&mut m, 0x3000, 0x4000 | 0x3); // supervisor-only below
        put64(&mut m, 0x4000 + 5 * 8, 0xa_b000 | 0x5); // read-only user page
        put64(&mut m, 0x3000 + 8, 0x20_0000 | 0x87); // 2 MiB page
        put64(&mut m, 0x2000 + 8, 0x4000_0000 | 0x83); // 1 GiB page
        let base = 0xffff_ff80_0000_0000u64;
        let t = translate(&m, PagingMode::Long4, 0x1000, base + 0x5123).unwrap();
        assert_eq!(t, Translation { gpa: 0xa_b123, writable: false, user: false });
        let t = translate(&m, PagingMode::Long4, 0x1000, base + 0x20_1234).unwrap();
        assert_eq!(t, Translation { gpa: 0x20_1234, writable: true, user: true });
        let t = translate(&m, PagingMode::Long4, 0x1000, base + 0x4123_4567).unwrap();
        assert_eq!(t.gpa, 0x4123_4567);
        let missing = base + 0x6000;
        assert_eq!(
            translate(&m, PagingMode::Long4, 0x1000, missing),
            Err(TranslateError::NotPresent { linear: missing })
        );
        assert!(matches!(
            translate(&m, PagingMode::Long4, 0xf_0000_0000, 0),
            Err(TranslateError::Memory(_))
        ));
    }

    #[test]
    fn pae_paging() {
        let mut ram = vec![0u8; 0x10000];
        let mut m = SliceMemory::new(0, &mut ram);
        // CR3 at 0x1020 (32-byte aligned), PDPTE 3 -> PD at 0x2000 -> PT at 0x3000.
        put64(&mut m, 0x1020 + 3 * 8, 0x2000 | 0x1);
        put64(&mut m, 0x2000 + 8, 0x3000 | 0x7);
        put64(&mut m, 0x3000 + 2 * 8, 0x7000 | 0x7);
        put64(&mut m, 0x2000, 0x40_0000 | 0x83);
        let t = translate(&m, PagingMode::Pae, 0x1020, 0xc020_2abc).unwrap();
        assert_eq!(t, Translation { gpa: 0x7abc, writable: true, user: true });
        assert_eq!(translate(&m, PagingMode::Pae, 0x1020, 0xc000_0001).unwrap().gpa, 0x40_0001);
        assert!(translate(&m, PagingMode::Pae, 0x1020, 0x0000_0000).is_err());
    }

    #[test]
    fn bits32_paging_with_pse() {
        let mut ram = vec![0u8; 0x10000];
        let mut m = SliceMemory::new(0, &mut ram);
        // PD at 0x1000; PDE 0x300 -> PT at 0x2000; PDE 0x301 a 4 MiB page with PSE-36.
        put32(&mut m, 0x1000 + 0x300 * 4, 0x2000 | 0x7);
        put32(&mut m, 0x2000 + 4 * 4, 0x9000 | 0x3);
        put32(&mut m, 0x1000 + 0x301 * 4, 0x0040_0000 | 1 << 13 | 0x87);
        let t = translate(&m, PagingMode::Bits32 { pse: false }, 0x1000, 0xc000_4010).unwrap();
        assert_eq!(t, Translation { gpa: 0x9010, writable: true, user: false });
        let t = translate(&m, PagingMode::Bits32 { pse: true }, 0x1000, 0xc040_0010).unwrap();
        assert_eq!(t.gpa, 0x1_0040_0010);
        // Without PSE the same PDE points at a page table.
        assert!(translate(&m, PagingMode::Bits32 { pse: false }, 0x1000, 0xc040_0010).is_err());
    }
}
