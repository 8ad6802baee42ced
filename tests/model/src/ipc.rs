//! IPC: endpoints (send, receive, call and the reply it is owed), Reply objects,
//! notifications, capability transfer, IPC buffers, and the messages the kernel sends
//! for a thread (faults, exits).

use crate::layout::{tcb_slot, TcbSlot};
use crate::syscall::{Done, Stop, R};
use crate::{Cap, KernelMessage, Queueing, State, ThreadState};
use protocols::error::Error;
use protocols::fault::{FaultMessage, RESUME_AT};
use protocols::ipc::{MsgInfo, IPC_BUFFER_WORDS, MSG_REGS};
use protocols::rights::Rights;

impl State {
    /// `Send`/`NbSend` (`call`: the endpoint half of `Call`).
    pub(crate) fn send(&mut self, cptr: u64, info: u64, block: bool, call: bool) -> R {
        let info = MsgInfo::from_raw(info).ok_or(Error::InvalidArgument)?;
        let (_, cap) = self.lookup(cptr)?;
        match cap {
            Cap::Endpoint { addr, badge, rights } => {
                let need = if call { Rights::CALL } else { Rights::WRITE };
                if !rights.contains(need) {
                    return Err(Error::InsufficientRights.into());
                }
                let grant = info.grant && rights.contains(Rights::GRANT);
                let cur = self.current;
                self.send_endpoint(cur, addr, badge, block, call, grant)?;
                Ok(Done::Handled)
            }
            Cap::Notification { addr, badge, rights } => {
                if call {
                    return Err(Error::WrongType.into());
                }
                if !rights.contains(Rights::WRITE) {
                    return Err(Error::InsufficientRights.into());
                }
                self.signal(addr, badge);
                Ok(Done::Value(0))
            }
            Cap::Reply { addr } if !call => {
                let caller = core::mem::take(self.replies.entry(addr).or_default());
                if caller != 0
                    && self.thread(caller).state == (ThreadState::BlockedSavedReply { reply: addr })
                {
                    self.answer(caller)?;
                }
                Ok(Done::Value(0))
            }
            _ => Err(Error::WrongType.into()),
        }
    }

    /// `Call`: on an endpoint a send that waits for the reply; otherwise an invocation.
    pub(crate) fn call(&mut self, cptr: u64, info: u64) -> R {
        let (_, cap) = self.lookup(cptr)?;
        match cap {
            Cap::Endpoint { .. } | Cap::Notification { .. } => self.send(cptr, info, true, true),
            _ => self.invoke(cptr, info),
        }
    }

    /// `from` sends on `ep`: to the first waiting receiver, else it waits (or, not
    /// blocking, the message is dropped).
    fn send_endpoint(
        &mut self,
        from: u64,
        ep: u64,
        badge: u64,
        block: bool,
        call: bool,
        grant: bool,
    ) -> R<()> {
        let e = self.endpoints.entry(ep).or_default();
        if e.kind == Queueing::Receivers && !e.queue.is_empty() {
            let receiver = e.queue.remove(0);
            if e.queue.is_empty() {
                e.kind = Queueing::Idle;
            }
            self.transfer(from, receiver, badge, grant)?;
            if call {
                // A message the kernel sent for the thread (a fault) is no syscall of its
                // own: its registers keep what they held.
                if self.thread(from).message.is_none() {
                    self.thread(from).regs.rax = 0;
                }
                self.thread(from).state = ThreadState::BlockedReply { server: receiver };
                self.thread(receiver).caller = from;
            } else {
                self.release(from, 0);
            }
            self.make_ready(receiver);
            return Ok(());
        }
        if !block {
            self.thread(from).regs.rax = 0;
            return Ok(());
        }
        self.thread(from).state = ThreadState::BlockedSend { ep, badge, call, grant };
        let e = self.endpoints.entry(ep).or_default();
        e.queue.push(from);
        e.kind = Queueing::Senders;
        Ok(())
    }

    /// `Recv`/`NbRecv`.
    pub(crate) fn recv(&mut self, cptr: u64, block: bool) -> R {
        let cur = self.current;
        let (_, cap) = self.lookup(cptr)?;
        match cap {
            Cap::Endpoint { addr, rights, .. } => {
                if !rights.contains(Rights::READ) {
                    return Err(Error::InsufficientRights.into());
                }
                self.recv_endpoint(cur, addr, block)?;
                Ok(Done::Handled)
            }
            Cap::Notification { addr, rights, .. } => {
                if !rights.contains(Rights::READ) {
                    return Err(Error::InsufficientRights.into());
                }
                let n = self.notifications.entry(addr).or_default();
                if n.signalled || !block {
                    let word = core::mem::take(&mut n.word);
                    n.signalled = false;
                    let r = &mut self.thread(cur).regs;
                    (r.rax, r.rdi) = (0, word);
                    return Ok(Done::Handled);
                }
                n.waiters.push(cur);
                self.thread(cur).state = ThreadState::BlockedNotification { ntfn: addr };
                Ok(Done::Handled)
            }
            _ => Err(Error::WrongType.into()),
        }
    }

    fn recv_endpoint(&mut self, cur: u64, ep: u64, block: bool) -> R<()> {
        let e = self.endpoints.entry(ep).or_default();
        if e.kind == Queueing::Senders && !e.queue.is_empty() {
            let sender = e.queue.remove(0);
            if e.queue.is_empty() {
                e.kind = Queueing::Idle;
            }
            let ThreadState::BlockedSend { badge, call, grant, .. } = self.thread(sender).state
            else {
                return Err(Stop::Unmodeled("a queued sender that is not sending"));
            };
            self.transfer(sender, cur, badge, grant)?;
            if call {
                self.thread(sender).state = ThreadState::BlockedReply { server: cur };
                self.thread(cur).caller = sender;
            } else {
                self.release(sender, 0);
            }
            return Ok(());
        }
        if !block {
            self.thread(cur).regs.rax = Error::WouldBlock as u64;
            return Ok(());
        }
        let e = self.endpoints.entry(ep).or_default();
        e.queue.push(cur);
        e.kind = Queueing::Receivers;
        self.thread(cur).state = ThreadState::BlockedRecv { ep };
        Ok(())
    }

    /// `Reply`: answer the caller the current thread owes a reply, if it still waits.
    pub(crate) fn reply(&mut self) -> R<()> {
        let cur = self.current;
        let caller = core::mem::take(&mut self.thread(cur).caller);
        if caller == 0 || self.thread(caller).state != (ThreadState::BlockedReply { server: cur }) {
            return Ok(());
        }
        self.answer(caller)
    }

    /// Give `caller` the current thread's reply: a message, or for a faulted thread its
    /// registers back (moved on by a `RESUME_AT` reply).
    fn answer(&mut self, caller: u64) -> R<()> {
        let cur = self.current;
        if self.thread(caller).vcpu {
            return self.answer_vcpu(caller);
        }
        if self.thread(caller).message.take().is_some() {
            let c = self.thread(cur).regs;
            let info = MsgInfo::from_raw(c.rsi).unwrap_or_default();
            if info.label == RESUME_AT && info.len >= 1 {
                self.thread(caller).regs.rip = c.rdx;
            }
        } else {
            self.transfer(cur, caller, 0, false)?;
        }
        self.make_ready(caller);
        Ok(())
    }

    /// A one-way send of `sender` is over (or what it waited on went away): its own
    /// send runs on with `status`; its last word leaves it inactive; a fault that lost
    /// its handler runs on as it was (and faults again), as does a vCPU (it has no
    /// registers for a status).
    pub(crate) fn release(&mut self, sender: u64, status: u64) {
        let t = self.thread(sender);
        match (t.message.take(), t.vcpu) {
            (Some(m), _) if !m.awaits_reply() => t.state = ThreadState::Inactive,
            (Some(_), _) | (None, true) => self.make_ready(sender),
            (None, false) => {
                self.thread(sender).regs.rax = status;
                self.make_ready(sender);
            }
        }
    }

    /// Signal: wake the first waiter with the badge, or add the badge's bits.
    pub(crate) fn signal(&mut self, ntfn: u64, badge: u64) {
        let n = self.notifications.entry(ntfn).or_default();
        if n.waiters.is_empty() {
            n.word |= badge;
            n.signalled = true;
            return;
        }
        let waiter = n.waiters.remove(0);
        let r = &mut self.thread(waiter).regs;
        (r.rax, r.rdi) = (0, badge);
        self.make_ready(waiter);
    }

    /// Tell `tcb`'s fault endpoint what became of it (it waits there like a sender), or
    /// stop it if it has none.
    pub(crate) fn report(&mut self, tcb: u64, what: FaultMessage) {
        match self.cdt.get(tcb_slot(tcb, TcbSlot::FaultEndpoint)) {
            Some(Cap::Endpoint { addr, badge, .. }) => {
                let m = KernelMessage::Thread(what);
                self.thread(tcb).message = Some(m);
                // A kernel send carries no capability, so it cannot leave the model.
                let _ = self.send_endpoint(tcb, addr, badge, true, m.awaits_reply(), false);
            }
            _ => self.thread(tcb).state = ThreadState::Inactive,
        }
    }

    /// The message from `from` arrives at `to`: label and length, the words up to the
    /// length (the rest zero), words beyond the registers through both IPC buffers (cut
    /// to the registers where either has none), the badge, and a capability if the
    /// sender asked, its capability had the grant right, and the receiver has room.
    fn transfer(&mut self, from: u64, to: u64, badge: u64, grant: bool) -> R<()> {
        let f = self.thread(from).regs;
        let pending = self.thread(from).message;
        let (mut out, words) = match pending {
            Some(m) => {
                let (label, len, words) = m.encode();
                (MsgInfo::new(label, len), words)
            }
            None => {
                let info = MsgInfo::from_raw(f.rsi).unwrap_or_default();
                (MsgInfo::new(info.label, info.len), f.words())
            }
        };
        let wants_cap = MsgInfo::from_raw(f.rsi).is_some_and(|i| i.grant);
        if grant && wants_cap && pending.is_none() {
            out.grant = self.transfer_cap(from, f.r12, to).is_ok();
        }
        if usize::from(out.len) > MSG_REGS {
            out.len = self.copy_long(from, to, out.len);
        }
        let mut w = [0u64; 4];
        for (d, s) in w.iter_mut().zip(words).take(usize::from(out.len)) {
            *d = s;
        }
        let t = &mut self.thread(to).regs;
        (t.rax, t.rdi, t.rsi) = (0, badge, out.to_raw());
        [t.rdx, t.r10, t.r8, t.r9] = w;
        Ok(())
    }

    /// The frame bound as `tcb`'s IPC buffer.
    fn buffer(&self, tcb: u64) -> Option<u64> {
        match self.cdt.get(tcb_slot(tcb, TcbSlot::IpcBuffer)) {
            Some(Cap::Frame { addr, .. }) => Some(addr),
            _ => None,
        }
    }

    fn copy_long(&mut self, from: u64, to: u64, len: u8) -> u8 {
        let (Some(src), Some(dst)) = (self.buffer(from), self.buffer(to)) else {
            return MSG_REGS as u8;
        };
        let n = (usize::from(len) - MSG_REGS).min(IPC_BUFFER_WORDS);
        let words: alloc::vec::Vec<u64> =
            self.buffers.get(&src).map(|b| b.iter().take(n).copied().collect()).unwrap_or_default();
        let d = self.buffers.entry(dst).or_insert_with(|| alloc::vec![0; IPC_BUFFER_WORDS]);
        for (i, w) in words.into_iter().enumerate() {
            if let Some(x) = d.get_mut(i) {
                *x = w;
            }
        }
        (MSG_REGS + n) as u8
    }

    /// Copy the capability in `from`'s slot `src` to `to`'s receive slot (its `r13`).
    fn transfer_cap(&mut self, from: u64, src: u64, to: u64) -> Result<(), Error> {
        let Some(Cap::CNode { addr, radix }) = self.cdt.get(tcb_slot(from, TcbSlot::CSpace)) else {
            return Err(Error::InvalidCapability);
        };
        if src >> radix != 0 {
            return Err(Error::InvalidCapability);
        }
        let src_at = crate::layout::cnode_slot(addr, src);
        let cap = self
            .cdt
            .get(src_at)
            .and_then(|c| c.derive(Rights::ALL))
            .ok_or(Error::InvalidCapability)?;
        let dst_root = self.cdt.get(tcb_slot(to, TcbSlot::CSpace));
        let r13 = self.thread(to).regs.r13;
        let dst = self.empty_slot(dst_root, r13).map_err(|_| Error::InvalidArgument)?;
        self.cdt.insert_child(src_at, dst, cap);
        Ok(())
    }
}
