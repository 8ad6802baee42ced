//! Ring-3 checks of the capability kernel: IPC, badges, rights, revocation, untyped
//! exhaustion, notifications, faults and exits (messages to the fault endpoint, never
//! kernel log), preemption, FPU state across threads, and the isolation of a second
//! process.

use crate::alloc::Alloc;
use crate::threads::spawn;
use core::sync::atomic::{AtomicU64, Ordering};
use protocols::bootinfo::slot;
use protocols::error::Error;
use protocols::fault::FaultMessage;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::Syscall;
use rt::ipc::{call, invoke, nb_recv, recv, reply, reply_recv, retype, send, Msg};
use rt::testing::{expect_eq, Suite};

pub use protocols::fault::{FAULT_LABEL, RESUME_AT};

/// Slots the checks share with the benchmarks.
pub struct Fixture {
    /// The endpoint the isolated process serves calls on.
    pub iso_ep: u64,
}

/// Echo server: replies with `[word0 + 1, badge]`, clobbering xmm0 first so a client
/// can check its own SSE state survives the switch.
extern "C" fn echo_server(ep: u64) -> ! {
    let mut r = recv(ep);
    loop {
        let (w, badge) = match r {
            Ok(m) => (m.msg.words[0], m.badge),
            Err(_) => (u64::MAX, 0),
        };
        // SAFETY: xmm0 is unused by this soft-float program; the value is arbitrary.
        unsafe {
            core::arch::asm!("mov rax, 0xdead; movq xmm0, rax", out("rax") _, options(nostack))
        };
        r = reply_recv(ep, &Msg::new(0, &[w.wrapping_add(1), badge]));
    }
}

static SPINS: AtomicU64 = AtomicU64::new(0);

/// Spins until preempted, counting.
extern "C" fn spinner(_: u64) -> ! {
    loop {
        SPINS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads address 0, then reports on its fault endpoint that it was resumed.
extern "C" fn faulter(fault_ep: u64) -> ! {
    // SAFETY: a deliberate page fault; the handler resumes at the next instruction
    // (the load below is 8 bytes long: 48 8b 04 25 00 00 00 00).
    unsafe { core::arch::asm!("mov rax, qword ptr [0]", out("rax") _, options(nostack)) };
    let _ = send(fault_ep, &Msg::new(0x5a, &[]));
    loop {
        let _ = recv(fault_ep);
    }
}

/// A label no kernel message has: what [`exiter`] sends if `ThreadExit` ever returns.
const EXIT_RETURNED: u64 = 0xbad;

/// Exits with `code`; if the kernel let it run on, it says so on its fault endpoint.
extern "C" fn exiter(code: u64) -> ! {
    rt::syscall::raw(Syscall::ThreadExit as u64, code, 0, 0);
    let _ = send(EXIT_SLOT.load(Ordering::Relaxed), &Msg::new(EXIT_RETURNED, &[]));
    loop {
        core::hint::spin_loop();
    }
}

/// The slot of [`exiter`]'s fault endpoint.
static EXIT_SLOT: AtomicU64 = AtomicU64::new(0);

fn all() -> u64 {
    u64::from(Rights::ALL.bits())
}

/// Run the checks; returns the shared fixture for the benchmarks.
pub fn run(t: &mut Suite, a: &mut Alloc) -> Result<Fixture, Error> {
    let ep = a.make(ObjectType::Endpoint, 0)?;
    let badged = a.slot();
    invoke(slot::CNODE, Invocation::CNodeMint, &[ep, badged, all(), 0x42])?;
    spawn(a, echo_server as *const () as u64, ep, 254, u64::MAX)?;

    let r = call(badged, &Msg::new(7, &[41]));
    t.check(
        "ipc_call_reply_and_badge",
        expect_eq(r.map(|r| (r.msg.words[0], r.msg.words[1])), Ok((42, 0x42))),
    );

    let read_only = a.slot();
    invoke(slot::CNODE, Invocation::CNodeCopy, &[ep, read_only, u64::from(Rights::READ.bits())])?;
    t.check(
        "ipc_needs_the_call_right",
        expect_eq(call(read_only, &Msg::new(1, &[])).err(), Some(Error::InsufficientRights)),
    );
    let widened = a.slot();
    invoke(slot::CNODE, Invocation::CNodeCopy, &[read_only, widened, all()])?;
    t.check(
        "rights_never_widen",
        expect_eq(call(widened, &Msg::new(1, &[])).err(), Some(Error::InsufficientRights)),
    );

    let child = a.slot();
    invoke(slot::CNODE, Invocation::CNodeCopy, &[badged, child, all()])?;
    t.check(
        "derived_copy_works",
        expect_eq(call(child, &Msg::new(1, &[1])).map(|r| r.msg.words[0]), Ok(2)),
    );
    invoke(slot::CNODE, Invocation::CNodeRevoke, &[badged])?;
    t.check(
        "revoked_copy_is_dead",
        expect_eq(call(child, &Msg::new(1, &[1])).err(), Some(Error::InvalidCapability)),
    );
    t.check(
        "revoke_keeps_the_original",
        expect_eq(call(badged, &Msg::new(1, &[1])).map(|r| r.msg.words[0]), Ok(2)),
    );
    invoke(slot::CNODE, Invocation::CNodeDelete, &[badged])?;
    t.check(
        "deleted_slot_is_empty",
        expect_eq(call(badged, &Msg::new(1, &[])).err(), Some(Error::InvalidCapability)),
    );

    t.check(
        "invocation_on_wrong_type",
        expect_eq(invoke(slot::CNODE, Invocation::TcbResume, &[]).err(), Some(Error::WrongType)),
    );

    // Untyped accounting: a 16 KiB untyped holds exactly four TCBs.
    let small = a.make(ObjectType::Untyped, 14)?;
    let four = a.slot();
    for _ in 0..3 {
        a.slot();
    }
    t.check(
        "untyped_holds_what_it_should",
        expect_eq(retype(small, ObjectType::Tcb, 0, four, 4).map(|_| ()), Ok(())),
    );
    let fifth = a.slot();
    t.check(
        "untyped_exhaustion",
        expect_eq(retype(small, ObjectType::Tcb, 0, fifth, 1).err(), Some(Error::OutOfMemory)),
    );
    t.check(
        "retype_into_occupied_slot",
        expect_eq(
            retype(a.untyped, ObjectType::Tcb, 0, slot::TCB, 1).err(),
            Some(Error::InvalidArgument),
        ),
    );

    // Notifications.
    let n = a.make(ObjectType::Notification, 0)?;
    let (n1, n2) = (a.slot(), a.slot());
    invoke(slot::CNODE, Invocation::CNodeMint, &[n, n1, all(), 0b01])?;
    invoke(slot::CNODE, Invocation::CNodeMint, &[n, n2, all(), 0b10])?;
    send(n1, &Msg::default())?;
    send(n2, &Msg::default())?;
    t.check("notification_bits_accumulate", expect_eq(nb_recv(n).map(|r| r.badge), Ok(0b11)));
    t.check("notification_poll_empty", expect_eq(nb_recv(n).map(|r| r.badge), Ok(0)));

    // SSE state is per thread: the echo server clobbers xmm0 between our call and reply.
    t.check("sse_state_is_per_thread", expect_eq(sse_across_call(ep), 0x1234_5678));

    crate::deferred_reply::run(t, a)?;
    crate::long_message::run(t, a)?;

    // A fault reaches the handler, which resumes the thread past the faulting load.
    let fault_ep = a.make(ObjectType::Endpoint, 0)?;
    let faulter_tcb = spawn(a, faulter as *const () as u64, fault_ep, 254, fault_ep)?;
    let f = recv(fault_ep);
    let words = f.map(|r| (r.msg.info.label, r.msg.words[0], r.msg.words[3]));
    t.check("fault_message_reaches_handler", expect_eq(words, Ok((FAULT_LABEL, 14, 0))));
    let rip = f.map(|r| r.msg.words[2]).unwrap_or(0);
    let after = reply_recv(fault_ep, &Msg::new(RESUME_AT, &[rip + 8]));
    t.check("faulted_thread_resumes", expect_eq(after.map(|r| r.msg.info.label), Ok(0x5a)));
    invoke(faulter_tcb, Invocation::TcbSuspend, &[])?;

    // An exit reaches the fault endpoint (badge and code intact) and the thread stays
    // stopped: had it run on, its complaint would be queued once this thread blocked
    // (printing the first check blocks it on the console driver).
    let exit_ep = a.make(ObjectType::Endpoint, 0)?;
    let badged = a.slot();
    invoke(slot::CNODE, Invocation::CNodeMint, &[exit_ep, badged, all(), 0xe1])?;
    EXIT_SLOT.store(badged, Ordering::Relaxed);
    spawn(a, exiter as *const () as u64, 0x600d, 254, badged)?;
    let exit =
        recv(exit_ep).map(|r| (r.badge, FaultMessage::decode(r.msg.info.label, r.msg.words)));
    let want = (0xe1, Some(FaultMessage::Exit { code: 0x600d }));
    t.check("thread_exit_reaches_its_fault_endpoint", expect_eq(exit, Ok(want)));
    let after = nb_recv(exit_ep).map(|r| r.msg.info.label);
    t.check("an_exited_thread_stays_stopped", expect_eq(after, Err(Error::WouldBlock)));

    // Preemption: a spinner of our own priority gets the CPU when we yield, and the
    // timer gives it back (the spinner never yields, so each return from `yield_now`
    // is a tick's doing). A tick may land before the spinner's first increment, after
    // other threads of this priority took most of the slice: yield again then.
    let spin_tcb = spawn(a, spinner as *const () as u64, 0, 255, u64::MAX)?;
    for _ in 0..8 {
        rt::syscall::yield_now();
        if SPINS.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    // Stopped before printing: the console driver runs at this priority too.
    invoke(spin_tcb, Invocation::TcbSuspend, &[])?;
    t.check(
        "timer_preempts_a_spinning_thread",
        if SPINS.load(Ordering::Relaxed) > 0 { Ok(()) } else { Err("spinner never ran") },
    );

    crate::deletion::run(t, a);
    crate::cross_cpu::run(t, a);

    let iso_ep = isolation(t, a)?;
    Ok(Fixture { iso_ep })
}

fn sse_across_call(ep: u64) -> u64 {
    let out: u64;
    // SAFETY: xmm0 is unused by this soft-float program; the call clobbers only the IPC
    // registers declared here.
    unsafe {
        core::arch::asm!(
            "mov rax, 0x12345678",
            "movq xmm0, rax",
            "mov eax, {call}",
            "syscall",
            "movq {out}, xmm0",
            call = const Syscall::Call as u64,
            out = lateout(reg) out,
            inlateout("rdi") ep => _,
            inlateout("rsi") 1u64 => _,
            lateout("rax") _, lateout("rdx") _, lateout("r10") _, lateout("r8") _,
            lateout("r9") _, lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    out
}

/// A process with its own address space and a CSpace holding one badged endpoint.
fn isolation(t: &mut Suite, a: &mut Alloc) -> Result<u64, Error> {
    let ep = a.make(ObjectType::Endpoint, 0)?;
    let cn = a.make(ObjectType::CNode, 4)?;
    invoke(cn, Invocation::CNodeMint, &[ep, 1, all(), 0xd])?;
    crate::process::spawn_code(a, crate::isolated::code(), cn, 254, u64::MAX)?;
    let report = recv(ep).map(|r| (r.badge, r.msg.words[0], r.msg.words[1]));
    let want = (0xd, Error::BadUserPointer as u64, Error::InvalidCapability as u64);
    t.check("processes_cannot_reach_each_other", expect_eq(report, Ok(want)));
    reply(&Msg::default())?;
    Ok(ep)
}
