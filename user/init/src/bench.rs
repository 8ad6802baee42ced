//! Benchmarks printed as `bench: <name>: <ticks> ticks`. Under Bochs one TSC tick is one
//! emulated instruction, so the numbers count instructions and are deterministic.
//!
//! Each figure is measured the way sel4bench does: the counter is read right before the
//! `syscall` and right after it returns, averaged over many iterations, minus the cost
//! of the same sequence without the `syscall` instruction.

use crate::alloc::Alloc;
use crate::cross_cpu::spawn_on;
use crate::threads::spawn;
use core::sync::atomic::{AtomicU64, Ordering};
use protocols::error::Error;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::Syscall;
use rt::ipc::invoke;

const ITERATIONS: u64 = 2000;

/// Ticks of one `syscall` with `rax = number`, `rdi = cptr`, `rsi = info`; with
/// `real = false` the `syscall` is left out (the measurement's own cost).
fn one(number: u64, cptr: u64, info: u64, real: bool) -> u64 {
    let (t0, t1): (u64, u64);
    // SAFETY: rdtsc and syscall only; every register either may clobber is declared.
    unsafe {
        if real {
            core::arch::asm!(
                "rdtsc", "shl rdx, 32", "or rax, rdx", "mov r14, rax",
                "mov rax, r15", "mov rdi, r12", "mov rsi, r13",
                "syscall",
                "rdtsc", "shl rdx, 32", "or rax, rdx",
                in("r15") number, in("r12") cptr, in("r13") info,
                out("r14") t0, out("rax") t1,
                out("rdx") _, out("rdi") _, out("rsi") _, out("r10") _, out("r8") _, out("r9") _,
                out("rcx") _, out("r11") _,
                options(nostack),
            );
        } else {
            core::arch::asm!(
                "rdtsc", "shl rdx, 32", "or rax, rdx", "mov r14, rax",
                "mov rax, r15", "mov rdi, r12", "mov rsi, r13",
                "rdtsc", "shl rdx, 32", "or rax, rdx",
                in("r15") number, in("r12") cptr, in("r13") info,
                out("r14") t0, out("rax") t1,
                out("rdx") _, out("rdi") _, out("rsi") _,
                options(nostack),
            );
        }
    }
    t1.wrapping_sub(t0)
}

fn average(number: u64, cptr: u64, info: u64) -> u64 {
    let mut with = 0u64;
    let mut without = 0u64;
    for _ in 0..ITERATIONS {
        with += one(number, cptr, info, true);
        without += one(number, cptr, info, false);
    }
    with.saturating_sub(without) / ITERATIONS
}

/// Ticks of one user-level fault (`ud2`) round trip through the fault handler, or with
/// `real = false` of the same sequence without the `ud2`.
fn one_fault(real: bool) -> u64 {
    let (t0, t1): (u64, u64);
    // SAFETY: rdtsc, and a `ud2` whose fault handler ([`fault_server`]) resumes this
    // thread right after it with every register as it was.
    unsafe {
        if real {
            core::arch::asm!(
                "rdtsc", "shl rdx, 32", "or rax, rdx", "mov r14, rax",
                "ud2",
                "rdtsc", "shl rdx, 32", "or rax, rdx",
                out("r14") t0, out("rax") t1, out("rdx") _,
                options(nostack),
            );
        } else {
            core::arch::asm!(
                "rdtsc", "shl rdx, 32", "or rax, rdx", "mov r14, rax",
                "rdtsc", "shl rdx, 32", "or rax, rdx",
                out("r14") t0, out("rax") t1, out("rdx") _,
                options(nostack),
            );
        }
    }
    t1.wrapping_sub(t0)
}

/// The measurements that need the measuring thread below a partner: a signal that wakes
/// a higher-priority waiter (which waits again at once), and a fault round trip to a
/// higher-priority handler. `arg` = report endpoint | badged notification << 32; the
/// thread's fault endpoint is the fault server's. Reports `[signal+wait, fault]` by a
/// call it never gets answered (the root task suspends it).
extern "C" fn measurer(arg: u64) -> ! {
    let (report, signal) = (arg & 0xffff_ffff, arg >> 32);
    let signal_wait = average(Syscall::Send as u64, signal, 0);
    let mut with = 0u64;
    let mut without = 0u64;
    for _ in 0..ITERATIONS {
        with += one_fault(true);
        without += one_fault(false);
    }
    let fault = with.saturating_sub(without) / ITERATIONS;
    let _ = rt::ipc::call(report, &rt::ipc::Msg::new(0, &[signal_wait, fault]));
    loop {
        rt::syscall::yield_now();
    }
}

extern "C" {
    /// Minimal server: `Recv` on the endpoint in `rdi`, then `ReplyRecv` forever.
    fn bench_server(ep: u64) -> !;
    /// Minimal waiter: `Recv` on the notification in `rdi`, forever.
    fn bench_waiter(ntfn: u64) -> !;
    /// Minimal fault handler on the endpoint in `rdi`: resumes each faulting thread two
    /// bytes (a `ud2`) past the fault.
    fn fault_server(ep: u64) -> !;
}

core::arch::global_asm!(
    r#"
    .section .text.bench_server, "ax"
    .global bench_server
bench_server:
    mov r12, rdi
    mov eax, {recv}
    syscall
2:
    mov rdi, r12
    mov esi, 1
    mov eax, {reply_recv}
    syscall
    jmp 2b

    .section .text.bench_waiter, "ax"
    .global bench_waiter
bench_waiter:
    mov r12, rdi
2:
    mov rdi, r12
    mov eax, {recv}
    syscall
    jmp 2b

    .section .text.fault_server, "ax"
    .global fault_server
fault_server:
    mov r12, rdi
    mov eax, {recv}
    syscall
2:
    lea rdx, [r8 + 2]
    mov rdi, r12
    mov esi, {resume_at_info}
    mov eax, {reply_recv}
    syscall
    jmp 2b
"#,
    recv = const Syscall::Recv as u64,
    reply_recv = const Syscall::ReplyRecv as u64,
    // Label RESUME_AT, one word: the address to resume at (fault word 2, in r8, is the
    // faulting rip).
    resume_at_info = const (protocols::fault::RESUME_AT << 12) | 1,
);

/// Run and print the benchmarks; `iso_ep` is served by the isolated process.
pub fn run(a: &mut Alloc, iso_ep: u64) -> Result<(), Error> {
    let call_info = 1; // label 0, one word
    let null = average(u64::MAX, 0, 0);
    rt::println!("bench: null syscall (invalid number, error return): {null} ticks");

    let ep = a.make(ObjectType::Endpoint, 0)?;
    let tcb = spawn(a, bench_server as *const () as u64, ep, 254, u64::MAX)?;
    let same = average(Syscall::Call as u64, ep, call_info);
    rt::println!(
        "bench: ipc fastpath round trip (call + reply_recv), same address space: {same} ticks"
    );
    invoke(tcb, Invocation::TcbSuspend, &[])?;

    let cross = average(Syscall::Call as u64, iso_ep, call_info);
    rt::println!(
        "bench: ipc fastpath round trip (call + reply_recv), two address spaces: {cross} ticks"
    );
    // Label 1 with the grant flag (no grant right, so nothing moves): both directions take
    // the general path.
    let slow_info = (1 << 12) | protocols::ipc::GRANT_BIT | 1;
    let slow = average(Syscall::Call as u64, iso_ep, slow_info);
    rt::println!(
        "bench: ipc slowpath round trip (call + reply_recv), two address spaces: {slow} ticks"
    );

    let n = a.make(ObjectType::Notification, 0)?;
    let badged = a.slot();
    let all = u64::from(Rights::ALL.bits());
    invoke(protocols::bootinfo::slot::CNODE, Invocation::CNodeMint, &[n, badged, all, 1])?;
    let signal = average(Syscall::Send as u64, badged, 0);
    let poll = average(Syscall::NbRecv as u64, n, 0);
    rt::println!("bench: notification signal: {signal} ticks");
    rt::println!("bench: notification poll: {poll} ticks");
    rt::println!("bench: notification signal + poll: {} ticks", signal + poll);
    partnered(a, n)?;
    cross_cpu(a)
}

/// Rounds of the remote wake-up measurement (each waits for the waiter to sleep again).
const WAKE_ROUNDS: u64 = 200;
/// Reads of a counter the root task lets pass after each wake-up, so the waiter is
/// asleep again before the next signal.
const SETTLE: u64 = 20_000;

/// When the waiter on the other CPU ran after its last wake-up (0: not yet).
static WOKE_AT: AtomicU64 = AtomicU64::new(0);

fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Waits on its notification for ever, noting when each wake-up let it run.
extern "C" fn remote_waiter(n: u64) -> ! {
    loop {
        let _ = rt::ipc::recv(n);
        WOKE_AT.store(rdtsc(), Ordering::Relaxed);
    }
}

/// With a second CPU: a call round trip to a server there (the slow path both ways, a
/// reschedule IPI each way), and a remote wake-up, from the signal here until the waiter
/// runs there (the time-stamp counter is one clock for both CPUs).
fn cross_cpu(a: &mut Alloc) -> Result<(), Error> {
    if crate::cross_cpu::cpus() < 2 {
        rt::println!("bench: ipc cross-cpu round trip: SKIP (one CPU online)");
        rt::println!("bench: remote wake-up: SKIP (one CPU online)");
        return Ok(());
    }
    let ep = a.make(ObjectType::Endpoint, 0)?;
    let server = spawn_on(a, 1, bench_server_entry(), ep, 254, u64::MAX)?;
    let round_trip = average(Syscall::Call as u64, ep, 1);
    rt::println!(
        "bench: ipc cross-cpu round trip (call + reply_recv, server on CPU 1): {round_trip} ticks"
    );
    invoke(server, Invocation::TcbSuspend, &[])?;
    let n = a.make(ObjectType::Notification, 0)?;
    let waiter = spawn_on(a, 1, remote_waiter, n, 254, u64::MAX)?;
    let settle = || (0..SETTLE).for_each(|_| core::hint::spin_loop());
    settle();
    let mut total = 0;
    for _ in 0..WAKE_ROUNDS {
        WOKE_AT.store(0, Ordering::Relaxed);
        let sent = rdtsc();
        rt::ipc::send(n, &rt::ipc::Msg::default())?;
        while WOKE_AT.load(Ordering::Relaxed) == 0 {
            core::hint::spin_loop();
        }
        total += WOKE_AT.load(Ordering::Relaxed).wrapping_sub(sent);
        settle();
    }
    invoke(waiter, Invocation::TcbSuspend, &[])?;
    rt::println!(
        "bench: remote wake-up (signal until the waiter runs on CPU 1): {} ticks",
        total / WAKE_ROUNDS
    );
    Ok(())
}

/// [`bench_server`] as a thread entry.
fn bench_server_entry() -> extern "C" fn(u64) -> ! {
    extern "C" fn server(ep: u64) -> ! {
        // SAFETY: `bench_server` is a thread body that never returns.
        unsafe { bench_server(ep) }
    }
    server
}

/// The signal+wait and fault round trips, measured in a thread of priority 200 against
/// partners of priority 254 (the root task's own priority is the highest there is).
fn partnered(a: &mut Alloc, n: u64) -> Result<(), Error> {
    let waiter = spawn(a, bench_waiter as *const () as u64, n, 254, u64::MAX)?;
    let fault_ep = a.make(ObjectType::Endpoint, 0)?;
    let handler = spawn(a, fault_server as *const () as u64, fault_ep, 254, u64::MAX)?;
    let report = a.make(ObjectType::Endpoint, 0)?;
    let signal = a.slot();
    let all = u64::from(Rights::ALL.bits());
    invoke(protocols::bootinfo::slot::CNODE, Invocation::CNodeMint, &[n, signal, all, 1])?;
    let m = spawn(a, measurer as *const () as u64, report | signal << 32, 200, fault_ep)?;
    let r = rt::ipc::recv(report);
    for t in [m, waiter, handler] {
        invoke(t, Invocation::TcbSuspend, &[])?;
    }
    let [signal_wait, fault, ..] = r?.msg.words;
    rt::println!(
        "bench: notification signal+wait (wakes a higher-priority waiter): {signal_wait} ticks"
    );
    rt::println!("bench: user-level fault round trip (to a handler and back): {fault} ticks");
    Ok(())
}
