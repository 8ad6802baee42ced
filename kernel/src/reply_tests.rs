//! Reply objects on the host: a server puts a caller's reply aside, serves another
//! caller, and the saved reply is sent later (by another thread too); deleting the
//! object or suspending the caller leaves nobody waiting for ever.

use crate::cap::Cap;
use crate::store::Store;
use crate::syscall_tests::spawn_server;
use crate::tcb::ThreadState;
use crate::testbed::{slot, Testbed, ROOT_TCB};
use protocols::error::Error;
use protocols::ipc::MsgInfo;
use protocols::object::{Invocation, ObjectType};
use protocols::syscall::Syscall;

const EP: u64 = 20;
const REPLY: u64 = 40;
const SERVER: u64 = 30;
const CLIENT: u64 = 31;

fn call(t: &mut Testbed, label: u64, word: u64) {
    t.sys(Syscall::Call as u64, [EP, MsgInfo::new(label, 1).to_raw(), word, 0, 0, 0]);
}

fn reply_addr(t: &mut Testbed) -> u64 {
    match t.cap(REPLY) {
        Cap::Reply { addr } => addr,
        other => panic!("not a reply object: {other:?}"),
    }
}

/// An endpoint, a Reply object, a server, and (if `client`) a second client in the
/// root's CSpace below the root's priority; then the root calls and the server runs.
/// Returns the server and the client.
fn served_root(client: bool) -> (Testbed, u64, u64) {
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::Endpoint, 0, EP, 1), 0);
    assert_eq!(t.retype(ObjectType::Reply, 0, REPLY, 1), 0);
    let server = spawn_server(&mut t, SERVER, EP);
    let client = if client { spawn_client(&mut t) } else { 0 };
    call(&mut t, 1, 111);
    assert_eq!(t.k.current, server);
    (t, server, client)
}

fn spawn_client(t: &mut Testbed) -> u64 {
    assert_eq!(t.retype(ObjectType::Tcb, 0, CLIENT, 1), 0);
    let Cap::Tcb { addr } = t.cap(CLIENT) else { panic!("no tcb") };
    let configure = [slot::CNODE, slot::VSPACE, u64::MAX];
    assert_eq!(t.invoke(CLIENT, Invocation::TcbConfigure, &configure), 0);
    assert_eq!(t.invoke(CLIENT, Invocation::TcbSetPriority, &[50]), 0);
    assert_eq!(t.invoke(CLIENT, Invocation::TcbResume, &[]), 0);
    addr
}

#[test]
fn a_saved_reply_is_answered_later_and_by_another_thread() {
    let (mut t, server, client) = served_root(true);
    let r = reply_addr(&mut t);
    assert_eq!(t.invoke(REPLY, Invocation::ReplySave, &[]), 0);
    assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::BlockedSavedReply { reply: r });
    assert_eq!(t.k.store.sched(server).caller, 0, "the server owes nothing directly now");
    // Nothing more is owed, so a second save has nothing to take.
    assert_eq!(t.invoke(REPLY, Invocation::ReplySave, &[]), Error::WouldBlock as u64);
    // The server waits again; the client runs and calls.
    t.sys(Syscall::Recv as u64, [EP, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, client);
    call(&mut t, 2, 222);
    assert_eq!(t.k.current, server);
    assert_eq!(t.regs(server)[3], 222);
    // The object is taken: the client's reply cannot go there.
    assert_eq!(t.invoke(REPLY, Invocation::ReplySave, &[]), Error::InUse as u64);
    // The client is answered first, directly.
    t.sys(Syscall::ReplyRecv as u64, [EP, MsgInfo::new(5, 1).to_raw(), 555, 0, 0, 0]);
    assert_eq!(t.k.current, client);
    assert_eq!(t.regs(client)[3], 555);
    // The client holds the reply capability too (same CSpace): it answers the root.
    t.sys(Syscall::Send as u64, [REPLY, MsgInfo::new(9, 1).to_raw(), 999, 0, 0, 0]);
    assert_eq!(t.regs(client)[0], 0);
    assert_eq!(t.k.current, ROOT_TCB, "the answered root outranks the client");
    let [rax, _, info, w0, ..] = t.regs(ROOT_TCB);
    assert_eq!((rax, w0), (0, 999));
    assert_eq!(MsgInfo::from_raw(info).map(|i| i.label), Some(9));
    assert_eq!(t.k.store.reply(r).caller, 0);
    // An empty object: the send is accepted and wakes nobody.
    t.sys(Syscall::Send as u64, [REPLY, MsgInfo::new(9, 1).to_raw(), 1, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
    assert_eq!(t.k.store.sched(client).state, ThreadState::Ready);
    assert!(matches!(t.k.store.sched(server).state, ThreadState::BlockedRecv { .. }));
}

#[test]
fn deleting_the_reply_object_releases_the_caller() {
    let (mut t, server, _) = served_root(false);
    assert_eq!(t.invoke(REPLY, Invocation::ReplySave, &[]), 0);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[REPLY]), 0);
    assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::Ready);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::ObjectDeleted as u64);
    assert_eq!(t.k.current, server, "the release does not preempt the deleter");
}

#[test]
fn a_suspended_caller_leaves_the_object_empty() {
    let (mut t, _, _) = served_root(false);
    let r = reply_addr(&mut t);
    assert_eq!(t.invoke(REPLY, Invocation::ReplySave, &[]), 0);
    assert_eq!(t.invoke(slot::TCB, Invocation::TcbSuspend, &[]), 0);
    assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::Inactive);
    assert_eq!(t.k.store.reply(r).caller, 0);
    // Resumed, it calls again and can be served through the same object.
    assert_eq!(t.invoke(slot::TCB, Invocation::TcbResume, &[]), 0);
    assert_eq!(t.invoke(REPLY, Invocation::ReplySave, &[]), Error::WouldBlock as u64);
}

#[test]
fn reply_capabilities_take_only_their_own_operations() {
    let (mut t, _, _) = served_root(false);
    // Receiving on it or invoking another object's operation on it is refused by type.
    t.sys(Syscall::Recv as u64, [REPLY, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(t.k.current)[0], Error::WrongType as u64);
    assert_eq!(t.invoke(REPLY, Invocation::TcbResume, &[]), Error::WrongType as u64);
    // A copy names the same object.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeCopy, &[REPLY, 41, Testbed::all()]), 0);
    assert!(t.cap(41).same_object(&t.cap(REPLY)));
}

/// A reply link or a Reply object whose caller no longer waits on it answers nobody,
/// and saving such a link into a Reply object fails.
#[test]
fn a_link_to_a_caller_that_no_longer_waits_is_not_saved_or_answered() {
    let (mut t, server, _) = served_root(false);
    // The root task is no longer waiting for the server's reply, though the link says so.
    t.k.store.sched(ROOT_TCB).state = ThreadState::Inactive;
    assert_eq!(t.invoke(REPLY, Invocation::ReplySave, &[]), Error::WouldBlock as u64);
    assert_eq!(t.k.store.sched(server).caller, ROOT_TCB, "the link stays where it was");
    let reply = reply_addr(&mut t);
    t.k.store.reply(reply).caller = ROOT_TCB;
    let ready = t.k.sched.on(0).highest();
    t.sys(Syscall::Send as u64, [REPLY, MsgInfo::new(7, 1).to_raw(), 70, 0, 0, 0]);
    assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::Inactive, "nobody was answered");
    assert_eq!(t.k.store.reply(reply).caller, 0, "the object is empty now");
    // An empty object answers nobody either: no thread 0 is made ready.
    t.sys(Syscall::Send as u64, [REPLY, MsgInfo::new(7, 1).to_raw(), 70, 0, 0, 0]);
    assert_eq!(t.k.sched.on(0).highest(), ready);
    assert_eq!(t.k.current, server);
}
