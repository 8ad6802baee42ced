//! Synchronous IPC on endpoints and signals on notifications.
//!
//! A message is the sender's registers (see `protocols::ipc`), copied straight into the
//! receiver's saved registers at the rendezvous; a blocked sender keeps its message in
//! its own registers until then. `Call` leaves the caller blocked on the reply, and the
//! receiver's `caller` link is the implicit reply capability (which `reply.rs` can move
//! into a Reply object).

use crate::cap::Cap;
use crate::cnode;
use crate::endpoint::EndpointState;
use crate::kernel_message::KernelMessage;
use crate::schedulable::Kind;
use crate::state::{Done, Kernel, Platform};
use crate::store::{tcb_slot, Store, TcbSlot};
use crate::tcb::ThreadState;
use protocols::error::Error;
use protocols::fault::RESUME_AT;
use protocols::ipc::MsgInfo;
use protocols::rights::Rights;

impl<S: Store> Kernel<S> {
    /// `Send`/`NbSend`: on an endpoint, deliver or (if `block`) wait; on a notification,
    /// signal.
    pub(crate) fn send(
        &mut self,
        cptr: u64,
        info: u64,
        block: bool,
        call: bool,
    ) -> Result<Done, Error> {
        let info = MsgInfo::from_raw(info).ok_or(Error::InvalidArgument)?;
        let (_, cap) = self.lookup(cptr)?;
        match cap {
            Cap::Endpoint { addr, badge, rights } => {
                let need = if call { Rights::CALL } else { Rights::WRITE };
                let allowed =
                    rights.contains(need) || (need == Rights::WRITE && planted!(SendWithoutWrite));
                if !allowed {
                    return Err(Error::InsufficientRights);
                }
                let grant = info.grant
                    && (rights.contains(Rights::GRANT) || planted!(TransferWithoutGrant));
                self.send_endpoint(addr, badge, block, call, grant);
                Ok(Done::Handled)
            }
            Cap::Notification { addr, badge, rights } => {
                if call || !rights.contains(Rights::WRITE) {
                    return Err(if call { Error::WrongType } else { Error::InsufficientRights });
                }
                self.signal(addr, badge);
                Ok(Done::Value(0))
            }
            Cap::Reply { addr } if !call => self.reply_send(addr),
            _ => Err(Error::WrongType),
        }
    }

    fn send_endpoint(&mut self, ep: u64, badge: u64, block: bool, call: bool, grant: bool) {
        let cur = self.current;
        let e = *self.store.endpoint(ep);
        if e.state == EndpointState::Receiving {
            let mut q = e.queue;
            if let Some(receiver) = q.pop(&mut self.store) {
                let e = self.store.endpoint(ep);
                e.queue = q;
                if q.is_empty() {
                    e.state = EndpointState::Idle;
                }
                self.transfer(cur, receiver, badge, grant);
                if call {
                    // Only a thread's own call has a status: one the kernel made for it
                    // (a fault, a vCPU's exit) leaves its registers as they were.
                    if self.store.sched(cur).message.is_none() {
                        self.store.tcb(cur).context.rax = 0;
                    }
                    self.store.sched(cur).state = ThreadState::BlockedReply { server: receiver };
                    self.store.sched(receiver).caller = cur;
                } else {
                    self.release(cur, 0);
                }
                self.make_ready(receiver);
                return;
            }
        }
        if !block {
            // Nobody listens: the message is dropped, as NbSend promises.
            self.store.tcb(cur).context.rax = 0;
            return;
        }
        self.store.sched(cur).state = ThreadState::BlockedSend { ep, badge, call, grant };
        let mut q = e.queue;
        q.push(&mut self.store, cur);
        let e = self.store.endpoint(ep);
        e.queue = q;
        e.state = EndpointState::Sending;
    }

    /// Send `message` for `tcb` on `ep`: a fault as a call (it waits for the reply that
    /// resumes it), its last word as a blocking one-way send (it stops once delivered).
    pub(crate) fn send_message(&mut self, tcb: u64, ep: u64, badge: u64, message: KernelMessage) {
        self.store.sched(tcb).message = Some(message);
        self.send_as(tcb, ep, badge, message.awaits_reply());
    }

    /// A blocking send on `ep` made by the kernel for `tcb`.
    fn send_as(&mut self, tcb: u64, ep: u64, badge: u64, call: bool) {
        let saved = self.current;
        self.current = tcb;
        self.send_endpoint(ep, badge, true, call, false);
        self.current = saved;
    }

    /// A one-way send of `sender` completed, or what it waited on went away (`status`):
    /// a thread's own send runs on with `status` in `rax`; after the kernel's last word
    /// for it (an exit, a VMX failure) it stays inactive; a fault or a vCPU's exit that
    /// lost its endpoint or its server runs on as it was, and meets its fault or exit
    /// again.
    pub(crate) fn release(&mut self, sender: u64, status: u64) {
        let s = self.store.sched(sender);
        match (s.message.take(), s.kind) {
            (Some(m), _) if !m.awaits_reply() => s.state = ThreadState::Inactive,
            (None, Kind::Thread) => {
                self.store.tcb(sender).context.rax = status;
                self.make_ready(sender);
            }
            _ => self.make_ready(sender),
        }
    }

    /// `Call`: an endpoint call, or an invocation of a kernel object.
    pub(crate) fn call(
        &mut self,
        p: &mut impl Platform,
        cptr: u64,
        info: u64,
    ) -> Result<Done, Error> {
        let (_, cap) = self.lookup(cptr)?;
        match cap {
            Cap::Endpoint { .. } | Cap::Notification { .. } => self.send(cptr, info, true, true),
            _ => self.invoke(p, cptr, info),
        }
    }

    /// `Recv`/`NbRecv` on an endpoint or a notification.
    pub(crate) fn recv(&mut self, cptr: u64, block: bool) -> Result<Done, Error> {
        let cur = self.current;
        let (_, cap) = self.lookup(cptr)?;
        match cap {
            Cap::Endpoint { addr, rights, .. } => {
                if !rights.contains(Rights::READ) {
                    return Err(Error::InsufficientRights);
                }
                self.recv_endpoint(addr, block);
                Ok(Done::Handled)
            }
            Cap::Notification { addr, rights, .. } => {
                if !rights.contains(Rights::READ) {
                    return Err(Error::InsufficientRights);
                }
                let n = self.store.notification(addr);
                if n.signalled || !block {
                    let word = core::mem::take(&mut n.word);
                    n.signalled = false;
                    let c = &mut self.store.tcb(cur).context;
                    c.rax = 0;
                    c.rdi = word;
                    return Ok(Done::Handled);
                }
                let mut q = n.waiters;
                q.push(&mut self.store, cur);
                self.store.notification(addr).waiters = q;
                self.store.sched(cur).state = ThreadState::BlockedNotification { ntfn: addr };
                Ok(Done::Handled)
            }
            _ => Err(Error::WrongType),
        }
    }

    fn recv_endpoint(&mut self, ep: u64, block: bool) {
        let cur = self.current;
        let e = *self.store.endpoint(ep);
        if e.state == EndpointState::Sending {
            let mut q = e.queue;
            if let Some(sender) = q.pop(&mut self.store) {
                let e = self.store.endpoint(ep);
                e.queue = q;
                if q.is_empty() {
                    e.state = EndpointState::Idle;
                }
                let ThreadState::BlockedSend { badge, call, grant, .. } =
                    self.store.sched(sender).state
                else {
                    return;
                };
                self.transfer(sender, cur, badge, grant);
                if call {
                    self.store.sched(sender).state = ThreadState::BlockedReply { server: cur };
                    self.store.sched(cur).caller = sender;
                } else {
                    self.release(sender, 0);
                }
                return;
            }
        }
        if !block {
            let c = &mut self.store.tcb(cur).context;
            c.rax = Error::WouldBlock as u64;
            return;
        }
        let mut q = e.queue;
        q.push(&mut self.store, cur);
        let e = self.store.endpoint(ep);
        e.queue = q;
        e.state = EndpointState::Receiving;
        self.store.sched(cur).state = ThreadState::BlockedRecv { ep };
    }

    /// Reply to the current thread's caller, if it still waits. A vCPU's reply is a
    /// VMCS-write batch; a refused one is the replier's error.
    pub(crate) fn reply(&mut self) -> Result<(), Error> {
        let cur = self.current;
        let caller = core::mem::take(&mut self.store.sched(cur).caller);
        if caller == 0
            || self.store.sched(caller).state != (ThreadState::BlockedReply { server: cur })
        {
            return Ok(());
        }
        self.answer(caller)
    }

    /// Give `caller`, which waits for a reply from the current thread (directly or through
    /// a Reply object), the current thread's message and make it runnable.
    pub(crate) fn answer(&mut self, caller: u64) -> Result<(), Error> {
        let cur = self.current;
        let kernel_sent = self.store.sched(caller).message.take().is_some();
        if self.store.sched(caller).kind == Kind::VCpu {
            return self.vcpu_reply(caller).map_err(|(e, code, field)| {
                self.refusal = Some([code, field, 0]);
                e
            });
        }
        if kernel_sent {
            // A faulted thread resumes with its own registers; the handler may move it on.
            let c = self.store.tcb(cur).context;
            let info = MsgInfo::from_raw(c.rsi).unwrap_or_default();
            if info.label == RESUME_AT && info.len >= 1 {
                self.store.tcb(caller).context.rip = c.rdx;
                self.store.tcb(caller).context.sanitize();
            }
        } else {
            self.transfer(cur, caller, 0, false);
        }
        self.make_ready(caller);
        Ok(())
    }

    /// Signal a notification: wake a waiter with the badge, or accumulate it.
    pub(crate) fn signal(&mut self, ntfn: u64, badge: u64) {
        let mut q = self.store.notification(ntfn).waiters;
        match q.pop(&mut self.store) {
            Some(waiter) => {
                self.store.notification(ntfn).waiters = q;
                let c = &mut self.store.tcb(waiter).context;
                c.rax = 0;
                c.rdi = badge;
                self.make_ready(waiter);
            }
            None => {
                let n = self.store.notification(ntfn);
                n.word |= badge;
                n.signalled = true;
            }
        }
    }

    /// Copy a message from `from`'s registers (or the kernel's message for it) to the
    /// thread `to`'s.
    fn transfer(&mut self, from: u64, to: u64, badge: u64, grant: bool) {
        let (out, words) = match self.store.sched(from).message {
            Some(m) => m.encode(),
            None => self.thread_message(from, to, grant),
        };
        let n = usize::from(out.len);
        let mut w = [0u64; 4];
        for (dst, src) in w.iter_mut().zip(words).take(n) {
            *dst = src;
        }
        let t = &mut self.store.tcb(to).context;
        t.rax = 0;
        t.rdi = badge;
        t.rsi = out.to_raw();
        [t.rdx, t.r10, t.r8, t.r9] = w;
    }

    /// The message the thread `from` sends from its own registers, with the capability it
    /// transfers (if `grant` allows) and the words beyond the registers moved to `to`.
    fn thread_message(&mut self, from: u64, to: u64, grant: bool) -> (MsgInfo, [u64; 4]) {
        let f = self.store.tcb(from).context;
        let info = MsgInfo::from_raw(f.rsi).unwrap_or_default();
        let mut out = MsgInfo::new(info.label, info.len);
        if grant && info.grant {
            out.grant = self.transfer_cap(from, f.r12, to).is_ok();
        }
        if out.is_long() {
            out.len = self.copy_long_message(from, to, out.len);
        }
        (out, [f.rdx, f.r10, f.r8, f.r9])
    }

    /// Copy the capability in `from`'s slot `src` into `to`'s slot (its `r13`).
    fn transfer_cap(&mut self, from: u64, src: u64, to: u64) -> Result<(), Error> {
        let src_root = self.store.slot(tcb_slot(from, TcbSlot::CSpace)).cap;
        let dst_root = self.store.slot(tcb_slot(to, TcbSlot::CSpace)).cap;
        let Cap::CNode { addr, radix } = src_root else { return Err(Error::InvalidCapability) };
        if src >> radix != 0 {
            return Err(Error::InvalidCapability);
        }
        let src_at = crate::store::cnode_slot(addr, src);
        let cap = self
            .store
            .slot(src_at)
            .cap
            .derive(Rights::ALL)
            .map_err(|_| Error::InvalidCapability)?;
        let dst_index = self.store.tcb(to).context.r13;
        let dst_at = self.empty_slot(dst_root, dst_index)?;
        cnode::insert_child(&mut self.store, src_at, dst_at, cap)
            .map_err(|_| Error::InvalidArgument)
    }
}
