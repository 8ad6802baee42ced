//! Exception and interrupt handlers behind the stubs in `entry.rs`.
//!
//! A fault in ring 3 goes to the thread's fault handler as a message (or stops it); the
//! kernel prints nothing and keeps running. The PIT's IRQ 0 is the scheduling tick; every other IRQ
//! line belongs to the driver holding its `IrqHandler`, and is delivered to it.
//! A fault in the kernel itself is a kernel bug: it is reported in full and the machine
//! stops with a failing verdict, never a triple fault.

use super::cpu::read_cr2;
use super::irq_lines;
use super::pic::PIC_BASE;
use super::{exit, lapic};
use crate::context::UserContext;
use core::sync::atomic::{AtomicU16, Ordering::Relaxed};

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved (31)",
];

fn name(vector: u64) -> &'static str {
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// Device IRQ lines that fired and are not yet delivered (bit `i` = IRQ `i`). An
/// interrupt taken in the kernel (while idle or while a guest ran) cannot reach the
/// kernel state, which its interrupted owner holds; it is noted here and delivered by
/// `super::run_loop::deliver_interrupts` before anything runs next.
static PENDING: AtomicU16 = AtomicU16::new(0);

/// Take the pending device IRQs.
pub fn take_pending_irqs() -> u16 {
    PENDING.swap(0, Relaxed)
}

/// What an interrupt vector turned out to be.
enum Source {
    /// A CPU exception.
    Exception,
    /// The PIT: the scheduling tick.
    Tick,
    /// A device line, acknowledged at the PIC and noted in [`PENDING`].
    Device,
    /// A spurious PIC interrupt, or an NMI: nothing to do.
    Spurious,
    /// Another CPU asked this one to reschedule (or to stall, answered on the way in).
    Reschedule,
}

/// The NMI's vector.
const NMI_VECTOR: u64 = 2;

fn classify(vector: u64) -> Source {
    match vector {
        // The kernel sends no NMIs; one from elsewhere (a watchdog, a board's button, a
        // debugger) is nobody's fault: the thread or the kernel goes on. Nothing on this
        // path reads GS, which an NMI between `syscall` and its `swapgs` finds still
        // ring 3's.
        NMI_VECTOR => return Source::Spurious,
        lapic::TIMER_VECTOR => {
            lapic::eoi();
            return Source::Tick;
        }
        lapic::SPURIOUS_VECTOR => return Source::Spurious,
        super::ipi::IPI_VECTOR => {
            lapic::eoi();
            return Source::Reschedule;
        }
        _ => {}
    }
    let base = u64::from(PIC_BASE);
    if !(base..base + 16).contains(&vector) {
        return Source::Exception;
    }
    device_line((vector - base) as u8)
}

/// An ISA line fired. Out of line, so that the exception path (a thread's fault) carries
/// none of the line-routing code: inlined, it cost the fault round trip 7 ticks.
#[cold]
#[inline(never)]
fn device_line(irq: u8) -> Source {
    if !irq_lines::acknowledge(irq) {
        return Source::Spurious;
    }
    if irq == 0 {
        return Source::Tick;
    }
    PENDING.fetch_or(1 << irq, Relaxed);
    Source::Device
}

/// From ring 3. The frame is the current thread's save area, except for the IST vectors
/// (NMI, #DF, #MC), whose frame is copied there first.
#[no_mangle]
extern "C" fn trap_from_user(frame: *mut UserContext) {
    let ctx = super::percpu::current_context();
    if frame as u64 != ctx && ctx != 0 {
        // SAFETY: `frame` is the IST frame the stub just built; `ctx` is the current
        // thread's save area; they do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(frame, ctx as *mut UserContext, 1) }
    }
    // SAFETY: `ctx` (or `frame` when no thread is current) holds the frame just saved.
    let c = unsafe { *(if ctx != 0 { ctx as *const UserContext } else { frame }) };
    if super::exit_trace::single_step(c.vector, c.rip) {
        return;
    }
    let source = classify(c.vector);
    let addr = if c.vector == 14 { read_cr2() } else { 0 };
    super::bkl::from_user(
        |k| {
            let next = match source {
                Source::Tick => k.preempt(),
                Source::Device => super::run_loop::deliver_interrupts(k, kernel::state::Next::Run),
                Source::Reschedule => k.schedule(),
                Source::Spurious => return,
                Source::Exception => k.fault(c.vector, c.error_code, addr),
            };
            super::run_loop::resume(k, next);
        },
        super::run_loop::dropped,
    );
}

/// From ring 0: only interrupts while idle are expected; anything else is a kernel bug.
#[no_mangle]
extern "C" fn trap_from_kernel(frame: *mut UserContext) {
    // SAFETY: the stub passes the frame it just pushed on the current stack.
    let c = unsafe { *frame };
    if super::exit_trace::single_step(c.vector, c.rip) {
        return;
    }
    match classify(c.vector) {
        Source::Tick => {
            // A tick that interrupted a guest: the vCPU loop reschedules.
            super::percpu::set::<{ super::percpu::TICK }>(1);
            return;
        }
        // The idle loop and the vCPU loop reschedule after every interrupt.
        Source::Device | Source::Spurious | Source::Reschedule => return,
        Source::Exception => {}
    }
    if super::stacks::is_guard(read_cr2()) {
        crate::kprintln!("KERNEL PANIC: kernel stack overflow (cr2 {:#x})", read_cr2());
    }
    crate::kprintln!(
        "KERNEL PANIC: {} (vector {}) in the kernel, error code {:#x}, rip {:#x}, rsp {:#x}, cr2 {:#x}",
        name(c.vector), c.vector, c.error_code, c.rip, c.rsp, read_cr2()
    );
    exit::exit(false)
}
