//! The interrupt descriptor table: every vector points at its stub in `entry.rs`;
//! NMI, #DF and #MC run on their own IST stacks so a broken kernel stack still reports.

use super::entry::{isr_stubs, ISR_STUB_SIZE};
use super::gdt::{IST_DF, IST_MC, IST_NMI, KERNEL_CS};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

static IDT: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];

/// The IDT's address (host state for VM exits).
pub fn idt_base() -> u64 {
    IDT.as_ptr() as u64
}

/// Fill and load the IDT.
pub fn init() {
    let base = isr_stubs as *const () as u64;
    for vector in 0..256u64 {
        let handler = base + vector * ISR_STUB_SIZE;
        let ist = match vector {
            1 if super::exit_trace::DEBUG_ON_IST => IST_MC,
            2 => IST_NMI,
            8 => IST_DF,
            18 => IST_MC,
            _ => 0,
        };
        // Interrupt gate (interrupts stay off in the kernel), DPL 0: `int n` from ring 3
        // raises #GP instead of entering a stub.
        let low = (handler & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (u64::from(ist) << 32)
            | (0x8e << 40)
            | (((handler >> 16) & 0xffff) << 48);
        IDT[vector as usize * 2].store(low, Relaxed);
        IDT[vector as usize * 2 + 1].store(handler >> 32, Relaxed);
    }
    load();
}

/// Load the IDT (the same table on every CPU).
pub fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr =
        Pointer { limit: (core::mem::size_of_val(&IDT) - 1) as u16, base: IDT.as_ptr() as u64 };
    // SAFETY: the IDT is static and every gate points at a stub in `entry.rs`.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(nostack, readonly)) }
}
