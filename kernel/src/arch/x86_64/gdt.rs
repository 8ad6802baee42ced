//! GDT and TSS. The selector order is fixed by SYSCALL/SYSRET: kernel code, kernel data,
//! user data, user code, then the TSS.
//!
//! The tables are arrays of atomics so they can be filled at boot and the TSS's RSP0
//! updated on each thread switch without `static mut`. Each CPU has its own pair (a busy
//! TSS cannot be loaded twice, and each CPU has its own IST stacks), so RSP0 is set in the
//! running CPU's TSS and a VMCS's host state names the tables of the CPU it is loaded on.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
const TSS_SEL: u16 = 0x28;

/// IST slots (1-based as the IDT uses them).
pub const IST_NMI: u8 = 1;
/// Double fault.
pub const IST_DF: u8 = 2;
/// Machine check.
pub const IST_MC: u8 = 3;

const CPUS: usize = kernel::acpi::MAX_CPUS;

static GDT: [[AtomicU64; 7]; CPUS] = [const { [const { AtomicU64::new(0) }; 7] }; CPUS];
/// 104-byte 64-bit TSS as 32-bit words (its 64-bit fields are not 8-byte aligned).
static TSS: [[AtomicU32; 26]; CPUS] = [const { [const { AtomicU32::new(0) }; 26] }; CPUS];

fn set_tss_u64(cpu: usize, word: usize, v: u64) {
    TSS[cpu][word].store(v as u32, Relaxed);
    TSS[cpu][word + 1].store((v >> 32) as u32, Relaxed);
}

/// CPU `cpu`'s GDT address (host state for VM exits).
pub fn gdt_base(cpu: usize) -> u64 {
    GDT[cpu].as_ptr() as u64
}

/// CPU `cpu`'s TSS address (host state for VM exits).
pub fn tss_base(cpu: usize) -> u64 {
    TSS[cpu].as_ptr() as u64
}

/// The TSS selector.
pub const TSS_SELECTOR: u16 = TSS_SEL;

/// The stack this CPU switches to on an interrupt from ring 3.
pub fn set_rsp0(top: u64) {
    let tss = super::percpu::get::<{ super::percpu::TSS }>() as *const AtomicU32;
    // SAFETY: the block holds this CPU's TSS (`percpu::init`), a static of 26 words, of
    // which RSP0 is words 1 and 2.
    let (low, high) = unsafe { (&*tss.add(1), &*tss.add(2)) };
    low.store(top as u32, Relaxed);
    high.store((top >> 32) as u32, Relaxed);
}

/// Build and load CPU `cpu`'s GDT and TSS (`cpu` < `MAX_CPUS`).
pub fn init(cpu: usize) {
    let (gdt, tss) = (&GDT[cpu], &TSS[cpu]);
    gdt[1].store(0x00af_9a00_0000_ffff, Relaxed); // kernel code, 64-bit
    gdt[2].store(0x00cf_9200_0000_ffff, Relaxed); // kernel data
    gdt[3].store(0x00cf_f200_0000_ffff, Relaxed); // user data, DPL 3
    gdt[4].store(0x00af_fa00_0000_ffff, Relaxed); // user code, 64-bit, DPL 3
    for i in 0..3 {
        // IST1 is at byte 36 = word 9.
        set_tss_u64(cpu, 9 + 2 * i, super::stacks::ist_top(cpu, i));
    }
    // No I/O permission bitmap yet: the map base points past the TSS limit.
    tss[25].store(104 << 16, Relaxed);
    let base = tss.as_ptr() as u64;
    let limit = 103u64;
    let low = limit | ((base & 0xff_ffff) << 16) | (0x89 << 40) | (((base >> 24) & 0xff) << 56);
    gdt[5].store(low, Relaxed);
    gdt[6].store(base >> 32, Relaxed);

    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr =
        Pointer { limit: (core::mem::size_of_val(gdt) - 1) as u16, base: gdt.as_ptr() as u64 };
    // SAFETY: the GDT is static and holds valid descriptors; the far return reloads CS
    // with the kernel code selector that the new table defines identically.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = const KERNEL_CS as u64,
            tmp = out(reg) _,
            ds = in(reg) u64::from(KERNEL_DS),
            tss = in(reg) u64::from(TSS_SEL),
        );
    }
}
