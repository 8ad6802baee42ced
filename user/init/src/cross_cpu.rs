//! Threads on another CPU: the root task (CPU 0) and threads pinned to CPU 1 run at the
//! same time, call each other, signal each other, and a thread there faults, loses its
//! endpoint to a revoke, loses a page to an unmap and is suspended while it runs. Each
//! check says SKIP where only one CPU is online.

use crate::alloc::Alloc;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use protocols::bootinfo::{self, slot, BOOTINFO_ADDR};
use protocols::error::Error;
use protocols::fault::{FaultMessage, FAULT_LABEL, RESUME_AT};
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use rt::ipc::{call, invoke, recv, reply_recv, send, Msg};
use rt::testing::{expect_eq, Suite};

/// The checks, in order (each says SKIP with one CPU).
const CHECKS: [&str; 7] = [
    "cross_cpu_threads_run_at_the_same_time",
    "cross_cpu_ipc_round_trips",
    "cross_cpu_notifications",
    "cross_cpu_fault_reaches_its_handler",
    "cross_cpu_revoke_wakes_a_blocked_thread",
    "cross_cpu_unmap_is_seen_at_once",
    "cross_cpu_suspend_stops_a_running_thread",
];

/// Round trips of the IPC check.
const ROUND_TRIPS: u64 = 64;
/// How long the root task spins (reads of a counter) waiting for the other CPU.
const PATIENCE: u64 = 5_000_000;
/// How long it watches a stopped thread's counter stay still.
const WATCH: u64 = 100_000;

/// How many CPUs the kernel says are online.
pub fn cpus() -> u64 {
    // SAFETY: the kernel maps the boot-information page read-only at BOOTINFO_ADDR.
    unsafe { (BOOTINFO_ADDR as *const u64).add(bootinfo::word::CPUS).read() }
}

/// Start a thread of the root task's on `cpu` (moved before it is resumed).
pub fn spawn_on(
    a: &mut Alloc,
    cpu: u64,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    priority: u64,
    fault_ep: u64,
) -> Result<u64, Error> {
    crate::threads::spawn_on(a, Some(cpu), entry as *const () as u64, arg, priority, fault_ep)
}

/// Counts as fast as it can.
static SPINS: AtomicU64 = AtomicU64::new(0);
/// The page [`reader`] reads.
static PAGE: AtomicU64 = AtomicU64::new(0);
/// Reads [`PAGE`].
static READS: AtomicU64 = AtomicU64::new(0);
/// What [`receiver`] was told when its receive ended (an error code).
static RECEIVED: AtomicU64 = AtomicU64::new(0);

extern "C" fn spinner(_: u64) -> ! {
    loop {
        SPINS.fetch_add(1, Relaxed);
    }
}

/// Replies to each call with its first word plus one.
extern "C" fn echo(ep: u64) -> ! {
    let mut r = recv(ep);
    loop {
        let w = r.map_or(u64::MAX, |m| m.msg.words[0]);
        r = reply_recv(ep, &Msg::new(0, &[w.wrapping_add(1)]));
    }
}

/// Waits on the notification in its argument's low half and signals the one in its
/// high half, for ever.
extern "C" fn ponger(slots: u64) -> ! {
    let (wait, signal) = (slots & 0xffff_ffff, slots >> 32);
    loop {
        let _ = recv(wait);
        let _ = send(signal, &Msg::default());
    }
}

/// Reads address 0 (a page fault), then reports on its fault endpoint that it resumed.
extern "C" fn faulter(fault_ep: u64) -> ! {
    // SAFETY: a deliberate page fault; the handler resumes at the next instruction
    // (the load is 8 bytes long: 48 8b 04 25 00 00 00 00).
    unsafe { core::arch::asm!("mov rax, qword ptr [0]", out("rax") _, options(nostack)) };
    let _ = send(fault_ep, &Msg::new(0x5a, &[]));
    loop {
        core::hint::spin_loop();
    }
}

/// Answers one call on its endpoint and, in the same kernel entry, receives again:
/// records how that second receive ended.
extern "C" fn receiver(ep: u64) -> ! {
    let _ = recv(ep);
    let code = match reply_recv(ep, &Msg::default()) {
        Ok(_) => 1,
        Err(e) => e as u64,
    };
    RECEIVED.store(code, Relaxed);
    loop {
        core::hint::spin_loop();
    }
}

/// Reads [`PAGE`] for ever, counting.
extern "C" fn reader(_: u64) -> ! {
    let page = PAGE.load(Relaxed) as *const u64;
    loop {
        // SAFETY: the page is mapped until the root task unmaps it, which faults here.
        let _ = unsafe { page.read_volatile() };
        READS.fetch_add(1, Relaxed);
    }
}

/// Spin until `cond` holds (the root task never yields: only another CPU can make it
/// hold).
fn spin_until(cond: impl FnMut() -> bool) -> bool {
    spin_for(PATIENCE, cond)
}

/// [`spin_until`], giving up after `reads` tries.
fn spin_for(reads: u64, mut cond: impl FnMut() -> bool) -> bool {
    (0..reads).any(|_| {
        core::hint::spin_loop();
        cond()
    })
}

fn all() -> u64 {
    u64::from(Rights::ALL.bits())
}

/// Run the checks (SKIP each with one CPU).
pub fn run(t: &mut Suite, a: &mut Alloc) {
    if cpus() < 2 {
        for name in CHECKS {
            t.skip(name, "one CPU online");
        }
        return;
    }
    if let Err(e) = checks(t, a) {
        t.check("cross_cpu_checks_ran", Err(e.name()));
    }
}

fn checks(t: &mut Suite, a: &mut Alloc) -> Result<(), Error> {
    // The spinner has the lowest priority: on the root task's CPU it could never run
    // while the root task spins, so its count moving proves another CPU runs it. A
    // suspend while it runs there stops it.
    let spin = spawn_on(a, 1, spinner, 0, 1, u64::MAX)?;
    let moving = spin_until(|| SPINS.load(Relaxed) > 1000);
    t.check(CHECKS[0], if moving { Ok(()) } else { Err("the spinner never ran") });
    invoke(spin, Invocation::TcbSuspend, &[])?;
    let stopped = SPINS.load(Relaxed);
    let still = !spin_for(WATCH, || SPINS.load(Relaxed) != stopped);
    t.check(CHECKS[6], if still { Ok(()) } else { Err("the spinner ran on after its suspend") });

    // Calls to a server there.
    let ep = a.make(ObjectType::Endpoint, 0)?;
    let server = spawn_on(a, 1, echo, ep, 200, u64::MAX)?;
    let answers = (0..ROUND_TRIPS).map(|i| call(ep, &Msg::new(1, &[i])).map(|r| r.msg.words[0]));
    let mut wrong = answers.zip(1..).filter(|(got, want)| *got != Ok(*want));
    t.check(CHECKS[1], wrong.next().map_or(Ok(()), |_| Err("a reply was wrong or missing")));
    invoke(server, Invocation::TcbSuspend, &[])?;

    // Notifications both ways: signal one, wait for the other.
    let (ping, pong) = (a.make(ObjectType::Notification, 0)?, a.make(ObjectType::Notification, 0)?);
    let badged = a.slot();
    invoke(slot::CNODE, Invocation::CNodeMint, &[pong, badged, all(), 0x77])?;
    let ponger = spawn_on(a, 1, ponger, ping | badged << 32, 200, u64::MAX)?;
    let badges = (0..ROUND_TRIPS).map(|_| {
        send(ping, &Msg::default())?;
        recv(pong).map(|r| r.badge)
    });
    let mut wrong = badges.filter(|b| *b != Ok(0x77));
    t.check(CHECKS[2], wrong.next().map_or(Ok(()), |_| Err("a signal was lost or wrong")));
    invoke(ponger, Invocation::TcbSuspend, &[])?;

    // A fault there reaches the handler here, which resumes the thread.
    let fault_ep = a.make(ObjectType::Endpoint, 0)?;
    let faulting = spawn_on(a, 1, faulter, fault_ep, 200, fault_ep)?;
    let f = recv(fault_ep).map(|r| (r.msg.info.label, r.msg.words));
    let fault = f.map(|(label, words)| FaultMessage::decode(label, words));
    let read_zero = matches!(fault, Ok(Some(FaultMessage::Fault { vector: 14, address: 0, .. })));
    let rip = f.map_or(0, |(_, w)| w[2]);
    let after = reply_recv(fault_ep, &Msg::new(RESUME_AT, &[rip + 8]));
    let resumed = after.map(|r| r.msg.info.label) == Ok(0x5a);
    t.check(
        CHECKS[3],
        match (f.map(|(label, _)| label), read_zero, resumed) {
            (Ok(FAULT_LABEL), true, true) => Ok(()),
            (_, _, false) => Err("the thread did not resume"),
            _ => Err("no page-fault message for address 0"),
        },
    );
    invoke(faulting, Invocation::TcbSuspend, &[])?;

    // A receiver blocked there on an endpoint whose every capability goes: it wakes with
    // ObjectDeleted.
    let doomed = a.make(ObjectType::Endpoint, 0)?;
    let copy = a.slot();
    invoke(slot::CNODE, Invocation::CNodeCopy, &[doomed, copy, all()])?;
    let waiter = spawn_on(a, 1, receiver, copy, 200, u64::MAX)?;
    // Once the call returns, the receiver waits again; the revoke deletes the copy, the
    // delete the rest.
    call(doomed, &Msg::default())?;
    invoke(slot::CNODE, Invocation::CNodeRevoke, &[doomed])?;
    invoke(slot::CNODE, Invocation::CNodeDelete, &[doomed])?;
    let woke = spin_until(|| RECEIVED.load(Relaxed) != 0);
    t.check(
        CHECKS[4],
        expect_eq(woke.then(|| RECEIVED.load(Relaxed)), Some(Error::ObjectDeleted as u64)),
    );
    invoke(waiter, Invocation::TcbSuspend, &[])?;

    // A reader there loses its page: its next read faults, on the unmapped address.
    let (frame, page) = a.page()?;
    PAGE.store(page, Relaxed);
    let unmap_ep = a.make(ObjectType::Endpoint, 0)?;
    let reading = spawn_on(a, 1, reader, 0, 200, unmap_ep)?;
    let started = spin_until(|| READS.load(Relaxed) > 100);
    invoke(frame, Invocation::FrameUnmap, &[])?;
    let at_unmap = READS.load(Relaxed);
    let f = recv(unmap_ep).map(|r| FaultMessage::decode(r.msg.info.label, r.msg.words));
    let after = READS.load(Relaxed);
    let faulted =
        matches!(f, Ok(Some(FaultMessage::Fault { vector: 14, address, .. })) if address == page);
    t.check(
        CHECKS[5],
        match (started, faulted, after.saturating_sub(at_unmap)) {
            (false, _, _) => Err("the reader never ran"),
            (_, false, _) => Err("no page fault at the unmapped page"),
            // The read in flight when the stall came may count once.
            (_, _, 0 | 1) => Ok(()),
            _ => Err("the reader kept reading after the unmap returned"),
        },
    );
    invoke(reading, Invocation::TcbSuspend, &[])?;
    Ok(())
}
