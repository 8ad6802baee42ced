//! The exit-path tracer (`--features exit-trace`, `cargo xtask bench --exit-trace`):
//! single-steps the kernel through one whole CPUID round trip (an MMIO one, an EPT
//! violation, with `exit-trace-mmio`) and reports every
//! instruction's address, so each step of the hot path can be counted by function
//! (under Bochs one instruction is one TSC tick). Off by default, when every hook below
//! is empty.
//!
//! Three legs are traced: the kernel's exit leg from the exit reason's read to the switch
//! to the VMM, the VMM from its return to ring 3 to its `ReplyRecv` (TF set in its saved
//! RFLAGS), and the kernel's entry leg from that syscall to just before VM entry. The
//! entry stubs, whose stack is the thread's save area, are not stepped. TF is set by
//! `popfq`; each #DB records the address of the next instruction and returns with TF
//! still set. #DB runs on an IST stack in this build: the step that follows the VMM's
//! SYSCALL is taken on its first kernel instruction, with the user's stack pointer.

#[cfg(feature = "exit-trace")]
mod on {
    use crate::context::UserContext;
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

    /// Which exit of the traced reason is traced: late enough for the caches of the VMM
    /// to be warm (the benchmark guest makes 1000 of each after the other guests).
    const TRACED_EXIT: u64 = 500;
    /// The basic exit reason traced: CPUID (10) or EPT violation (48).
    const TRACED_REASON: u32 = if cfg!(feature = "exit-trace-mmio") { 48 } else { 10 };
    const IDLE: u8 = 0;
    const EXIT_LEG: u8 = 1;
    const VMM_LEG: u8 = 2;
    const ENTRY_LEG: u8 = 3;
    const DONE: u8 = 4;
    const TF: u64 = 1 << 8;

    static STEPPING: AtomicBool = AtomicBool::new(false);
    static PHASE: AtomicU8 = AtomicU8::new(IDLE);
    static TRACED_EXITS: AtomicU64 = AtomicU64::new(0);
    static RIPS: [AtomicU64; 2048] = [const { AtomicU64::new(0) }; 2048];
    static LEN: AtomicUsize = AtomicUsize::new(0);
    static EXIT_LEG_LEN: AtomicUsize = AtomicUsize::new(0);
    static VMM_LEG_LEN: AtomicUsize = AtomicUsize::new(0);

    /// Set or clear TF. `STEPPING` is true whenever TF is: set before it, cleared after.
    fn step(on: bool) {
        if on {
            STEPPING.store(true, Relaxed);
            // SAFETY: only RFLAGS.TF changes; each #DB is taken by `single_step`.
            unsafe { core::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq") };
        } else {
            // SAFETY: only RFLAGS.TF changes.
            unsafe { core::arch::asm!("pushfq", "and qword ptr [rsp], ~0x100", "popfq") };
            STEPPING.store(false, Relaxed);
        }
    }

    fn advance(from: u8, to: u8, stepping: bool) -> bool {
        if PHASE.compare_exchange(from, to, Relaxed, Relaxed).is_ok() {
            step(stepping);
            return true;
        }
        false
    }

    pub fn exit_taken(reason: u32) {
        if reason == TRACED_REASON && TRACED_EXITS.fetch_add(1, Relaxed) == TRACED_EXIT {
            advance(IDLE, EXIT_LEG, true);
        }
    }

    pub fn thread_active(context: &mut UserContext) {
        if advance(EXIT_LEG, VMM_LEG, false) {
            EXIT_LEG_LEN.store(LEN.load(Relaxed), Relaxed);
            context.rflags |= TF;
            STEPPING.store(true, Relaxed);
        }
    }

    pub fn syscall_entered(context: &mut UserContext) {
        if PHASE.load(Relaxed) == VMM_LEG {
            context.rflags &= !TF;
            // The step taken on SYSCALL's target is the kernel's, not the VMM's.
            VMM_LEG_LEN.store(LEN.load(Relaxed).saturating_sub(1), Relaxed);
            LEN.store(LEN.load(Relaxed).saturating_sub(1), Relaxed);
            PHASE.store(ENTRY_LEG, Relaxed);
            step(true);
        }
    }

    pub fn entering_guest() {
        if advance(EXIT_LEG, IDLE, false) {
            // The traced exit went to no waiting VMM: trace the next one instead.
            LEN.store(0, Relaxed);
            TRACED_EXITS.store(TRACED_EXIT, Relaxed);
            return;
        }
        advance(ENTRY_LEG, DONE, false);
    }

    pub fn single_step(vector: u64, rip: u64) -> bool {
        if vector != 1 || !STEPPING.load(Relaxed) {
            return false;
        }
        let n = LEN.load(Relaxed);
        if let Some(slot) = RIPS.get(n) {
            slot.store(rip, Relaxed);
            LEN.store(n + 1, Relaxed);
        }
        true
    }

    pub fn report() {
        let (n, exit, vmm) =
            (LEN.load(Relaxed), EXIT_LEG_LEN.load(Relaxed), VMM_LEG_LEN.load(Relaxed));
        crate::kprintln!(
            "exit-trace: legs {exit} {} {}",
            vmm.saturating_sub(exit),
            n.saturating_sub(vmm)
        );
        for r in RIPS.iter().take(n) {
            crate::kprintln!("exit-trace: {:x}", r.load(Relaxed));
        }
    }
}

#[cfg(feature = "exit-trace")]
pub use on::{entering_guest, exit_taken, report, single_step, syscall_entered, thread_active};

/// A VM exit with basic reason `reason` was taken (the 500th of the traced reason starts
/// the trace).
#[cfg(not(feature = "exit-trace"))]
#[inline(always)]
pub fn exit_taken(_reason: u32) {}

/// A thread (saved state `context`) is about to return to ring 3: ends the exit leg and
/// starts stepping the VMM.
#[cfg(not(feature = "exit-trace"))]
#[inline(always)]
pub fn thread_active(_context: &mut crate::context::UserContext) {}

/// A syscall of the thread with saved state `context` entered the kernel: ends the VMM's
/// leg and starts the entry leg.
#[cfg(not(feature = "exit-trace"))]
#[inline(always)]
pub fn syscall_entered(_context: &mut crate::context::UserContext) {}

/// Whether #DB runs on an IST stack (when a SYSCALL may be single-stepped).
pub const DEBUG_ON_IST: bool = cfg!(feature = "exit-trace");

/// The kernel is about to enter a guest (ends the entry leg).
#[cfg(not(feature = "exit-trace"))]
#[inline(always)]
pub fn entering_guest() {}

/// A kernel-mode exception: whether it was a trace step (and is handled).
#[cfg(not(feature = "exit-trace"))]
#[inline(always)]
pub fn single_step(_vector: u64, _rip: u64) -> bool {
    false
}

/// Print the trace (at shutdown).
#[cfg(not(feature = "exit-trace"))]
#[inline(always)]
pub fn report() {}
