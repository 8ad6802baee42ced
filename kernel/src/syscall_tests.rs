//! The syscall layer driven as user code would drive it: capabilities, rights, IPC,
//! notifications, faults and untyped accounting, on the host.

use crate::cap::Cap;
use crate::paging::PhysMemory;
use crate::state::Next;
use crate::store::Store;
use crate::tcb::ThreadState;
use crate::testbed::{slot, Testbed, ROOT_TCB, UNTYPED_BASE, USER_PAGE};
use protocols::error::Error;
use protocols::fault::{EXIT_LABEL, FAULT_LABEL, RESUME_AT};
use protocols::ipc::MsgInfo;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::{ShutdownStatus, Syscall};

const CALL: u64 = Syscall::Call as u64;

fn invoke(t: &mut Testbed, cptr: u64, label: Invocation, words: &[u64]) -> u64 {
    t.invoke(cptr, label, words)
}

fn retype(t: &mut Testbed, ty: ObjectType, bits: u64, dst: u64, count: u64) -> u64 {
    t.retype(ty, bits, dst, count)
}

/// A second thread sharing the root's CSpace and VSpace, blocked in `Recv` on `ep`.
pub(crate) fn spawn_server(t: &mut Testbed, tcb_slot: u64, ep: u64) -> u64 {
    assert_eq!(retype(t, ObjectType::Tcb, 0, tcb_slot, 1), 0);
    let Cap::Tcb { addr } = t.cap(tcb_slot) else { panic!("no tcb") };
    assert_eq!(
        invoke(t, tcb_slot, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, u64::MAX]),
        0
    );
    assert_eq!(invoke(t, tcb_slot, Invocation::TcbSetPriority, &[100]), 0);
    t.k.store.tcb(addr).context.rip = 0x40_0000;
    assert_eq!(invoke(t, tcb_slot, Invocation::TcbResume, &[]), 0);
    // Let the server run until it blocks receiving.
    t.sys(Syscall::Yield as u64, [0; 6]);
    assert_eq!(t.k.current, addr);
    t.sys(Syscall::Recv as u64, [ep, 0, 0, 0, 0, 0]);
    let ep = ep_addr(t, ep);
    assert_eq!(t.k.store.sched(addr).state, ThreadState::BlockedRecv { ep });
    assert_eq!(t.k.current, ROOT_TCB);
    addr
}

pub(crate) fn ep_addr(t: &mut Testbed, ep: u64) -> u64 {
    match t.cap(ep) {
        Cap::Endpoint { addr, .. } => addr,
        other => panic!("not an endpoint: {other:?}"),
    }
}

#[test]
fn call_and_reply_recv_carry_words_and_badge() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, 20, 1), 0);
    assert_eq!(
        invoke(&mut t, slot::CNODE, Invocation::CNodeMint, &[20, 21, Testbed::all(), 0xbeef]),
        0
    );
    let server = spawn_server(&mut t, 30, 20);
    // The root calls through the badged copy; the server runs at once.
    t.sys(CALL, [21, MsgInfo::new(7, 3).to_raw(), 11, 22, 33, 44]);
    assert_eq!(t.k.current, server);
    let [rax, badge, info, w0, w1, w2, w3] = t.regs(server);
    assert_eq!((rax, badge), (0, 0xbeef));
    assert_eq!(MsgInfo::from_raw(info), Some(MsgInfo::new(7, 3)));
    assert_eq!([w0, w1, w2, w3], [11, 22, 33, 0], "only len words travel");
    assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::BlockedReply { server });
    // The server replies and waits again; the root resumes with the reply.
    t.sys(Syscall::ReplyRecv as u64, [20, MsgInfo::new(9, 1).to_raw(), 555, 0, 0, 0]);
    assert_eq!(t.k.current, ROOT_TCB);
    let [rax, _, info, w0, ..] = t.regs(ROOT_TCB);
    assert_eq!((rax, w0), (0, 555));
    assert_eq!(MsgInfo::from_raw(info).map(|i| i.label), Some(9));
    assert!(matches!(t.k.store.sched(server).state, ThreadState::BlockedRecv { .. }));
}

#[test]
fn rights_are_checked_at_the_lookup() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let read_only = u64::from(Rights::READ.bits());
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeCopy, &[20, 21, read_only]), 0);
    t.sys(Syscall::Send as u64, [21, MsgInfo::new(1, 0).to_raw(), 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::InsufficientRights as u64);
    t.sys(CALL, [21, MsgInfo::new(1, 0).to_raw(), 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::InsufficientRights as u64);
    // Copying from the narrowed copy cannot widen it again.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeCopy, &[21, 22, Testbed::all()]), 0);
    assert_eq!(t.cap(22).rights(), Rights::READ);
    // Wrong types and empty slots.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::TcbResume, &[]), Error::WrongType as u64);
    assert_eq!(invoke(&mut t, 99, Invocation::TcbResume, &[]), Error::InvalidCapability as u64);
    assert_eq!(
        invoke(&mut t, 1 << 20, Invocation::TcbResume, &[]),
        Error::InvalidCapability as u64
    );
    t.sys(Syscall::Recv as u64, [slot::TCB, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::WrongType as u64);
}

#[test]
fn revoked_capabilities_stay_dead() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Notification, 0, 20, 1);
    invoke(&mut t, slot::CNODE, Invocation::CNodeMint, &[20, 21, Testbed::all(), 1]);
    invoke(&mut t, slot::CNODE, Invocation::CNodeCopy, &[21, 22, Testbed::all()]);
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[20]), 0);
    for dead in [21, 22] {
        assert_eq!(t.cap(dead), Cap::Null);
        t.sys(Syscall::Send as u64, [dead, 0, 0, 0, 0, 0]);
        assert_eq!(t.regs(ROOT_TCB)[0], Error::InvalidCapability as u64);
    }
    // The original survives its revocation.
    t.sys(Syscall::Send as u64, [20, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
}

#[test]
fn untyped_accounting_is_exact_and_exhaustion_is_an_error() {
    let mut t = Testbed::new();
    // A 2^14-byte untyped carved from the root's holds exactly four TCBs of 2^12.
    assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, 15, 1), 0);
    assert_eq!(retype(&mut t, ObjectType::Untyped, 14, 16, 1), 0);
    let small = |t: &mut Testbed, ty: ObjectType, dst: u64, n: u64| {
        invoke(t, 16, Invocation::UntypedRetype, &[ty as u64, 0, dst, n])
    };
    assert_eq!(small(&mut t, ObjectType::Tcb, 20, 3), 0);
    assert_eq!(small(&mut t, ObjectType::Tcb, 23, 1), 0);
    let before = t.k.store.created.len();
    assert_eq!(small(&mut t, ObjectType::Tcb, 24, 1), Error::OutOfMemory as u64);
    assert_eq!(small(&mut t, ObjectType::Endpoint, 24, 1), Error::OutOfMemory as u64);
    assert_eq!(t.k.store.created.len(), before, "a refused retype creates nothing");
    let Cap::Untyped { base, .. } = t.cap(16) else { panic!() };
    let mut tcbs: Vec<u64> =
        t.k.store.created.iter().filter(|c| c.0 == ObjectType::Tcb).map(|c| c.1).collect();
    tcbs.sort_unstable();
    assert_eq!(tcbs, [base, base + 0x1000, base + 0x2000, base + 0x3000], "exact, disjoint");
    assert!(base >= UNTYPED_BASE + 64, "the carved untyped does not overlap the endpoint");
    // The parent untyped keeps going after the carved region.
    assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, 30, 1), 0);
    let Cap::Endpoint { addr, .. } = t.cap(30) else { panic!() };
    assert!(addr >= base + (1 << 14));
    // Revoking the small untyped frees its objects, and retyping starts over.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[16]), 0);
    assert_eq!(t.cap(20), Cap::Null);
    assert_eq!(small(&mut t, ObjectType::Tcb, 20, 4), 0);
    assert_eq!(t.k.store.created.last().map(|c| c.1), Some(base + 0x3000));
}

#[test]
fn hostile_retype_arguments_are_refused() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 16, 0), Error::InvalidArgument as u64);
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 16, 1 << 40), Error::InvalidArgument as u64);
    assert_eq!(retype(&mut t, ObjectType::CNode, 40, 16, 1), Error::InvalidArgument as u64);
    assert_eq!(
        retype(&mut t, ObjectType::Tcb, 0, slot::TCB, 1),
        Error::InvalidArgument as u64,
        "occupied"
    );
    assert_eq!(
        retype(&mut t, ObjectType::Tcb, 0, 255, 2),
        Error::InvalidArgument as u64,
        "past the CNode"
    );
    assert_eq!(
        invoke(&mut t, slot::UNTYPED, Invocation::UntypedRetype, &[99, 0, 16, 1]),
        Error::InvalidArgument as u64
    );
    assert_eq!(
        invoke(&mut t, slot::CNODE, Invocation::CNodeCopy, &[slot::UNTYPED, 20, 31]),
        Error::InvalidArgument as u64,
        "untyped is never copied"
    );
}

#[test]
fn notifications_accumulate_and_wake() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Notification, 0, 20, 1);
    invoke(&mut t, slot::CNODE, Invocation::CNodeMint, &[20, 21, Testbed::all(), 0b01]);
    invoke(&mut t, slot::CNODE, Invocation::CNodeMint, &[20, 22, Testbed::all(), 0b10]);
    t.sys(Syscall::Send as u64, [21, 0, 0, 0, 0, 0]);
    t.sys(Syscall::Send as u64, [22, 0, 0, 0, 0, 0]);
    t.sys(Syscall::NbRecv as u64, [20, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[..2], [0, 0b11]);
    t.sys(Syscall::NbRecv as u64, [20, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[..2], [0, 0], "a poll finds nothing");
    // Blocking wait, then a signal from another thread wakes it.
    t.sys(Syscall::Recv as u64, [20, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, 0, "nothing else to run");
    let Cap::Notification { addr: ntfn, .. } = t.cap(20) else { panic!() };
    t.k.signal(ntfn, 0b100);
    assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::Ready);
    assert_eq!(t.regs(ROOT_TCB)[..2], [0, 0b100]);
}

#[test]
fn a_signal_without_bits_still_wakes_the_next_wait() {
    // The unbadged capability signals no bits; the next wait must return at once with
    // badge 0 (a driver's "the transmitter may have drained" signal), not sleep for good.
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Notification, 0, 20, 1);
    t.sys(Syscall::Send as u64, [20, 0, 0, 0, 0, 0]);
    t.sys(Syscall::Send as u64, [20, 0, 0, 0, 0, 0]);
    t.sys(Syscall::Recv as u64, [20, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::Ready, "the signal was kept");
    assert_eq!(t.regs(ROOT_TCB)[..2], [0, 0]);
    // Two signals merged into one: the next poll finds nothing, the next wait blocks.
    t.sys(Syscall::NbRecv as u64, [20, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[..2], [0, 0]);
    t.sys(Syscall::Recv as u64, [20, 0, 0, 0, 0, 0]);
    assert!(matches!(t.k.store.sched(ROOT_TCB).state, ThreadState::BlockedNotification { .. }));
}

#[test]
fn capabilities_travel_only_with_the_grant_right() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    retype(&mut t, ObjectType::Notification, 0, 40, 1);
    let no_grant = u64::from(Rights::ALL.bits() & !Rights::GRANT.bits());
    invoke(&mut t, slot::CNODE, Invocation::CNodeCopy, &[20, 21, no_grant]);
    let server = spawn_server(&mut t, 30, 20);
    t.k.store.tcb(server).context.r13 = 50;
    let mut grant = MsgInfo::new(1, 0);
    grant.grant = true;
    // Without the grant right the message arrives but the capability does not.
    t.k.store.tcb(ROOT_TCB).context.r12 = 40;
    t.sys(Syscall::Send as u64, [21, grant.to_raw(), 0, 0, 0, 0]);
    assert_eq!(t.cap(50), Cap::Null);
    assert_eq!(MsgInfo::from_raw(t.regs(server)[2]).map(|i| i.grant), Some(false));
    // Server waits again; with the grant right the notification lands in slot 50.
    t.k.current = server;
    t.sys(Syscall::Recv as u64, [20, 0, 0, 0, 0, 0]);
    t.k.current = ROOT_TCB;
    t.k.store.sched(ROOT_TCB).state = ThreadState::Ready;
    t.sys(Syscall::Send as u64, [20, grant.to_raw(), 0, 0, 0, 0]);
    assert!(matches!(t.cap(50), Cap::Notification { .. }));
    assert_eq!(MsgInfo::from_raw(t.regs(server)[2]).map(|i| i.grant), Some(true));
}

/// A worker thread in `tcb_slot` whose faults go to `fault_ep` (a slot or `u64::MAX`),
/// running: the root task drops below it.
fn spawn_worker(t: &mut Testbed, tcb_slot: u64, fault_ep: u64) -> u64 {
    retype(t, ObjectType::Tcb, 0, tcb_slot, 1);
    let Cap::Tcb { addr: worker } = t.cap(tcb_slot) else { panic!() };
    let cspace = [slot::CNODE, slot::VSPACE, fault_ep];
    assert_eq!(invoke(t, tcb_slot, Invocation::TcbConfigure, &cspace), 0);
    t.k.store.tcb(worker).context.rip = 0x40_1234;
    invoke(t, tcb_slot, Invocation::TcbSetPriority, &[100]);
    invoke(t, tcb_slot, Invocation::TcbResume, &[]);
    invoke(t, slot::TCB, Invocation::TcbSetPriority, &[50]);
    assert_eq!(t.k.current, worker);
    worker
}

#[test]
fn a_fault_reaches_the_handler_which_resumes_the_thread() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let handler = spawn_server(&mut t, 30, 20);
    let worker = spawn_worker(&mut t, 31, 20);
    t.k.store.tcb(worker).context.rbx = 77;
    t.k.store.tcb(worker).context.rax = 55;
    let next = t.k.fault(14, 6, 0xdead_0000);
    assert_eq!(next, Next::Run);
    assert_eq!(t.k.current, handler);
    let [_, _, info, vector, error, rip, addr] = t.regs(handler);
    assert_eq!(MsgInfo::from_raw(info).map(|i| i.label), Some(FAULT_LABEL));
    assert_eq!([vector, error, rip, addr], [14, 6, 0x40_1234, 0xdead_0000]);
    // The handler resumes it two bytes on; the worker's registers are untouched (a fault
    // is no syscall of its own: it has no status to clobber RAX with).
    t.sys(Syscall::ReplyRecv as u64, [20, MsgInfo::new(RESUME_AT, 1).to_raw(), 0x40_1236, 0, 0, 0]);
    assert_eq!(t.k.current, worker);
    let c = t.k.store.tcb(worker).context;
    assert_eq!((c.rip, c.rbx, c.rax), (0x40_1236, 77, 55));
    // Revoking the endpoint removes the worker's copy: a fault then has no handler, and
    // the thread just stops while the rest keep running; nothing is printed.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[20]), 0);
    let next = t.k.fault(13, 0, 0);
    assert_eq!(t.k.store.sched(worker).state, ThreadState::Inactive);
    assert_eq!(t.k.store.sched(worker).message, None);
    assert_eq!((next, t.k.current), (Next::Run, ROOT_TCB));
    assert!(t.out.console.is_empty());
}

#[test]
fn an_exit_reaches_the_waiting_handler_and_the_thread_stays_stopped() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    invoke(&mut t, slot::CNODE, Invocation::CNodeMint, &[20, 21, Testbed::all(), 0x77]);
    let handler = spawn_server(&mut t, 30, 20);
    let worker = spawn_worker(&mut t, 31, 21);
    assert_eq!(t.sys(Syscall::ThreadExit as u64, [42, 0, 0, 0, 0, 0]), Next::Run);
    assert_eq!(t.k.current, handler);
    let [rax, badge, info, code, ..] = t.regs(handler);
    assert_eq!(
        (rax, badge, MsgInfo::from_raw(info), code),
        (0, 0x77, Some(MsgInfo::new(EXIT_LABEL, 1)), 42)
    );
    assert_eq!(t.k.store.sched(worker).state, ThreadState::Inactive);
    assert_eq!(t.k.store.sched(worker).message, None);
    // The exit is no call: the handler's reply reaches nobody and the worker stays put.
    t.sys(Syscall::Reply as u64, [0, MsgInfo::new(RESUME_AT, 1).to_raw(), 0x40_0000, 0, 0, 0]);
    assert_eq!(t.k.store.sched(worker).state, ThreadState::Inactive);
    assert!(t.out.console.is_empty());
}

#[test]
fn an_exit_waits_for_its_handler_then_the_thread_is_inactive() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let worker = spawn_worker(&mut t, 31, 20);
    // Nobody receives yet: the exit waits on the endpoint, nothing is lost.
    t.sys(Syscall::ThreadExit as u64, [3, 0, 0, 0, 0, 0]);
    let ep = ep_addr(&mut t, 20);
    assert!(
        matches!(t.k.store.sched(worker).state, ThreadState::BlockedSend { ep: e, call: false, .. } if e == ep)
    );
    assert_eq!(t.k.current, ROOT_TCB);
    t.sys(Syscall::Recv as u64, [20, 0, 0, 0, 0, 0]);
    let [rax, _, info, code, ..] = t.regs(ROOT_TCB);
    assert_eq!((rax, MsgInfo::from_raw(info).map(|i| i.label), code), (0, Some(EXIT_LABEL), 3));
    assert_eq!(t.k.store.sched(worker).state, ThreadState::Inactive, "delivered, not resumed");
    assert_eq!(t.k.current, ROOT_TCB);
}

#[test]
fn an_exit_whose_endpoint_goes_away_still_stops_the_thread() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let worker = spawn_worker(&mut t, 31, 20);
    t.sys(Syscall::ThreadExit as u64, [3, 0, 0, 0, 0, 0]);
    // Deleting the last capabilities to the endpoint wakes its waiters with an error; an
    // exiting thread is not woken but stops.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[20]), 0);
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[20]), 0);
    assert_eq!(t.k.store.sched(worker).state, ThreadState::Inactive);
    assert_eq!(t.k.store.sched(worker).message, None);
    // Resumed, it runs again (above the root task).
    invoke(&mut t, 31, Invocation::TcbResume, &[]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
    assert_eq!((t.k.current, t.k.store.sched(worker).state), (worker, ThreadState::Ready));
}

#[test]
fn without_a_fault_endpoint_an_exit_just_stops_the_thread() {
    let mut t = Testbed::new();
    let worker = spawn_worker(&mut t, 31, u64::MAX);
    assert_eq!(t.sys(Syscall::ThreadExit as u64, [1, 0, 0, 0, 0, 0]), Next::Run);
    assert_eq!(t.k.store.sched(worker).state, ThreadState::Inactive);
    assert_eq!(t.k.store.sched(worker).message, None);
    assert_eq!(t.k.current, ROOT_TCB);
    assert!(t.out.console.is_empty());
}

#[test]
fn deleting_an_endpoint_wakes_its_waiters_with_an_error() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let server = spawn_server(&mut t, 30, 20);
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[20]), 0);
    assert_eq!(t.k.store.sched(server).state, ThreadState::Ready);
    assert_eq!(t.regs(server)[0], Error::ObjectDeleted as u64);
}

#[test]
fn user_pointers_are_checked_and_only_the_root_task_may_shut_down() {
    let mut t = Testbed::new();
    t.k.store.frame(0x50_0000)[..5].copy_from_slice(b"hello");
    t.sys(Syscall::DebugWrite as u64, [USER_PAGE, 5, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
    assert_eq!(t.out.console, b"hello");
    for (ptr, len) in [(0xffff_ffff_8000_0000, 4), (USER_PAGE + 4090, 16), (0, 1), (u64::MAX, 2)] {
        t.sys(Syscall::DebugWrite as u64, [ptr, len, 0, 0, 0, 0]);
        assert_eq!(t.regs(ROOT_TCB)[0], Error::BadUserPointer as u64, "{ptr:#x}+{len}");
    }
    assert_eq!(t.out.console, b"hello", "nothing of a bad buffer is written");
    assert_eq!(t.sys(Syscall::Shutdown as u64, [5, 0, 0, 0, 0, 0]), Next::Run);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::InvalidArgument as u64);
    t.k.store.tcb(ROOT_TCB).root_task = false;
    t.sys(Syscall::Shutdown as u64, [0, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::NotPermitted as u64);
    t.k.store.tcb(ROOT_TCB).root_task = true;
    assert_eq!(t.sys(Syscall::Shutdown as u64, [0; 6]), Next::Shutdown(ShutdownStatus::Pass));
    t.sys(999, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::InvalidSyscall as u64);
}

#[test]
fn write_registers_sets_the_entry_stack_and_argument_and_keeps_ring_3() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 30, 1), 0);
    let Cap::Tcb { addr } = t.cap(30) else { panic!() };
    t.k.store.tcb(addr).context.cs = 0x08;
    assert_eq!(invoke(&mut t, 30, Invocation::TcbWriteRegisters, &[0x40_1000, 0x7ff8, 42]), 0);
    let c = t.k.store.tcb(addr).context;
    assert_eq!((c.rip, c.rsp, c.rdi), (0x40_1000, 0x7ff8, 42));
    assert_eq!(c.cs, crate::context::USER_CS, "a TCB's registers always return to ring 3");
    assert_eq!(
        invoke(&mut t, 30, Invocation::TcbWriteRegisters, &[1, 2]),
        Error::InvalidArgument as u64
    );
}

#[test]
fn a_retype_asks_for_one_to_256_objects() {
    let mut t = Testbed::new();
    // A worker whose CSpace is a CNode of 512 slots, given the root's untyped (index 1),
    // has room for the most objects one retype makes.
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 30, 1), 0);
    assert_eq!(retype(&mut t, ObjectType::CNode, 9, 31, 1), 0);
    assert_eq!(invoke(&mut t, 31, Invocation::CNodeMove, &[slot::UNTYPED, 1]), 0);
    assert_eq!(invoke(&mut t, 30, Invocation::TcbConfigure, &[31, slot::VSPACE, u64::MAX]), 0);
    invoke(&mut t, 30, Invocation::TcbSetPriority, &[100]);
    invoke(&mut t, 30, Invocation::TcbResume, &[]);
    t.sys(Syscall::Yield as u64, [0; 6]);
    let Cap::Tcb { addr: worker } = t.cap(30) else { panic!() };
    assert_eq!(t.k.current, worker);
    let endpoints = |t: &mut Testbed, first: u64, count: u64| {
        t.invoke(1, Invocation::UntypedRetype, &[ObjectType::Endpoint as u64, 0, first, count])
    };
    for count in [0, 257, u64::MAX] {
        assert_eq!(endpoints(&mut t, 2, count), Error::InvalidArgument as u64, "{count} objects");
    }
    assert_eq!(endpoints(&mut t, 2, 256), 0, "256 objects at once");
    assert_eq!(endpoints(&mut t, 258, 1), 0);
}

#[test]
fn a_fault_endpoint_must_be_an_endpoint_the_thread_may_call() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 30, 1), 0);
    assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, 20, 1), 0);
    assert_eq!(retype(&mut t, ObjectType::Notification, 0, 22, 1), 0);
    let send_only = u64::from(Rights::WRITE.bits());
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeCopy, &[20, 21, send_only]), 0);
    let configure = |t: &mut Testbed, ep| {
        invoke(t, 30, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, ep])
    };
    assert_eq!(configure(&mut t, 21), Error::InsufficientRights as u64);
    assert_eq!(configure(&mut t, 22), Error::WrongType as u64);
    assert_eq!(configure(&mut t, 20), 0);
}

/// Suspending a thread that waits for a reply takes back the server's reply link only
/// if the link is still to that thread.
#[test]
fn suspending_a_caller_leaves_a_server_serving_another_alone() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let server = spawn_server(&mut t, 30, 20);
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 31, 1), 0);
    let Cap::Tcb { addr: caller } = t.cap(31) else { panic!() };
    t.k.store.sched(caller).state = ThreadState::BlockedReply { server };
    t.k.store.sched(server).caller = ROOT_TCB;
    assert_eq!(invoke(&mut t, 31, Invocation::TcbSuspend, &[]), 0);
    assert_eq!(t.k.store.sched(server).caller, ROOT_TCB, "the server's link was not to it");
    t.k.store.sched(server).caller = caller;
    t.k.store.sched(caller).state = ThreadState::BlockedReply { server };
    assert_eq!(invoke(&mut t, 31, Invocation::TcbSuspend, &[]), 0);
    assert_eq!(t.k.store.sched(server).caller, 0);
}

#[test]
fn a_reply_object_is_sent_on_not_called() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::Reply, 0, 20, 1), 0);
    let call = MsgInfo::new(1, 0).to_raw();
    t.sys(Syscall::Call as u64, [20, call, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::WrongType as u64);
    t.sys(Syscall::Send as u64, [20, call, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "an empty Reply object answers nobody");
}

/// A fault waiting to be delivered when its endpoint goes away is not the thread's last
/// word: the thread runs on as it was and meets its fault again.
#[test]
fn a_fault_whose_endpoint_goes_away_runs_the_thread_again() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let worker = spawn_worker(&mut t, 31, 20);
    t.k.store.tcb(worker).context.rax = 55;
    t.k.fault(14, 6, 0);
    assert!(matches!(t.k.store.sched(worker).state, ThreadState::BlockedSend { call: true, .. }));
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[20]), 0);
    invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[20]);
    // It outranks the root task: it runs at once, its registers as they were.
    assert_eq!(t.k.current, worker);
    assert_eq!(t.k.store.sched(worker).state, ThreadState::Ready);
    assert_eq!(t.k.store.sched(worker).message, None);
    assert_eq!(t.k.store.tcb(worker).context.rax, 55, "no status for a fault");
}

/// A reply reaches only a caller that still waits for it from this server.
#[test]
fn a_reply_to_a_caller_that_no_longer_waits_does_nothing() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 31, 1), 0);
    let Cap::Tcb { addr: gone } = t.cap(31) else { panic!() };
    t.k.store.sched(ROOT_TCB).caller = gone;
    t.sys(Syscall::Reply as u64, [0, MsgInfo::new(1, 1).to_raw(), 9, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
    assert_eq!(t.k.store.sched(gone).state, ThreadState::Inactive);
    assert_eq!(t.k.store.tcb(gone).context.rdx, 0, "no message reached it");
    assert_eq!(t.k.store.sched(ROOT_TCB).caller, 0, "the link is used up");
}

#[test]
fn a_debug_write_takes_up_to_its_maximum_in_one_call() {
    use protocols::syscall::DEBUG_WRITE_MAX;
    let mut t = Testbed::new();
    t.k.store.frame(0x50_0000).fill(b'a');
    let max = DEBUG_WRITE_MAX as u64;
    t.sys(Syscall::DebugWrite as u64, [USER_PAGE, max, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
    assert_eq!(t.out.console.len(), DEBUG_WRITE_MAX);
    t.sys(Syscall::DebugWrite as u64, [USER_PAGE, max + 1, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::InvalidArgument as u64);
}

/// The running thread whose address space goes away stops there: the next thread runs.
#[test]
fn a_running_thread_that_loses_its_address_space_stops() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    let server = spawn_server(&mut t, 30, 20);
    // The server's VSpace is a copy of the root task's: give it one of its own to lose.
    assert_eq!(retype(&mut t, ObjectType::VSpace, 14, 21, 1), 0);
    invoke(&mut t, 30, Invocation::TcbSuspend, &[]);
    assert_eq!(invoke(&mut t, 30, Invocation::TcbConfigure, &[slot::CNODE, 21, u64::MAX]), 0);
    invoke(&mut t, 30, Invocation::TcbSetPriority, &[100]);
    invoke(&mut t, 30, Invocation::TcbResume, &[]);
    t.sys(Syscall::Yield as u64, [0; 6]);
    assert_eq!(t.k.current, server);
    // It revokes its own address space (its TCB's copy goes with it).
    t.sys(
        Syscall::Call as u64,
        [slot::CNODE, MsgInfo::new(Invocation::CNodeRevoke as u64, 1).to_raw(), 21, 0, 0, 0],
    );
    assert_eq!(t.k.store.sched(server).state, ThreadState::Inactive);
    assert_eq!(t.k.current, ROOT_TCB);
}

/// A tick while nothing runs preempts nobody.
#[test]
fn a_tick_while_idle_queues_nothing() {
    let mut t = Testbed::new();
    retype(&mut t, ObjectType::Endpoint, 0, 20, 1);
    assert_eq!(t.sys(Syscall::Recv as u64, [20, 0, 0, 0, 0, 0]), Next::Idle);
    assert_eq!(t.k.current, 0);
    assert_eq!(t.k.preempt(), Next::Idle);
    assert_eq!((t.k.current, t.k.sched.on(0).highest()), (0, None));
    // Nor does a tick that finds the current thread blocked.
    t.k.current = ROOT_TCB;
    assert_eq!(t.k.preempt(), Next::Idle);
    assert_eq!(t.k.sched.on(0).highest(), None, "a blocked thread was queued");
}

#[test]
fn a_thread_is_configured_with_a_cnode_and_a_vspace_only() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, 30, 1), 0);
    assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, 20, 1), 0);
    let configure = |t: &mut Testbed, cspace, vspace| {
        invoke(t, 30, Invocation::TcbConfigure, &[cspace, vspace, u64::MAX])
    };
    assert_eq!(configure(&mut t, 20, slot::VSPACE), Error::WrongType as u64, "CSpace");
    assert_eq!(configure(&mut t, slot::CNODE, 20), Error::WrongType as u64, "VSpace");
    assert_eq!(configure(&mut t, slot::CNODE, slot::VSPACE), 0);
}
