//! The kernel's run loop: after a syscall or trap, run whatever the kernel chose next
//! (return to a thread in ring 3, enter a vCPU's guest, or idle until an interrupt)
//! until something returns to ring 3 or the machine stops.

use super::bkl::Held;
use super::percpu::{self, TICK};
use super::phys_store::PhysStore;
use super::{cpu, thread, vcpu_run};
use crate::kprintln;
use kernel::schedulable::Kind;
use kernel::state::{Kernel, Next};
use kernel::store::Store;

/// Nothing is left to run: say so and stop the machine with a failing verdict (a healthy
/// system ends through the root task's shutdown call).
pub fn no_runnable_thread() -> ! {
    crate::end_driver_line();
    kprintln!("kernel: no runnable thread left; halting");
    super::exit::exit(false)
}

/// Act on what the kernel decided after a syscall or trap.
pub fn resume(k: &mut Held, next: Next) {
    super::vcpu_run::flush(&mut **k);
    run_next(k, next);
}

/// [`resume`] for a caller that has nothing to flush first or whose next step flushes
/// itself (entering a vCPU does).
pub fn run_next(k: &mut Held, mut next: Next) {
    loop {
        let cur = k.current;
        match next {
            // A vCPU runs right here, in the kernel (with the lock released while the
            // guest runs), until an exit its VMM must see (an interrupt that came
            // meanwhile may wake a driver).
            Next::Run if k.store.sched(cur).kind == Kind::VCpu => {
                next = vcpu_run::run(k);
                next = deliver_interrupts(k, next);
                // The exit may have woken its VMM on another CPU (an exit changes no
                // mapping: only a reschedule can be due).
                if k.reschedule != 0 {
                    vcpu_run::flush(&mut **k);
                }
            }
            Next::Run => return thread::activate(&mut **k),
            // Every thread here waits: sleep, with the lock released, until an interrupt
            // (a driver's device, this CPU's tick, or another CPU's reschedule IPI). The
            // boot CPU stops the machine when nothing anywhere can ever run again.
            Next::Idle => {
                thread::release_fpu(&mut **k);
                thread::deactivate();
                if percpu::cpu() == 0 && nothing_can_run(k) {
                    no_runnable_thread()
                }
                let _ = k.unlocked(cpu::wait_for_interrupt);
                // Ticks that woke the CPU while nothing ran preempt nobody.
                percpu::set::<TICK>(0);
                // Another CPU may have queued a thread here meanwhile.
                next = k.schedule();
                next = deliver_interrupts(k, next);
                vcpu_run::flush(&mut **k);
            }
            Next::Shutdown(status) => {
                crate::end_driver_line();
                kprintln!("kernel: shutdown requested by the root task: {status:?}");
                kprintln!(
                    "kernel: deepest kernel stack use {} of {} bytes (boot: {})",
                    super::stacks::deepest_use(),
                    super::stacks::KERNEL_STACK,
                    super::stacks::boot_use(),
                );
                super::exit_trace::report();
                vcpu_run::shutdown();
                super::exit::exit(status == protocols::syscall::ShutdownStatus::Pass)
            }
        }
    }
}

/// A stall dropped the entry from ring 3 this CPU was making while it waited for the
/// lock (a syscall wound back to be made again; a fault happens again when its thread
/// runs; device lines stay pending): the thread may be changed or gone, so whatever
/// should run here now runs.
#[cold]
#[inline(never)]
pub fn dropped(k: &mut Held) {
    let next = k.schedule();
    let next = deliver_interrupts(k, next);
    resume(k, next);
}

/// Whether no CPU runs anything, no run queue holds a thread, and no interrupt can wake
/// one (no handled line is unmasked).
fn nothing_can_run(k: &Kernel<PhysStore>) -> bool {
    !k.irqs.armed()
        && (0..k.cpus).all(|c| k.running_on(c) == 0 && k.sched.on(c).highest().is_none())
}

/// Deliver the device interrupts taken since they were last delivered (they are noted
/// in the trap handler, which cannot reach the kernel state) and pick who runs next: a
/// woken driver may outrank the thread that was to run. Interrupts are only taken in ring
/// 3, while idle or while a guest runs, so only those paths call this.
#[inline]
pub fn deliver_interrupts(k: &mut Kernel<PhysStore>, next: Next) -> Next {
    let irqs = super::trap::take_pending_irqs();
    if irqs == 0 || matches!(next, Next::Shutdown(_)) {
        return next;
    }
    k.interrupts(&mut crate::Console, irqs)
}
