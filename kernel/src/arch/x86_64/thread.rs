//! Putting a thread on the CPU: its address space, FPU state, and the save area the
//! entry stubs write to. What is on this CPU is kept in its block (`percpu.rs`).

use super::memory::PHYS_OFFSET;
use super::percpu::{self, FPU_OWNER, ON_CPU};
use super::{cpu, fpu, gdt};
use kernel::context::CONTEXT_SIZE;
use kernel::state::Kernel;
use kernel::store::Store;

/// Make the kernel's current thread the one the return path resumes.
pub fn activate<S: Store>(k: &mut Kernel<S>) {
    let cur = k.current;
    if cur == percpu::get::<ON_CPU>() {
        return;
    }
    // The previous thread's TCB memory cannot have been reused yet: objects are only
    // made by a retype, and no retype runs between its last syscall and this switch (a
    // thread running on another CPU is stalled, which releases its FPU, before it goes).
    release_fpu(k);
    fpu::restore(&k.store.tcb(cur).fpu);
    percpu::set::<FPU_OWNER>(cur);
    let ctx = PHYS_OFFSET + cur; // the context is the first field of the TCB
    percpu::set_current_context(ctx);
    gdt::set_rsp0(ctx + CONTEXT_SIZE as u64);
    if let Some(root) = k.current_root() {
        if cpu::read_cr3() != root {
            // SAFETY: every VSpace shares the kernel half, so the kernel keeps running.
            unsafe { cpu::write_cr3(root) }
        }
    }
    percpu::set::<ON_CPU>(cur);
    super::exit_trace::thread_active(&mut k.store.tcb(cur).context);
}

/// Save the user FPU state to its thread (before a guest's state is loaded, or before
/// the CPU idles: an idle CPU holds no thread's state, which could be deleted meanwhile).
pub fn release_fpu<S: Store>(k: &mut Kernel<S>) {
    let owner = percpu::get::<FPU_OWNER>();
    if owner != 0 {
        percpu::set::<FPU_OWNER>(0);
        fpu::save(&mut k.store.tcb(owner).fpu);
    }
}

/// Forget the thread on the CPU (before idling or entering a guest), so the next
/// activation reloads all.
pub fn deactivate() {
    // The save area stays as it is: only `activate` leads back to ring 3, and it sets the
    // area first (so no entry from ring 3 can find a stale one).
    percpu::set::<ON_CPU>(0);
}

/// The thread whose frame this CPU resumes (0: none: the entry being made came from a
/// guest or the idle loop, or a stall dropped it).
pub fn on_cpu() -> u64 {
    percpu::get::<ON_CPU>()
}
