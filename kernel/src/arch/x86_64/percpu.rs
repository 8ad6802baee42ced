//! Each CPU's block of what the entry stubs need, reached through GS: while the kernel
//! runs, IA32_GS_BASE is the CPU's block and IA32_KERNEL_GS_BASE holds ring 3's GS base;
//! the stubs `swapgs` on every entry from ring 3 and before every return to it. A VM exit
//! loads the block as the host GS base (the VMCS host state).
//!
//! Interrupts reach the kernel from ring 0 only while it idles (with GS already the
//! block's); an NMI or #MC between `syscall` and its `swapgs` is reported as a kernel
//! fault, which does not use the block.

use super::cpu::wrmsr;
use super::stacks;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::acpi::MAX_CPUS;

const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// One CPU's block.
#[repr(C)]
pub struct PerCpu {
    /// The current thread's save area (0: none), where an entry from ring 3 saves its
    /// frame and whose end is the TSS's RSP0.
    current_context: AtomicU64,
    /// Ring 3's stack pointer during `syscall` entry.
    user_rsp: AtomicU64,
    /// The top of this CPU's kernel stack.
    kernel_stack: AtomicU64,
}

/// Offsets the stubs use.
pub const CURRENT_CONTEXT: usize = offset_of!(PerCpu, current_context);
/// See [`PerCpu::user_rsp`].
pub const USER_RSP: usize = offset_of!(PerCpu, user_rsp);
/// See [`PerCpu::kernel_stack`].
pub const KERNEL_STACK: usize = offset_of!(PerCpu, kernel_stack);

static BLOCKS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        current_context: AtomicU64::new(0),
        user_rsp: AtomicU64::new(0),
        kernel_stack: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// CPU `cpu`'s block address (the host GS base of its VMCSs).
pub fn base(cpu: usize) -> u64 {
    &BLOCKS[cpu] as *const PerCpu as u64
}

/// Point this CPU's GS at block `cpu` (ring 3's GS base starts at 0).
pub fn init(cpu: usize) {
    BLOCKS[cpu].kernel_stack.store(stacks::kernel_top(cpu), Relaxed);
    // SAFETY: both MSRs exist on every x86-64 CPU; the kernel reaches its block through
    // GS only from here on, and ring 3 has no GS base of its own yet.
    unsafe {
        wrmsr(IA32_GS_BASE, base(cpu));
        wrmsr(IA32_KERNEL_GS_BASE, 0);
    }
}

/// The current thread's save area on this CPU (0: none).
pub fn current_context() -> u64 {
    let value: u64;
    // SAFETY: GS is this CPU's block while the kernel runs; the load is a plain read.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) value, off = const CURRENT_CONTEXT,
            options(nostack, readonly, preserves_flags));
    }
    value
}

/// Make `context` the current save area on this CPU.
pub fn set_current_context(context: u64) {
    // SAFETY: GS is this CPU's block while the kernel runs; the stubs read the slot only
    // on the next entry from ring 3.
    unsafe {
        core::arch::asm!("mov gs:[{off}], {}", in(reg) context, off = const CURRENT_CONTEXT,
            options(nostack, preserves_flags));
    }
}
