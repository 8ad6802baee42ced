//! What running CPUs ask of each other, with IPIs on one vector: a reschedule, where a
//! wake-up outranks what another CPU runs (or finds it idle), and a stall ([`stall`]): the
//! kernel lock's holder brings another CPU into the kernel and waits until it has dropped
//! everything it caches of kernel objects (the TLB shootdown among it).

use super::memory::{self, PHYS_OFFSET};
use super::percpu::{self, FPU_OWNER};
use super::{cpu, fpu, lapic, smp, thread, vcpu_run};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU64};
use kernel::acpi::MAX_CPUS;
use kernel::context::{UserContext, SYSCALL_VECTOR};
use kernel::store::Store;

/// Vector of the IPIs between CPUs: reschedule, and the stall request.
pub const IPI_VECTOR: u64 = 0xf0;

/// A stall asked of each CPU and not yet answered.
static STALL: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The EPT capabilities, for the INVEPT a stall makes (0: no EPT in use).
static EPT_CAPS: AtomicU64 = AtomicU64::new(0);

/// Ask the CPUs in `mask` (bit `i`: CPU `i`) to reschedule.
pub fn send_reschedule(mask: u64) {
    let me = percpu::cpu();
    for cpu in (0..MAX_CPUS).filter(|c| mask & (1 << c) != 0 && *c != me) {
        lapic::send_fixed(smp::apic_id(cpu), IPI_VECTOR as u8);
    }
}

/// Stall CPU `cpu` (the kernel lock held): bring it into the kernel and wait until it
/// answered, having dropped what it caches of kernel objects ([`answer_stall`]).
pub fn stall(cpu: usize) {
    if cpu == percpu::cpu() || cpu >= MAX_CPUS {
        return;
    }
    STALL[cpu].store(true, Release);
    lapic::send_fixed(smp::apic_id(cpu), IPI_VECTOR as u8);
    while STALL[cpu].load(Acquire) {
        core::hint::spin_loop();
    }
}

/// Stall every other online CPU (after a mapping or a VCpu went): all asked at once,
/// then each waited for.
pub fn stall_others(online: usize) {
    let me = percpu::cpu();
    let others = (0..online.min(MAX_CPUS)).filter(|c| *c != me);
    for cpu in others.clone() {
        STALL[cpu].store(true, Release);
        lapic::send_fixed(smp::apic_id(cpu), IPI_VECTOR as u8);
    }
    for cpu in others {
        while STALL[cpu].load(Acquire) {
            core::hint::spin_loop();
        }
    }
}

/// Answer a stall asked of this CPU, if any (while it waits for the kernel lock, with
/// interrupts off): the thread it entered from has its frame saved already (a `syscall`
/// is wound back to be made again: the entry is dropped), its FPU registers go to memory,
/// its active VMCS is cleared, and it leaves every address space for the kernel's, which
/// drops its TLB; EPT translations are invalidated. Nothing here refers to a kernel
/// object afterwards, so the stalling CPU may change, move or free any.
pub fn answer_stall() {
    let me = percpu::cpu();
    if !STALL[me].load(Acquire) {
        return;
    }
    let t = thread::on_cpu();
    if t != 0 {
        // SAFETY: the thread's save area is its TCB's first field; the stalling CPU does
        // not touch it until this CPU answers, and this CPU entered from it.
        let frame = unsafe { &mut *((PHYS_OFFSET + t) as *mut UserContext) };
        if frame.vector == SYSCALL_VECTOR {
            frame.rip = frame.rip.wrapping_sub(2);
        }
        thread::deactivate();
        percpu::set::<{ percpu::KEY }>(percpu::DROPPED);
    }
    let owner = percpu::get::<FPU_OWNER>();
    if owner != 0 {
        percpu::set::<FPU_OWNER>(0);
        // As above: the owner's TCB stays until this CPU answers.
        fpu::save(&mut Store::tcb(&mut super::phys_store::PhysStore, owner).fpu);
    }
    let ept = EPT_CAPS.load(Relaxed);
    vcpu_run::drop_vmx_state((ept != 0).then(|| kernel::vmx::ept::EptVpidCaps::from_raw(ept)));
    // SAFETY: the kernel's own root maps the kernel half as every address space does.
    unsafe { cpu::write_cr3(memory::kernel_root()) }
    STALL[me].store(false, Release);
}

/// The EPT capabilities the stalls invalidate with (set once VT-x is in use).
pub fn use_ept(caps: u64) {
    EPT_CAPS.store(caps, Relaxed);
}
