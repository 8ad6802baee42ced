//! IPC and object invocations in the register convention of `protocols::ipc`.

use protocols::error::{Error, RawError};
use protocols::ipc::MsgInfo;
use protocols::object::{Invocation, ObjectType};
use protocols::syscall::Syscall;

/// A message: label, length and up to four words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Msg {
    /// Label, length, grant flag.
    pub info: MsgInfo,
    /// The words (only `info.len` are meaningful).
    pub words: [u64; 4],
}

impl Msg {
    /// A message with `label` and `words`.
    pub fn new(label: u64, words: &[u64]) -> Self {
        let mut w = [0; 4];
        let n = words.len().min(4);
        w[..n].copy_from_slice(&words[..n]);
        Self { info: MsgInfo::new(label, n as u8), words: w }
    }
}

/// A received message and the badge of the capability it came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's badge (or the notification bits).
    pub badge: u64,
    /// The message.
    pub msg: Msg,
}

/// The full register-level IPC syscall: sends `msg` (and the capability in slot
/// `grant`), receives into `recv_slot`.
pub fn ipc(
    number: Syscall,
    cptr: u64,
    msg: &Msg,
    grant: u64,
    recv_slot: u64,
) -> Result<Received, RawError> {
    let (status, r) = ipc_raw(number, cptr, msg, grant, recv_slot);
    protocols::error::check(status).map(|()| r)
}

/// [`ipc`] returning the status word and every result register even on failure (a
/// refused VMCS batch explains itself in `rdx` and `r10`).
pub fn ipc_raw(
    number: Syscall,
    cptr: u64,
    msg: &Msg,
    grant: u64,
    recv_slot: u64,
) -> (u64, Received) {
    let r = ipc_regs(number, cptr, msg, grant, recv_slot);
    (r.status, r.received())
}

/// The result registers of an IPC syscall, undecoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs {
    /// `rax`: the status.
    pub status: u64,
    /// `rdi`: the badge.
    pub badge: u64,
    /// `rsi`: the raw [`MsgInfo`].
    pub info: u64,
    /// `rdx`, `r10`, `r8`, `r9`.
    pub words: [u64; 4],
}

impl Regs {
    /// The received message, decoded (an invalid `rsi` reads as an empty message).
    pub fn received(&self) -> Received {
        let info = MsgInfo::from_raw(self.info).unwrap_or_default();
        Received { badge: self.badge, msg: Msg { info, words: self.words } }
    }
}

/// [`ipc_raw`] without decoding: for a server loop that dispatches on the label alone
/// (`MsgInfo::raw_label`) and decodes only what it needs.
#[inline(always)]
pub fn ipc_regs(number: Syscall, cptr: u64, msg: &Msg, grant: u64, recv_slot: u64) -> Regs {
    let (status, badge, info, w0, w1, w2, w3): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: `syscall` preserves every register except the outputs named here and rcx,
    // r11; r12 and r13 are only read by the kernel.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as u64 => status,
            inlateout("rdi") cptr => badge,
            inlateout("rsi") msg.info.to_raw() => info,
            inlateout("rdx") msg.words[0] => w0,
            inlateout("r10") msg.words[1] => w1,
            inlateout("r8") msg.words[2] => w2,
            inlateout("r9") msg.words[3] => w3,
            in("r12") grant,
            in("r13") recv_slot,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    Regs { status, badge, info, words: [w0, w1, w2, w3] }
}

/// Typed error of a raw status.
pub fn error(e: RawError) -> Error {
    e.error().unwrap_or(Error::InvalidArgument)
}

/// Call an endpoint and wait for the reply.
pub fn call(cptr: u64, msg: &Msg) -> Result<Received, Error> {
    ipc(Syscall::Call, cptr, msg, 0, 0).map_err(error)
}

/// Send on an endpoint (blocking) or signal a notification.
pub fn send(cptr: u64, msg: &Msg) -> Result<(), Error> {
    ipc(Syscall::Send, cptr, msg, 0, 0).map(|_| ()).map_err(error)
}

/// Send only if a receiver waits.
pub fn nb_send(cptr: u64, msg: &Msg) -> Result<(), Error> {
    ipc(Syscall::NbSend, cptr, msg, 0, 0).map(|_| ()).map_err(error)
}

/// Wait for a message or signal.
pub fn recv(cptr: u64) -> Result<Received, Error> {
    ipc(Syscall::Recv, cptr, &Msg::default(), 0, 0).map_err(error)
}

/// Poll a notification (or an endpoint) without blocking.
pub fn nb_recv(cptr: u64) -> Result<Received, Error> {
    ipc(Syscall::NbRecv, cptr, &Msg::default(), 0, 0).map_err(error)
}

/// Reply to the last caller and wait on `cptr`.
pub fn reply_recv(cptr: u64, reply: &Msg) -> Result<Received, Error> {
    ipc(Syscall::ReplyRecv, cptr, reply, 0, 0).map_err(error)
}

/// Reply to the last caller and carry on.
pub fn reply(reply: &Msg) -> Result<(), Error> {
    ipc(Syscall::Reply, 0, reply, 0, 0).map(|_| ()).map_err(error)
}

/// Invoke a kernel object: `Call` with an invocation label.
pub fn invoke(cptr: u64, op: Invocation, words: &[u64]) -> Result<u64, Error> {
    ipc(Syscall::Call, cptr, &Msg::new(op as u64, words), 0, 0)
        .map(|r| r.msg.words[0])
        .map_err(error)
}

/// Retype `count` objects from the untyped in `untyped` into slots `dst..dst+count`.
pub fn retype(
    untyped: u64,
    ty: ObjectType,
    size_bits: u64,
    dst: u64,
    count: u64,
) -> Result<u64, Error> {
    invoke(untyped, Invocation::UntypedRetype, &[ty as u64, size_bits, dst, count])
}
