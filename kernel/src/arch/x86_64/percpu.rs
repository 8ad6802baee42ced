//! Each CPU's block of what the entry stubs need, reached through GS: while the kernel
//! runs, IA32_GS_BASE is the CPU's block and IA32_KERNEL_GS_BASE holds ring 3's GS base;
//! the stubs `swapgs` on every entry from ring 3 and before every return to it. A VM exit
//! loads the block as the host GS base (the VMCS host state).
//!
//! Interrupts reach the kernel from ring 0 only while it idles (with GS already the
//! block's); an NMI there, even between `syscall` and its `swapgs`, is ignored without
//! reading the block (`trap::classify`), and an #MC is reported as a kernel fault, which
//! does not use it either.

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
    /// This CPU's index (0: the boot CPU).
    cpu: AtomicU64,
    /// The thread whose frame the return path resumes (0: none, after idling, a guest,
    /// or a stall: the next activation reloads everything).
    on_cpu: AtomicU64,
    /// The thread whose FPU registers are in this CPU (0: none).
    fpu_owner: AtomicU64,
    /// The VMCS active on this CPU (0: none).
    active_vmcs: AtomicU64,
    /// A tick arrived while a guest ran or the CPU idled (1: yes).
    tick: AtomicU64,
    /// What a kernel entry compares with the kernel state's CPU: this CPU's index, or
    /// [`DROPPED`] after a stall dropped the entry being made (one test for both).
    key: AtomicU64,
    /// This CPU's TSS (RSP0 is set on every thread switch).
    tss: AtomicU64,
    /// This CPU's VMX root token while it is in VMX root operation (0: it is not).
    vmx_root: AtomicU64,
}

/// [`PerCpu::key`] after a stall dropped an entry from ring 3.
pub const DROPPED: u64 = u64::MAX;

/// Offsets the stubs use.
pub const CURRENT_CONTEXT: usize = offset_of!(PerCpu, current_context);
/// See [`PerCpu::user_rsp`].
pub const USER_RSP: usize = offset_of!(PerCpu, user_rsp);
/// See [`PerCpu::kernel_stack`].
pub const KERNEL_STACK: usize = offset_of!(PerCpu, kernel_stack);
/// See [`PerCpu::cpu`].
pub const CPU: usize = offset_of!(PerCpu, cpu);
/// See [`PerCpu::on_cpu`].
pub const ON_CPU: usize = offset_of!(PerCpu, on_cpu);
/// See [`PerCpu::fpu_owner`].
pub const FPU_OWNER: usize = offset_of!(PerCpu, fpu_owner);
/// See [`PerCpu::active_vmcs`].
pub const ACTIVE_VMCS: usize = offset_of!(PerCpu, active_vmcs);
/// See [`PerCpu::tick`].
pub const TICK: usize = offset_of!(PerCpu, tick);
/// See [`PerCpu::key`].
pub const KEY: usize = offset_of!(PerCpu, key);
/// See [`PerCpu::tss`].
pub const TSS: usize = offset_of!(PerCpu, tss);
/// See [`PerCpu::vmx_root`].
pub const VMX_ROOT: usize = offset_of!(PerCpu, vmx_root);

static BLOCKS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        current_context: AtomicU64::new(0),
        user_rsp: AtomicU64::new(0),
        kernel_stack: AtomicU64::new(0),
        cpu: AtomicU64::new(0),
        on_cpu: AtomicU64::new(0),
        fpu_owner: AtomicU64::new(0),
        active_vmcs: AtomicU64::new(0),
        tick: AtomicU64::new(0),
        key: AtomicU64::new(0),
        tss: AtomicU64::new(0),
        vmx_root: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// CPU `cpu`'s block address (the host GS base of its VMCSs).
pub fn base(cpu: usize) -> u64 {
    &BLOCKS[cpu] as *const PerCpu as u64
}

/// Point this CPU's GS at block `cpu` (ring 3's GS base starts at 0).
pub fn init(cpu: usize) {
    BLOCKS[cpu].kernel_stack.store(stacks::kernel_top(cpu), Relaxed);
    BLOCKS[cpu].cpu.store(cpu as u64, Relaxed);
    BLOCKS[cpu].key.store(cpu as u64, Relaxed);
    BLOCKS[cpu].tss.store(super::gdt::tss_base(cpu), Relaxed);
    // SAFETY: both MSRs exist on every x86-64 CPU; the kernel reaches its block through
    // GS only from here on, and ring 3 has no GS base of its own yet.
    unsafe {
        wrmsr(IA32_GS_BASE, base(cpu));
        wrmsr(IA32_KERNEL_GS_BASE, 0);
    }
}

/// Field `OFF` of this CPU's block.
#[inline(always)]
pub fn get<const OFF: usize>() -> u64 {
    let value: u64;
    // SAFETY: GS is this CPU's block while the kernel runs, and `OFF` one of its fields
    // (the constants above); the load is a plain read.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) value, off = const OFF,
            options(nostack, readonly, preserves_flags));
    }
    value
}

/// Set field `OFF` of this CPU's block.
#[inline(always)]
pub fn set<const OFF: usize>(value: u64) {
    // SAFETY: as for `get`; only this CPU writes its block (another reads it only where
    // its comment says so).
    unsafe {
        core::arch::asm!("mov gs:[{off}], {}", in(reg) value, off = const OFF,
            options(nostack, preserves_flags));
    }
}

/// The current thread's save area on this CPU (0: none).
pub fn current_context() -> u64 {
    get::<CURRENT_CONTEXT>()
}

/// Make `context` the current save area on this CPU.
pub fn set_current_context(context: u64) {
    set::<CURRENT_CONTEXT>(context);
}

/// This CPU's index.
#[inline(always)]
pub fn cpu() -> usize {
    get::<CPU>() as usize
}
