//! Long messages on the host: words beyond the registers travel between IPC buffers, are
//! cut to the registers where a side has none, and a revoked buffer is unbound.

use crate::cap::Cap;
use crate::paging::PhysMemory;
use crate::store::{Store, TcbSlot};
use crate::syscall_tests::spawn_server;
use crate::testbed::{slot, Testbed, ROOT_TCB};
use protocols::error::Error;
use protocols::ipc::{MsgInfo, MAX_LEN, MSG_REGS};
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::Syscall;

const EP: u64 = 20;
const SERVER: u64 = 30;
const CLIENT_BUF: u64 = 40;
const SERVER_BUF: u64 = 41;

fn frame_addr(t: &mut Testbed, s: u64) -> u64 {
    match t.cap(s) {
        Cap::Frame { addr, .. } => addr,
        other => panic!("not a frame: {other:?}"),
    }
}

fn write_words(t: &mut Testbed, frame: u64, words: &[u64]) {
    let f = t.k.store.frame(frame);
    for (i, w) in words.iter().enumerate() {
        f[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
}

fn read_words(t: &mut Testbed, frame: u64, n: usize) -> Vec<u64> {
    let f = t.k.store.frame(frame);
    (0..n).map(|i| u64::from_le_bytes(f[i * 8..i * 8 + 8].try_into().unwrap())).collect()
}

/// An endpoint, two frames, a server blocked receiving; `buffers` says which of root and
/// server get their IPC buffer bound.
fn setup(buffers: (bool, bool)) -> (Testbed, u64) {
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::Endpoint, 0, EP, 1), 0);
    assert_eq!(t.retype(ObjectType::Frame, 0, CLIENT_BUF, 2), 0);
    if buffers.0 {
        assert_eq!(t.invoke(slot::TCB, Invocation::TcbSetIpcBuffer, &[CLIENT_BUF]), 0);
    }
    let server = spawn_server(&mut t, SERVER, EP);
    if buffers.1 {
        // Bound while the server already waits: the buffer is read at the rendezvous.
        assert_eq!(t.invoke(SERVER, Invocation::TcbSetIpcBuffer, &[SERVER_BUF]), 0);
    }
    (t, server)
}

fn call_long(t: &mut Testbed, len: usize) {
    let words: Vec<u64> = (0..len as u64).map(|i| 0x100 + i).collect();
    let client_buf = frame_addr(t, CLIENT_BUF);
    write_words(t, client_buf, &words[MSG_REGS..]);
    let info = MsgInfo::new(7, len as u8).to_raw();
    t.sys(Syscall::Call as u64, [EP, info, words[0], words[1], words[2], words[3]]);
}

#[test]
fn a_long_message_travels_between_ipc_buffers_both_ways() {
    let (mut t, server) = setup((true, true));
    call_long(&mut t, MAX_LEN);
    assert_eq!(t.k.current, server);
    let [rax, _, info, w0, _, _, w3] = t.regs(server);
    assert_eq!((rax, w0, w3), (0, 0x100, 0x103));
    assert_eq!(MsgInfo::from_raw(info), Some(MsgInfo::new(7, MAX_LEN as u8)));
    let server_buf = frame_addr(&mut t, SERVER_BUF);
    let got = read_words(&mut t, server_buf, MAX_LEN - MSG_REGS);
    let want: Vec<u64> = (MSG_REGS as u64..MAX_LEN as u64).map(|i| 0x100 + i).collect();
    assert_eq!(got, want);
    // The reply is long too: six words, two of them from the server's buffer.
    write_words(&mut t, server_buf, &[0xaa, 0xbb]);
    t.sys(Syscall::ReplyRecv as u64, [EP, MsgInfo::new(1, 6).to_raw(), 1, 2, 3, 4]);
    assert_eq!(t.k.current, ROOT_TCB);
    assert_eq!(MsgInfo::from_raw(t.regs(ROOT_TCB)[2]).map(|i| i.len), Some(6));
    let client_buf = frame_addr(&mut t, CLIENT_BUF);
    assert_eq!(read_words(&mut t, client_buf, 2), [0xaa, 0xbb]);
}

#[test]
fn without_a_buffer_on_either_side_the_message_is_cut_to_the_registers() {
    for buffers in [(true, false), (false, true)] {
        let (mut t, server) = setup(buffers);
        call_long(&mut t, 20);
        let [rax, _, info, w0, ..] = t.regs(server);
        assert_eq!((rax, w0), (0, 0x100));
        assert_eq!(MsgInfo::from_raw(info), Some(MsgInfo::new(7, MSG_REGS as u8)), "{buffers:?}");
    }
}

#[test]
fn the_buffer_needs_a_writable_frame_and_dies_with_its_capability() {
    let (mut t, server) = setup((true, true));
    let read_only = u64::from(Rights::READ.bits());
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeCopy, &[CLIENT_BUF, 50, read_only]), 0);
    let refused = t.invoke(slot::TCB, Invocation::TcbSetIpcBuffer, &[50]);
    assert_eq!(refused, Error::InsufficientRights as u64);
    let wrong = t.invoke(slot::TCB, Invocation::TcbSetIpcBuffer, &[EP]);
    assert_eq!(wrong, Error::WrongType as u64);
    // Revoking the server's frame takes the TCB's copy with it: the message is cut.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[SERVER_BUF]), 0);
    call_long(&mut t, 9);
    assert_eq!(MsgInfo::from_raw(t.regs(server)[2]).map(|i| i.len), Some(MSG_REGS as u8));
    // A buffer may be unbound at any time, even while its thread waits (the server shares
    // the root's CSpace and unbinds the root's).
    assert_eq!(t.k.current, server);
    assert_eq!(t.invoke(slot::TCB, Invocation::TcbSetIpcBuffer, &[u64::MAX]), 0);
    let bound = t.k.store.slot(crate::store::tcb_slot(ROOT_TCB, TcbSlot::IpcBuffer)).cap;
    assert_eq!(bound, Cap::Null);
}

#[test]
fn a_message_longer_than_the_limit_is_refused() {
    let (mut t, _) = setup((true, true));
    let info = MsgInfo::new(7, MAX_LEN as u8).to_raw() + 1;
    t.sys(Syscall::Call as u64, [EP, info, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::InvalidArgument as u64);
}
