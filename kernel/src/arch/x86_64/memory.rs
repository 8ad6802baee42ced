//! The kernel's address space: its image in the top 2 GiB with per-section permissions,
//! and a window onto physical memory at `PHYS_OFFSET` through which the kernel reaches
//! page tables, boot modules and user frames (never through user mappings).

use super::cpu::{self, cr4, rdmsr};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::paging::{self, PhysMemory, GLOBAL, HUGE, NO_EXECUTE, PRESENT, WRITABLE};
use protocols::x86::EFER_NXE;

/// Where physical memory is mapped.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// How much of it (2 MiB pages).
pub const PHYSMAP_SIZE: u64 = 4 << 30;
/// The kernel image's virtual base (= physical 0).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;
/// The kernel's image mapping covers this much (4 KiB pages).
const KERNEL_SPAN: u64 = 8 << 20;

const EFER: u32 = 0xc000_0080;

#[repr(C, align(4096))]
struct Table([AtomicU64; 512]);

impl Table {
    const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; 512])
    }
}

static PML4: Table = Table::new();
static PDPT_KERNEL: Table = Table::new();
static PD_KERNEL: Table = Table::new();
static PT_KERNEL: [Table; 4] = [const { Table::new() }; 4];
static PDPT_PHYS: Table = Table::new();
static PD_PHYS: [Table; 4] = [const { Table::new() }; 4];

extern "C" {
    static __kernel_phys_start: u8;
    static __text_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
    static __kernel_end: u8;
}

/// Physical address of a kernel static.
fn phys_of<T>(v: &T) -> u64 {
    v as *const T as u64 - KERNEL_VMA
}

/// The kernel image's physical extent, to keep it out of the frame allocator.
pub fn kernel_image() -> (u64, u64) {
    let start = &raw const __kernel_phys_start as u64;
    let end = &raw const __kernel_end as u64 - KERNEL_VMA;
    (start, end)
}

/// Whether NX may be used in page tables.
pub fn nx_enabled() -> bool {
    // SAFETY: EFER exists on every x86-64 CPU.
    let efer = unsafe { rdmsr(EFER) };
    efer & EFER_NXE != 0
}

/// Build the kernel's page tables and switch to them.
pub fn init() -> Result<(), &'static str> {
    let nx = if nx_enabled() { NO_EXECUTE } else { 0 };
    let (text, rodata, data, end) = (
        &raw const __text_start as u64,
        &raw const __rodata_start as u64,
        &raw const __data_start as u64,
        &raw const __kernel_end as u64,
    );
    if end - KERNEL_VMA > KERNEL_SPAN {
        return Err("kernel image larger than its 8 MiB mapping");
    }
    for (i, pt) in PT_KERNEL.iter().enumerate() {
        for (j, e) in pt.0.iter().enumerate() {
            let va = KERNEL_VMA + ((i as u64) << 21) + ((j as u64) << 12);
            let flags = if super::stacks::is_guard(va) {
                // Below each kernel stack: an overflow faults here.
                continue;
            } else if (text..rodata).contains(&va) {
                PRESENT | GLOBAL
            } else if (rodata..data).contains(&va) {
                PRESENT | GLOBAL | nx
            } else if (data..end).contains(&va) {
                PRESENT | WRITABLE | GLOBAL | nx
            } else {
                continue;
            };
            e.store((va - KERNEL_VMA) | flags, Relaxed);
        }
        PD_KERNEL.0[i].store(phys_of(pt) | PRESENT | WRITABLE, Relaxed);
    }
    PDPT_KERNEL.0[510].store(phys_of(&PD_KERNEL) | PRESENT | WRITABLE, Relaxed);
    PML4.0[511].store(phys_of(&PDPT_KERNEL) | PRESENT | WRITABLE, Relaxed);

    for (i, pd) in PD_PHYS.iter().enumerate() {
        for (j, e) in pd.0.iter().enumerate() {
            let pa = ((i as u64) << 30) + ((j as u64) << 21);
            e.store(pa | PRESENT | WRITABLE | HUGE | GLOBAL | nx, Relaxed);
        }
        PDPT_PHYS.0[i].store(phys_of(pd) | PRESENT | WRITABLE, Relaxed);
    }
    PML4.0[256].store(phys_of(&PDPT_PHYS) | PRESENT | WRITABLE, Relaxed);

    // SAFETY: the tables were just built; the boot CPU runs on the boot tables.
    unsafe { enter() };
    Ok(())
}

/// Leave the boot page tables for the kernel's.
///
/// # Safety
/// `init` has built the kernel's tables, and the caller runs on the boot tables (which map
/// the kernel image and its stacks where the kernel's do) and uses the low identity map
/// no more.
pub unsafe fn enter() {
    // SAFETY: as the caller guarantees, the new tables map the running code, stack and
    // data at the same virtual addresses; only the low identity map goes away.
    unsafe {
        cpu::write_cr4(cpu::read_cr4() | cr4::PGE);
        cpu::write_cr3(phys_of(&PML4));
    }
}

/// Make the 2 MiB of the physical window around `phys` uncached (device registers).
pub fn uncache(phys: u64) {
    const PWT: u64 = 1 << 3;
    const PCD: u64 = 1 << 4;
    let (gib, two_mib) = ((phys >> 30) as usize, ((phys >> 21) & 0x1ff) as usize);
    if let Some(pd) = PD_PHYS.get(gib) {
        pd.0[two_mib].fetch_or(PWT | PCD, Relaxed);
        let va = PHYS_OFFSET + (phys & !0x1f_ffff);
        // SAFETY: INVLPG only drops the (global) TLB entry of the page just changed.
        unsafe { core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) }
    }
}

/// Physical address of the kernel's own PML4 (the address space VM exits return to).
pub fn kernel_root() -> u64 {
    phys_of(&PML4)
}

/// The kernel half of the PML4 (entries 256..511), which every address space shares.
pub fn kernel_half() -> [u64; 256] {
    core::array::from_fn(|i| PML4.0[256 + i].load(Relaxed))
}

/// Copy the kernel half into a new address space's PML4.
pub fn share_kernel_half(mem: &mut PhysMap, root: u64) {
    for (i, e) in kernel_half().into_iter().enumerate() {
        paging::set_entry(mem, root, 256 + i, e);
    }
}

/// Access to physical memory through the window. Only one is alive at a time (the kernel
/// is single-threaded and makes one per operation), so the `&mut` it hands out is unique.
pub struct PhysMap;

impl PhysMap {
    /// A byte view of `[phys, phys + len)`, or `None` outside the window.
    pub fn bytes(&self, phys: u64, len: u64) -> Option<&'static [u8]> {
        let end = phys.checked_add(len)?;
        if end > PHYSMAP_SIZE {
            return None;
        }
        // SAFETY: the range lies inside the physical window, mapped read-write for the
        // kernel's lifetime; boot modules and the boot information block it is used for
        // are reserved from the frame allocator, so nothing else writes them.
        Some(unsafe {
            core::slice::from_raw_parts((PHYS_OFFSET + phys) as *const u8, len as usize)
        })
    }
}

/// The frame at `phys` through the window.
///
/// # Safety
/// No other reference to the frame may be alive while the returned one is used.
pub unsafe fn frame_at(phys: u64) -> &'static mut [u8; 4096] {
    assert!(
        phys.is_multiple_of(4096) && phys < PHYSMAP_SIZE,
        "frame {phys:#x} outside the physical window"
    );
    // SAFETY: the frame is inside the window, mapped read-write for the kernel's
    // lifetime; the caller guarantees exclusivity.
    unsafe { &mut *((PHYS_OFFSET + phys) as *mut [u8; 4096]) }
}

impl PhysMemory for PhysMap {
    fn frame(&mut self, phys: u64) -> &mut [u8; 4096] {
        // SAFETY: frames reached this way are page tables, objects and user frames from
        // the allocator or untyped memory, never the kernel image; `&mut self` keeps the
        // borrow unique.
        unsafe { frame_at(phys) }
    }
}
