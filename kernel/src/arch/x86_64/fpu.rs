//! Per-thread x87/SSE state. The kernel is built soft-float and never touches these
//! registers, so user state only has to be switched when the running thread changes.

use super::cpu::{self, cr0, cr4};
use core::arch::asm;

/// An FXSAVE area.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpuState(pub [u8; 512]);

/// Enable SSE for user code (CR0.EM off, MP and NE on; CR4.OSFXSR and OSXMMEXCPT).
pub fn init() {
    // SAFETY: these bits only affect x87/SSE instruction behaviour.
    unsafe {
        cpu::write_cr0((cpu::read_cr0() & !cr0::EM) | cr0::MP | cr0::NE);
        cpu::write_cr4(cpu::read_cr4() | cr4::OSFXSR | cr4::OSXMMEXCPT);
    }
}

impl FpuState {
    /// The reset state (x87 default control word, MXCSR with all exceptions masked).
    pub fn initial() -> Self {
        let mut s = Self([0; 512]);
        s.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        s.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        s.0[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK (ignored by FXRSTOR)
        s
    }

    /// Save the CPU's user state here.
    pub fn save(&mut self) {
        // SAFETY: the area is 512 bytes and 16-byte aligned as FXSAVE requires.
        unsafe { asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) }
    }

    /// Load this state into the CPU.
    pub fn restore(&self) {
        // SAFETY: the area is aligned and was produced by `initial` or `save`, so its
        // MXCSR has no reserved bits set.
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly)) }
    }
}
