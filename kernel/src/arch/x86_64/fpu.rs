//! Per-thread x87/SSE state. The kernel is built soft-float and never touches these
//! registers, so user state only has to be switched when the running thread changes.

use super::cpu::{self, cr0, cr4};
use core::arch::asm;
use kernel::tcb::FpuArea;

/// Enable SSE for user code (CR0.EM off, MP and NE on; CR4.OSFXSR and OSXMMEXCPT).
pub fn init() {
    // SAFETY: these bits only affect x87/SSE instruction behaviour.
    unsafe {
        cpu::write_cr0((cpu::read_cr0() & !cr0::EM) | cr0::MP | cr0::NE);
        cpu::write_cr4(cpu::read_cr4() | cr4::OSFXSR | cr4::OSXMMEXCPT);
    }
}

/// Save the CPU's x87/SSE state into `area`.
pub fn save(area: &mut FpuArea) {
    // SAFETY: the area is 512 bytes and 16-byte aligned as FXSAVE requires.
    unsafe { asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) }
}

/// Load `area` into the CPU.
pub fn restore(area: &FpuArea) {
    // SAFETY: the area is aligned and was produced by `FpuArea::default` or `save`, so
    // its MXCSR has no reserved bits set.
    unsafe { asm!("fxrstor64 [{}]", in(reg) area.0.as_ptr(), options(nostack, readonly)) }
}
