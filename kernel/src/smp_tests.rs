//! Several CPUs on the host: each runs only its own queue, a wake-up or a move that
//! outranks another CPU's thread asks that CPU to reschedule, IPC crosses CPUs on the
//! slow path, and a thread running elsewhere is stalled before it is changed.

use crate::cap::Cap;
use crate::state::Next;
use crate::store::Store;
use crate::syscall_tests::{ep_addr, spawn_server};
use crate::tcb::ThreadState;
use crate::testbed::{Testbed, ROOT_TCB};
use core::cell::RefCell;
use protocols::error::Error;
use protocols::ipc::MsgInfo;
use protocols::object::{Invocation, ObjectType};
use protocols::syscall::Syscall;

const EP: u64 = 20;
const SERVER: u64 = 30;

std::thread_local! {
    /// The CPUs stalled, in order.
    static STALLED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn two_cpus() -> Testbed {
    let mut t = Testbed::new();
    t.k.cpus = 2;
    t.k.stall = |cpu| STALLED.with(|s| s.borrow_mut().push(cpu));
    STALLED.with(|s| s.borrow_mut().clear());
    t
}

fn stalled() -> Vec<usize> {
    STALLED.with(|s| s.borrow().clone())
}

/// A server blocked receiving on `EP`, moved to CPU 1 (which idles).
fn server_on_cpu1(t: &mut Testbed) -> u64 {
    assert_eq!(t.retype(ObjectType::Endpoint, 0, EP, 1), 0);
    let server = spawn_server(t, SERVER, EP);
    assert_eq!(t.invoke(SERVER, Invocation::TcbSetAffinity, &[1]), 0);
    assert_eq!(t.k.store.sched(server).cpu, 1);
    server
}

#[test]
fn affinity_is_checked_against_the_cpus_online() {
    let mut t = two_cpus();
    assert_eq!(t.retype(ObjectType::Tcb, 0, SERVER, 1), 0);
    let status = t.invoke(SERVER, Invocation::TcbSetAffinity, &[2]);
    assert_eq!(status, Error::InvalidArgument as u64);
    let status = t.invoke(crate::testbed::slot::CNODE, Invocation::TcbSetAffinity, &[1]);
    assert_eq!(status, Error::WrongType as u64);
    assert_eq!(t.invoke(SERVER, Invocation::TcbSetAffinity, &[1]), 0);
}

#[test]
fn a_thread_is_made_on_its_creators_cpu() {
    let mut t = two_cpus();
    t.k.store.sched(ROOT_TCB).cpu = 1;
    t.k.enter_on(1);
    assert_eq!(t.k.current, 0, "CPU 1 idled");
    t.k.current = ROOT_TCB;
    assert_eq!(t.retype(ObjectType::Tcb, 0, SERVER, 1), 0);
    let Cap::Tcb { addr } = t.cap(SERVER) else { panic!("no tcb") };
    assert_eq!(t.k.store.sched(addr).cpu, 1);
}

#[test]
fn a_call_wakes_a_server_on_another_cpu_and_its_reply_comes_back() {
    let mut t = two_cpus();
    let server = server_on_cpu1(&mut t);
    let info = MsgInfo::new(7, 1).to_raw();
    // The root calls: the server becomes ready on CPU 1, which is asked to reschedule;
    // CPU 0 idles (the root waits for the reply), whatever the fastpath would have done.
    let c = &mut t.k.store.tcb(ROOT_TCB).context;
    (c.rax, c.rdi, c.rsi, c.rdx) = (Syscall::Call as u64, EP, info, 42);
    assert_eq!(t.k.fastpath(), crate::fastpath::FastPath::Declined);
    let next = t.sys(Syscall::Call as u64, [EP, info, 42, 0, 0, 0]);
    assert_eq!(next, Next::Idle);
    assert_eq!(t.k.current, 0);
    assert_eq!(t.k.reschedule, 1 << 1);
    assert_eq!(t.k.store.sched(server).state, ThreadState::Ready);
    // CPU 1 takes its interrupt and runs the server, with the message.
    t.k.reschedule = 0;
    t.k.enter_on(1);
    assert_eq!(t.k.schedule(), Next::Run);
    assert_eq!(t.k.current, server);
    assert_eq!(t.regs(server)[3], 42);
    // The reply wakes the root on CPU 0, which idles: it is asked to reschedule.
    t.sys(Syscall::ReplyRecv as u64, [EP, MsgInfo::new(0, 1).to_raw(), 43, 0, 0, 0]);
    assert_eq!(t.k.current, 0, "the server waits again");
    assert_eq!(t.k.reschedule, 1 << 0);
    t.k.enter_on(0);
    assert_eq!(t.k.schedule(), Next::Run);
    assert_eq!(t.k.current, ROOT_TCB);
    assert_eq!(t.regs(ROOT_TCB)[3], 43);
    let ep = ep_addr(&mut t, EP);
    assert_eq!(t.k.store.sched(server).state, ThreadState::BlockedRecv { ep });
}

#[test]
fn a_thread_running_on_another_cpu_is_stalled_before_it_changes() {
    let mut t = two_cpus();
    let server = server_on_cpu1(&mut t);
    // The server runs on CPU 1 (woken by a notification-free send).
    t.sys(Syscall::NbSend as u64, [EP, MsgInfo::new(1, 0).to_raw(), 0, 0, 0, 0]);
    t.k.enter_on(1);
    assert_eq!(t.k.schedule(), Next::Run);
    assert_eq!(t.k.current, server);
    t.k.enter_on(0);
    assert!(stalled().is_empty());
    // New registers: CPU 1 is stalled first, the server goes back into its queue.
    assert_eq!(t.invoke(SERVER, Invocation::TcbWriteRegisters, &[0x40_1000, 0, 5]), 0);
    assert_eq!(stalled(), [1]);
    assert_eq!(t.k.running_on(1), 0);
    assert_eq!(t.k.sched.on(1).highest(), Some(100));
    t.k.enter_on(1);
    assert_eq!(t.k.schedule(), Next::Run);
    assert_eq!((t.k.current, t.k.store.tcb(server).context.rip), (server, 0x40_1000));
    // Suspended while it runs there: stalled again, and CPU 1 idles.
    t.k.enter_on(0);
    assert_eq!(t.invoke(SERVER, Invocation::TcbSuspend, &[]), 0);
    assert_eq!(stalled(), [1, 1]);
    t.k.enter_on(1);
    assert_eq!(t.k.schedule(), Next::Idle);
    assert_eq!(t.k.store.sched(server).state, ThreadState::Inactive);
}

#[test]
fn a_thread_that_moves_itself_leaves_at_once() {
    let mut t = two_cpus();
    assert_eq!(t.invoke(crate::testbed::slot::TCB, Invocation::TcbSetAffinity, &[1]), 0);
    assert_eq!(t.k.current, 0, "CPU 0 has nothing else to run");
    assert_eq!(t.k.reschedule, 1 << 1);
    t.k.enter_on(1);
    assert_eq!(t.k.schedule(), Next::Run);
    assert_eq!(t.k.current, ROOT_TCB);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "the invocation succeeded");
}
