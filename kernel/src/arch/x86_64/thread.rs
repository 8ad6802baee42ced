//! Putting a thread on the CPU: its address space, FPU state, and the save area the
//! entry stubs write to.

use super::memory::PHYS_OFFSET;
use super::{cpu, fpu, gdt, percpu};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::context::CONTEXT_SIZE;
use kernel::state::Kernel;
use kernel::store::Store;

/// The thread whose FPU registers are in the CPU (0: none).
static FPU_OWNER: AtomicU64 = AtomicU64::new(0);
/// The thread whose frame this CPU's current context is.
static ON_CPU: AtomicU64 = AtomicU64::new(0);

/// Make the kernel's current thread the one the return path resumes.
pub fn activate<S: Store>(k: &mut Kernel<S>) {
    let cur = k.current;
    if cur == ON_CPU.load(Relaxed) {
        return;
    }
    // The previous thread's TCB memory cannot have been reused yet: objects are only
    // made by a retype, and no retype runs between its last syscall and this switch.
    release_fpu(k);
    fpu::restore(&k.store.tcb(cur).fpu);
    FPU_OWNER.store(cur, Relaxed);
    let ctx = PHYS_OFFSET + cur; // the context is the first field of the TCB
    percpu::set_current_context(ctx);
    gdt::set_rsp0(ctx + CONTEXT_SIZE as u64);
    if let Some(root) = k.current_root() {
        if cpu::read_cr3() != root {
            // SAFETY: every VSpace shares the kernel half, so the kernel keeps running.
            unsafe { cpu::write_cr3(root) }
        }
    }
    ON_CPU.store(cur, Relaxed);
    super::exit_trace::thread_active(&mut k.store.tcb(cur).context);
}

/// Save the user FPU state to its thread before a guest's state is loaded.
pub fn release_fpu<S: Store>(k: &mut Kernel<S>) {
    let owner = FPU_OWNER.swap(0, Relaxed);
    if owner != 0 {
        fpu::save(&mut k.store.tcb(owner).fpu);
    }
}

/// Forget the thread on the CPU (before idling), so the next activation reloads all.
pub fn deactivate() {
    // The save area stays as it is: only `activate` leads back to ring 3, and it sets the
    // area first (so no entry from ring 3 can find a stale one).
    ON_CPU.store(0, Relaxed);
}
