//! The IPC fastpath: `Call` to a waiting receiver and `ReplyRecv` to a waiting caller,
//! when nothing unusual is involved. Each precondition below is one early return to the
//! slow path, which handles every case (and gives the same result for these).
//!
//! The saving comes from touching only the registers a short message uses and switching
//! straight to the partner without going through the run queues.
//!
//! VM exits take the same road in both directions: an exit goes straight to a VMM waiting
//! on the exit endpoint ([`Kernel::fast_vcpu_exit`]), and a VMM's `ReplyRecv` whose batch
//! passes validation and does not stop the vCPU switches straight back to it.

use crate::cap::Cap;
use crate::cnode::SLOT_BITS;
use crate::endpoint::EndpointState;
use crate::schedulable::Kind;
use crate::state::Kernel;
use crate::store::{tcb_slot, Store, TcbSlot};
use crate::tcb::ThreadState;
use protocols::ipc::MsgInfo;
use protocols::object::vm;
use protocols::rights::Rights;
use protocols::syscall::Syscall;

/// What the fastpath did with a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPath {
    /// Nothing: the slow path handles the syscall.
    Declined,
    /// Done; the current thread (maybe another) returns to ring 3.
    Thread,
    /// Done; the current thread is a vCPU whose reply was applied: enter the guest.
    Guest,
}

impl FastPath {
    /// Whether the fastpath handled the syscall.
    pub fn taken(self) -> bool {
        self != Self::Declined
    }
}

impl<S: Store> Kernel<S> {
    /// The endpoint capability in the current thread's slot `cptr`, if it has `right`.
    fn fast_endpoint(&mut self, cptr: u64, right: Rights) -> Option<(u64, u64)> {
        let Cap::CNode { addr, radix } =
            self.store.slot(tcb_slot(self.current, TcbSlot::CSpace)).cap
        else {
            return None;
        };
        if cptr >> radix != 0 {
            return None;
        }
        match self.store.slot(addr + (cptr << SLOT_BITS)).cap {
            Cap::Endpoint { addr, badge, rights } if rights.contains(right) => Some((addr, badge)),
            _ => None,
        }
    }

    /// Copy the short message in `from`'s registers to `to`, which resumes from its
    /// syscall with success.
    #[inline(always)]
    fn fast_copy(&mut self, from: u64, to: u64, badge: u64, info: MsgInfo) {
        let f = &self.store.tcb(from).context;
        let (mut w0, mut w1, mut w2, mut w3) = (f.rdx, f.r10, f.r8, f.r9);
        // Words beyond the message length are not part of it: do not leak them.
        if info.len < 4 {
            w3 = 0;
            if info.len < 3 {
                w2 = 0;
                if info.len < 2 {
                    w1 = 0;
                    if info.len < 1 {
                        w0 = 0;
                    }
                }
            }
        }
        let t = &mut self.store.tcb(to).context;
        t.rax = 0;
        t.rdi = badge;
        t.rsi = MsgInfo::new(info.label, info.len).to_raw();
        (t.rdx, t.r10, t.r8, t.r9) = (w0, w1, w2, w3);
    }

    /// Whether `tcb` may take the CPU now: no ready thread outranks it or has its turn
    /// before it (an equal, which the slow path would run first), and it can run.
    #[inline(always)]
    fn fast_can_switch_to(&mut self, tcb: u64) -> bool {
        let t = *self.store.sched(tcb);
        usize::from(t.cpu) == self.cpu
            && (!self.sched.on(self.cpu).any_at_or_above(t.priority)
                || planted!(FastpathIgnoresPriority))
            && matches!(self.store.slot(tcb_slot(tcb, TcbSlot::VSpace)).cap, Cap::VSpace { .. })
    }

    /// Try the fastpath for the current thread's syscall (the current thread may change).
    pub fn fastpath(&mut self) -> FastPath {
        let cur = self.current;
        let c = &self.store.tcb(cur).context;
        let (number, cptr, raw_info) = (c.rax, c.rdi, c.rsi);
        let Some(info) = MsgInfo::short_from_raw(raw_info) else { return FastPath::Declined };
        if number == Syscall::Call as u64 {
            self.fast_call(cur, cptr, info)
        } else if number == Syscall::ReplyRecv as u64 {
            self.fast_reply_recv(cur, cptr, info)
        } else {
            FastPath::Declined
        }
    }

    fn fast_call(&mut self, cur: u64, cptr: u64, info: MsgInfo) -> FastPath {
        let Some((ep, badge)) = self.fast_endpoint(cptr, Rights::CALL) else {
            return FastPath::Declined;
        };
        if self.fast_deliver_call(cur, ep, badge, info) {
            FastPath::Thread
        } else {
            FastPath::Declined
        }
    }

    /// The current vCPU `v` exits with the register words `words`: if its VMM waits on
    /// the exit endpoint `ep` and may run now, hand it the exit (written straight into
    /// its registers) and switch to it. `false`: the slow path sends it.
    pub(crate) fn fast_vcpu_exit(&mut self, v: u64, ep: u64, badge: u64, words: [u64; 4]) -> bool {
        let Some(receiver) = self.fast_take_receiver(ep) else { return false };
        let t = &mut self.store.tcb(receiver).context;
        t.rax = 0;
        t.rdi = badge;
        t.rsi = MsgInfo::new(vm::EXIT_LABEL, 4).to_raw();
        [t.rdx, t.r10, t.r8, t.r9] = words;
        self.fast_call_delivered(v, receiver);
        true
    }

    /// `cur` calls on `ep` with the short message `info`: deliver it to the receiver at
    /// the head of the queue and switch to it, if it waits in `Recv` and may run now.
    #[inline(always)]
    fn fast_deliver_call(&mut self, cur: u64, ep: u64, badge: u64, info: MsgInfo) -> bool {
        let Some(receiver) = self.fast_take_receiver(ep) else { return false };
        self.fast_copy(cur, receiver, badge, info);
        // The caller's status is success from here on, as the slow path leaves it: a
        // caller suspended before the reply resumes with 0, not its syscall number.
        self.store.tcb(cur).context.rax = 0;
        self.fast_call_delivered(cur, receiver);
        true
    }

    /// The receiver at the head of `ep`'s queue, taken off it, if it waits in `Recv` and
    /// may run now.
    #[inline(always)]
    fn fast_take_receiver(&mut self, ep: u64) -> Option<u64> {
        let e = *self.store.endpoint(ep);
        if e.state != EndpointState::Receiving {
            return None;
        }
        let receiver = e.queue.head;
        if self.store.sched(receiver).state != (ThreadState::BlockedRecv { ep })
            || !self.fast_can_switch_to(receiver)
        {
            return None;
        }
        let mut q = e.queue;
        q.pop(&mut self.store);
        let e = self.store.endpoint(ep);
        e.queue = q;
        if q.is_empty() {
            e.state = EndpointState::Idle;
        }
        Some(receiver)
    }

    /// `cur`'s call (a thread's, or a vCPU's exit) reached `receiver`, which runs now;
    /// `cur` waits for the reply.
    #[inline(always)]
    fn fast_call_delivered(&mut self, cur: u64, receiver: u64) {
        self.store.sched(cur).state = ThreadState::BlockedReply { server: receiver };
        let r = self.store.sched(receiver);
        r.caller = cur;
        r.state = ThreadState::Ready;
        self.current = receiver;
    }

    fn fast_reply_recv(&mut self, cur: u64, cptr: u64, info: MsgInfo) -> FastPath {
        let caller = self.store.sched(cur).caller;
        if caller == 0 {
            return FastPath::Declined;
        }
        let c = self.store.sched(caller);
        if c.state != (ThreadState::BlockedReply { server: cur }) || c.message.is_some() {
            return FastPath::Declined;
        }
        if c.kind == Kind::VCpu {
            return self.fast_reply_vcpu(cur, caller, cptr);
        }
        let Some((ep, _)) = self.fast_endpoint(cptr, Rights::READ) else {
            return FastPath::Declined;
        };
        let e = *self.store.endpoint(ep);
        if e.state == EndpointState::Sending || !self.fast_can_switch_to(caller) {
            return FastPath::Declined;
        }
        self.fast_copy(cur, caller, 0, info);
        self.fast_wait(cur, caller, ep, e.queue);
        FastPath::Thread
    }

    /// `ReplyRecv` to a vCPU: a batch that validates and does not stop the vCPU is
    /// applied and the vCPU runs at once. A refused batch, or one that stops the vCPU,
    /// takes the slow path (which validates again: validation changes nothing). Out of
    /// line, so thread-to-thread replies do not pay for it.
    #[inline(never)]
    fn fast_reply_vcpu(&mut self, cur: u64, vcpu: u64, cptr: u64) -> FastPath {
        let Some((ep, _)) = self.fast_endpoint(cptr, Rights::READ) else {
            return FastPath::Declined;
        };
        let e = *self.store.endpoint(ep);
        let v = *self.store.sched(vcpu);
        if e.state == EndpointState::Sending
            || usize::from(v.cpu) != self.cpu
            || self.sched.on(self.cpu).any_at_or_above(v.priority)
            || !self.vcpu_runnable(vcpu)
        {
            return FastPath::Declined;
        }
        if !self.take_running_reply(vcpu) {
            return FastPath::Declined;
        }
        self.fast_wait(cur, vcpu, ep, e.queue);
        FastPath::Guest
    }

    /// The replier `cur` waits on `ep` (whose queue was `q`) and `caller` runs.
    #[inline(always)]
    fn fast_wait(&mut self, cur: u64, caller: u64, ep: u64, mut q: crate::queue::ThreadQueue) {
        self.store.sched(caller).state = ThreadState::Ready;
        q.push(&mut self.store, cur);
        let e = self.store.endpoint(ep);
        e.queue = q;
        e.state = EndpointState::Receiving;
        let t = self.store.sched(cur);
        t.caller = 0;
        t.state = ThreadState::BlockedRecv { ep };
        self.current = caller;
    }
}

#[cfg(test)]
mod tests {
    use crate::cap::Cap;
    use crate::store::Store;
    use crate::tcb::ThreadState;
    use crate::testbed::{slot, Testbed, ROOT_TCB};
    use protocols::error::Error;
    use protocols::ipc::MsgInfo;
    use protocols::object::{Invocation, ObjectType};
    use protocols::rights::Rights;
    use protocols::syscall::Syscall;

    /// The current thread makes the syscall in `regs` (rax, rdi, rsi, rdx, r10, r8, r9):
    /// through the fastpath first when `fast`, as the kernel entry does, else through the
    /// slow path alone. Whether the fastpath took it.
    fn enter(t: &mut Testbed, fast: bool, regs: [u64; 7]) -> bool {
        let c = &mut t.k.store.tcb(t.k.current).context;
        [c.rax, c.rdi, c.rsi, c.rdx, c.r10, c.r8, c.r9] = regs;
        if fast && t.k.fastpath().taken() {
            return true;
        }
        t.k.syscall(&mut t.out);
        false
    }

    /// A thread in slot `at` of the root CNode at `priority`, faults to `fault_ep`,
    /// resumed when `resume`.
    fn thread(t: &mut Testbed, at: u64, priority: u64, fault_ep: u64, resume: bool) -> u64 {
        t.retype(ObjectType::Tcb, 0, at, 1);
        t.invoke(at, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, fault_ep]);
        assert_eq!(t.invoke(at, Invocation::TcbSetPriority, &[priority]), 0, "above the root's");
        if resume {
            t.invoke(at, Invocation::TcbResume, &[]);
        }
        let Cap::Tcb { addr } = t.cap(at) else { panic!("no TCB in slot {at}") };
        addr
    }

    fn endpoint(t: &mut Testbed, at: u64) -> u64 {
        let Cap::Endpoint { addr, .. } = t.cap(at) else { panic!("no endpoint in slot {at}") };
        addr
    }

    /// Root and a server on one endpoint; the server waits in `Recv`.
    fn setup() -> (Testbed, u64) {
        let mut t = Testbed::new();
        let call = |t: &mut Testbed, cptr: u64, label: Invocation, w: [u64; 4], n: u8| {
            let info = MsgInfo::new(label as u64, n).to_raw();
            t.sys(Syscall::Call as u64, [cptr, info, w[0], w[1], w[2], w[3]]);
        };
        call(
            &mut t,
            slot::UNTYPED,
            Invocation::UntypedRetype,
            [ObjectType::Endpoint as u64, 0, 20, 1],
            4,
        );
        call(&mut t, slot::CNODE, Invocation::CNodeMint, [20, 21, 31, 0x77], 4);
        call(
            &mut t,
            slot::UNTYPED,
            Invocation::UntypedRetype,
            [ObjectType::Tcb as u64, 0, 30, 1],
            4,
        );
        call(&mut t, 30, Invocation::TcbConfigure, [slot::CNODE, slot::VSPACE, u64::MAX, 0], 3);
        call(&mut t, 30, Invocation::TcbSetPriority, [100, 0, 0, 0], 1);
        call(&mut t, 30, Invocation::TcbResume, [0; 4], 0);
        t.sys(Syscall::Yield as u64, [0; 6]);
        let server = t.k.current;
        t.sys(Syscall::Recv as u64, [20, 0, 0, 0, 0, 0]);
        assert_eq!(t.k.current, ROOT_TCB);
        (t, server)
    }

    /// Run a call and a reply, with the fastpath first (as the kernel entry does) or
    /// the slow path only; return every register of both threads afterwards.
    fn round_trip(fast: bool) -> (bool, Vec<[u64; 7]>, Vec<ThreadState>) {
        let (mut t, server) = setup();
        let mut took_fast = true;
        let mut step = |t: &mut Testbed, regs: [u64; 7]| {
            let c = &mut t.k.store.tcb(t.k.current).context;
            [c.rax, c.rdi, c.rsi, c.rdx, c.r10, c.r8, c.r9] = regs;
            if !(fast && t.k.fastpath().taken()) {
                took_fast = false;
                t.k.syscall(&mut t.out);
            }
        };
        step(&mut t, [Syscall::Call as u64, 21, MsgInfo::new(5, 2).to_raw(), 10, 20, 30, 40]);
        assert_eq!(t.k.current, server);
        step(&mut t, [Syscall::ReplyRecv as u64, 20, MsgInfo::new(6, 1).to_raw(), 99, 98, 97, 96]);
        assert_eq!(t.k.current, ROOT_TCB);
        let regs = vec![t.regs(ROOT_TCB), t.regs(server)];
        let states = vec![t.k.store.sched(ROOT_TCB).state, t.k.store.sched(server).state];
        (took_fast, regs, states)
    }

    #[test]
    fn fastpath_matches_the_slow_path() {
        let (took_fast, fast_regs, fast_states) = round_trip(true);
        assert!(took_fast, "both steps qualify for the fastpath");
        let (_, slow_regs, slow_states) = round_trip(false);
        assert_eq!(fast_states, slow_states);
        // The server's rax..r9 after its ReplyRecv blocked are whatever it passed in;
        // compare the caller fully and the server's received message.
        assert_eq!(fast_regs[0], slow_regs[0]);
        assert_eq!(fast_regs[0][3], 99);
        assert_eq!(fast_regs[0][4..], [0, 0, 0], "only the reply's one word arrives");
    }

    #[test]
    fn a_caller_suspended_before_the_reply_resumes_with_the_same_status_either_way() {
        for fast in [true, false] {
            let (mut t, server) = setup();
            let c = &mut t.k.store.tcb(ROOT_TCB).context;
            (c.rax, c.rdi, c.rsi) = (Syscall::Call as u64, 21, MsgInfo::new(5, 0).to_raw());
            if !(fast && t.k.fastpath().taken()) {
                t.k.syscall(&mut t.out);
            }
            assert_eq!(t.k.current, server);
            t.invoke(slot::TCB, Invocation::TcbSuspend, &[]);
            t.invoke(slot::TCB, Invocation::TcbResume, &[]);
            assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::Ready);
            assert_eq!(t.k.store.tcb(ROOT_TCB).context.rax, 0, "fastpath: {fast}");
        }
    }

    #[test]
    fn a_ready_thread_of_the_partners_priority_keeps_its_turn() {
        let mut next = Vec::new();
        for fast in [true, false] {
            let (mut t, _) = setup();
            t.retype(ObjectType::Tcb, 0, 31, 1);
            t.invoke(31, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, u64::MAX]);
            t.invoke(31, Invocation::TcbSetPriority, &[100]);
            t.invoke(31, Invocation::TcbResume, &[]);
            let c = &mut t.k.store.tcb(ROOT_TCB).context;
            (c.rax, c.rdi, c.rsi) = (Syscall::Call as u64, 21, MsgInfo::new(5, 0).to_raw());
            if !(fast && t.k.fastpath().taken()) {
                t.k.syscall(&mut t.out);
            }
            next.push(t.k.current);
        }
        assert_eq!(next[0], next[1], "the fastpath ran another thread than the slow path");
    }

    #[test]
    fn unusual_cases_fall_back() {
        let (mut t, _) = setup();
        // A grant, an oversized message, a missing right, a non-endpoint: all refused.
        for (slot_, info) in [
            (21, MsgInfo { label: 1, len: 1, grant: true }.to_raw()),
            (21, 0x5),
            (slot::TCB, MsgInfo::new(1, 0).to_raw()),
            (99, MsgInfo::new(1, 0).to_raw()),
        ] {
            let c = &mut t.k.store.tcb(ROOT_TCB).context;
            (c.rax, c.rdi, c.rsi) = (Syscall::Call as u64, slot_, info);
            assert!(!t.k.fastpath().taken());
            assert_eq!(t.k.current, ROOT_TCB);
        }
        // ReplyRecv with nobody to reply to.
        let c = &mut t.k.store.tcb(ROOT_TCB).context;
        (c.rax, c.rdi, c.rsi) = (Syscall::ReplyRecv as u64, 20, 0);
        assert!(!t.k.fastpath().taken());
    }

    #[test]
    fn a_four_word_call_arrives_whole() {
        let (mut t, server) = setup();
        let call = [Syscall::Call as u64, 21, MsgInfo::new(5, 4).to_raw(), 10, 20, 30, 40];
        assert!(enter(&mut t, true, call));
        assert_eq!(t.k.current, server);
        assert_eq!(t.regs(server)[3..], [10, 20, 30, 40]);
    }

    #[test]
    fn a_call_without_the_call_right_is_refused_either_way() {
        for fast in [true, false] {
            let (mut t, server) = setup();
            // A copy of the endpoint that may send and receive, but not call.
            let rw = u64::from(Rights::READ.union(Rights::WRITE).bits());
            assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeCopy, &[20, 22, rw]), 0);
            let call = [Syscall::Call as u64, 22, MsgInfo::new(5, 0).to_raw(), 0, 0, 0, 0];
            assert!(!enter(&mut t, fast, call), "the fastpath took a call without CALL");
            assert_eq!(t.k.current, ROOT_TCB);
            assert_eq!(t.regs(ROOT_TCB)[0], Error::InsufficientRights as u64);
            let ep = endpoint(&mut t, 20);
            assert_eq!(t.k.store.sched(server).state, ThreadState::BlockedRecv { ep });
        }
    }

    /// A faulted thread resumes with its own registers: a reply to it is not a message
    /// to copy, so the fastpath leaves it to the slow path.
    #[test]
    fn a_reply_to_a_faulted_thread_leaves_its_registers_alone() {
        let (mut t, server) = setup();
        let worker = thread(&mut t, 32, 90, 21, true);
        t.invoke(slot::TCB, Invocation::TcbSetPriority, &[50]);
        assert_eq!(t.k.current, worker);
        let c = &mut t.k.store.tcb(worker).context;
        (c.rax, c.rdx, c.rip) = (55, 66, 0x40_1234);
        t.k.fault(14, 6, 0);
        assert_eq!(t.k.current, server);
        let reply = [Syscall::ReplyRecv as u64, 20, MsgInfo::new(0x33, 2).to_raw(), 7, 8, 0, 0];
        assert!(!enter(&mut t, true, reply), "the fastpath copied a reply into a faulted thread");
        assert_eq!(t.k.current, worker);
        let c = t.k.store.tcb(worker).context;
        assert_eq!((c.rax, c.rdx, c.rip), (55, 66, 0x40_1234));
    }

    /// `ReplyRecv` on an endpoint where a sender waits receives that sender, which the
    /// fastpath (made for an empty queue) leaves to the slow path.
    #[test]
    fn a_reply_recv_with_a_sender_waiting_receives_it() {
        let (mut t, server) = setup();
        let call = [Syscall::Call as u64, 21, MsgInfo::new(5, 0).to_raw(), 0, 0, 0, 0];
        assert!(enter(&mut t, true, call));
        assert_eq!(t.k.current, server);
        // The server starts a sender of its own priority and lets it run: it sends on the
        // endpoint nobody is receiving on.
        let sender = thread(&mut t, 33, 100, u64::MAX, true);
        t.sys(Syscall::Yield as u64, [0; 6]);
        assert_eq!(t.k.current, sender);
        let send = [Syscall::Send as u64, 21, MsgInfo::new(9, 1).to_raw(), 77, 0, 0, 0];
        enter(&mut t, false, send);
        assert_eq!(t.k.current, server);
        let reply = [Syscall::ReplyRecv as u64, 20, MsgInfo::new(6, 0).to_raw(), 0, 0, 0, 0];
        assert!(!enter(&mut t, true, reply), "the fastpath queued a receiver behind a sender");
        let [_, badge, info, word, ..] = t.regs(server);
        assert_eq!((badge, MsgInfo::from_raw(info).map(|i| i.label), word), (0x77, Some(9), 77));
        assert_eq!(t.k.store.sched(ROOT_TCB).state, ThreadState::Ready);
    }

    /// A reply to a caller that a ready thread outranks runs that thread next, fastpath
    /// or not.
    #[test]
    fn a_reply_does_not_switch_past_a_ready_higher_priority_thread() {
        let mut next = Vec::new();
        for fast in [true, false] {
            let (mut t, server) = setup();
            let caller = thread(&mut t, 32, 60, u64::MAX, true);
            let higher = thread(&mut t, 33, 80, u64::MAX, false);
            assert_eq!(t.retype(ObjectType::Endpoint, 0, 23, 1), 0);
            // The root task waits elsewhere; the caller runs and calls the server.
            t.sys(Syscall::Recv as u64, [23, 0, 0, 0, 0, 0]);
            assert_eq!(t.k.current, caller);
            enter(
                &mut t,
                fast,
                [Syscall::Call as u64, 21, MsgInfo::new(5, 0).to_raw(), 0, 0, 0, 0],
            );
            assert_eq!(t.k.current, server);
            // While serving, the server makes a thread above the caller ready.
            t.invoke(33, Invocation::TcbResume, &[]);
            let reply = [Syscall::ReplyRecv as u64, 20, MsgInfo::new(6, 0).to_raw(), 0, 0, 0, 0];
            enter(&mut t, fast, reply);
            assert_eq!(t.k.current, higher, "fastpath: {fast}");
            next.push(t.k.store.sched(caller).state);
        }
        assert_eq!(next, [ThreadState::Ready, ThreadState::Ready]);
    }
}
