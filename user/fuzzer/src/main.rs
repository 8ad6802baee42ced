//! The in-image syscall fuzzer process. The root task gives it the CSpace described in
//! [`syscall_fuzzer::slot`] and `rdi = seed | iterations << 32`. It starts a partner
//! thread one priority below its own, then issues `iterations` syscalls from the seeded
//! generator, counting those the kernel served (status 0) and rejected (any other), and
//! reports `[served, rejected, iterations, unblocked]` to the root task.
//!
//! The partner only runs while the fuzzer cannot: whenever it does, the fuzzer is blocked
//! (in a receive nobody answers, a call nobody replies to, or suspended by its own hand),
//! so the partner suspends and resumes it, which ends the syscall with the number still
//! in `rax` (a rejection). No syscall can keep the fuzzer forever.
#![cfg_attr(target_os = "none", no_std, no_main)]

rt::entry!(start);

#[cfg(target_os = "none")]
mod process {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use protocols::object::{Invocation, ObjectType};
    use rt::ipc::{call, invoke, retype, Msg};
    use syscall_fuzzer::{slot, split_arg, Generator, Sys, PRIORITY, REPORT_LABEL};

    /// Set before the report: the partner's cue to stop.
    static DONE: AtomicBool = AtomicBool::new(false);
    /// How often the partner had to unblock the fuzzer.
    static UNBLOCKED: AtomicU64 = AtomicU64::new(0);

    const PARTNER_STACK: usize = 4096;

    /// The partner's stack, in this program's writable data (no mapping to make). Only
    /// the partner thread touches it, through its stack pointer; Rust never reads it.
    #[repr(align(16))]
    struct Stack(#[allow(dead_code)] [u8; PARTNER_STACK]);
    static mut STACK: Stack = Stack([0; PARTNER_STACK]);

    /// Make one syscall with every register the kernel reads; returns `rax`.
    fn syscall(s: &Sys) -> u64 {
        let status: u64;
        // SAFETY: `syscall` preserves every register but those named as outputs here and
        // rcx, r11; r12 and r13 are only read. What the kernel does with the arguments is
        // its business: that is what is being tested.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") s.number => status,
                inlateout("rdi") s.rdi => _,
                inlateout("rsi") s.rsi => _,
                inlateout("rdx") s.words[0] => _,
                inlateout("r10") s.words[1] => _,
                inlateout("r8") s.words[2] => _,
                inlateout("r9") s.words[3] => _,
                in("r12") s.r12,
                in("r13") s.r13,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        status
    }

    /// The partner: runs only while the fuzzer is blocked; unblocks it.
    extern "C" fn partner() -> ! {
        while !DONE.load(SeqCst) {
            let _ = invoke(slot::SELF_TCB, Invocation::TcbSuspend, &[]);
            let _ = invoke(slot::SELF_TCB, Invocation::TcbResume, &[]);
            UNBLOCKED.fetch_add(1, SeqCst);
        }
        rt::syscall::thread_exit(0)
    }

    fn start_partner() -> Result<(), protocols::error::Error> {
        retype(slot::PARTNER_UNTYPED, ObjectType::Tcb, 0, slot::PARTNER_TCB, 1)?;
        invoke(
            slot::PARTNER_TCB,
            Invocation::TcbConfigure,
            &[slot::CNODE, slot::VSPACE, u64::MAX],
        )?;
        let top = core::ptr::addr_of!(STACK) as u64 + PARTNER_STACK as u64 - 8;
        invoke(
            slot::PARTNER_TCB,
            Invocation::TcbWriteRegisters,
            &[partner as *const () as u64, top, 0],
        )?;
        invoke(slot::PARTNER_TCB, Invocation::TcbSetPriority, &[PRIORITY - 1])?;
        invoke(slot::PARTNER_TCB, Invocation::TcbResume, &[])?;
        Ok(())
    }

    pub fn run(arg: u64) -> u64 {
        let (seed, iterations) = split_arg(arg);
        if start_partner().is_err() {
            // Without the partner a blocking syscall could hang the run: report nothing done.
            let _ = call(slot::REPORT, &Msg::new(REPORT_LABEL, &[0, 0, 0, 0]));
            return 1;
        }
        let mut g = Generator::new(u64::from(seed));
        let (mut served, mut rejected) = (0u64, 0u64);
        for _ in 0..iterations {
            let s = g.syscall();
            let status = syscall(&s);
            g.result(&s, status);
            if status == 0 {
                served += 1;
            } else {
                rejected += 1;
            }
        }
        DONE.store(true, SeqCst);
        let unblocked = UNBLOCKED.load(SeqCst);
        let report = [served, rejected, u64::from(iterations), unblocked];
        let _ = call(slot::REPORT, &Msg::new(REPORT_LABEL, &report));
        0
    }
}

#[cfg(target_os = "none")]
fn start(arg: u64) -> u64 {
    process::run(arg)
}

#[cfg(not(target_os = "none"))]
fn start(_: u64) -> u64 {
    0
}
