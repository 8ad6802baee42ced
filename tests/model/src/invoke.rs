//! Invocations of kernel objects (`Call` on a capability that is no endpoint or
//! notification), and deletion: the last capability to an object finalises it.

use crate::layout::{cnode_slot, object_bits, tcb_slot, TcbSlot, TCB_SLOTS, TCB_SLOTS_OFFSET};
use crate::syscall::{Done, Stop, R};
use crate::{Cap, Endpoint, Notification, Queueing, State, Thread, ThreadState};
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use protocols::error::Error;
use protocols::io::{IRQ_CASCADE, IRQ_LINES, IRQ_TIMER};
use protocols::ipc::MsgInfo;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;

fn rights(w: u64) -> R<Rights> {
    u8::try_from(w).ok().and_then(Rights::from_bits).ok_or(Stop::Error(Error::InvalidArgument))
}

impl State {
    /// Decode and run an invocation of the capability in slot `cptr`.
    pub(crate) fn invoke(&mut self, cptr: u64, info: u64) -> R {
        let info = MsgInfo::from_raw(info).ok_or(Error::InvalidArgument)?;
        let label = Invocation::from_raw(info.label).ok_or(Error::InvalidArgument)?;
        let (at, cap) = self.lookup(cptr)?;
        if let Cap::Tcb { addr } | Cap::VCpu { addr } = cap {
            self.stop_elsewhere(addr, true);
        }
        let w = self.thread(self.current).regs.words();
        let need = |n: u8| if info.len >= n { Ok(()) } else { Err(Error::InvalidArgument) };
        use Invocation as I;
        match (label, cap) {
            (I::UntypedRetype, Cap::Untyped { .. }) => {
                need(4)?;
                let ty = ObjectType::from_raw(w[0]).ok_or(Error::InvalidArgument)?;
                let bits = u8::try_from(w[1]).map_err(|_| Error::InvalidArgument)?;
                self.retype(at, ty, bits, w[2], w[3])
            }
            (I::CNodeCopy, Cap::CNode { .. }) => {
                need(3)?;
                let r = rights(w[2])?;
                self.copy(cap, w[0], w[1], |c| c.derive(r))
            }
            (I::CNodeMint, Cap::CNode { .. }) => {
                need(4)?;
                let r = rights(w[2])?;
                self.copy(cap, w[0], w[1], |c| c.mint(r, w[3]))
            }
            (I::CNodeMove, Cap::CNode { .. }) => {
                need(2)?;
                let (src, _) = self.lookup(w[0])?;
                let dst = self.empty_slot(Some(cap), w[1])?;
                self.cdt.move_slot(src, dst);
                Ok(Done::Value(0))
            }
            (I::CNodeDelete | I::CNodeRevoke, Cap::CNode { addr, radix }) => {
                need(1)?;
                if w[0] >> radix != 0 {
                    return Err(Error::InvalidArgument.into());
                }
                let slot = cnode_slot(addr, w[0]);
                if self.cdt.get(slot).is_none() {
                    return Err(Error::InvalidCapability.into());
                }
                if label == I::CNodeDelete {
                    self.delete(slot)?;
                } else {
                    self.revoke(slot)?;
                }
                Ok(Done::Value(0))
            }
            (I::TcbConfigure, Cap::Tcb { addr }) => {
                need(3)?;
                self.configure(addr, w[0], w[1], w[2])
            }
            (I::TcbWriteRegisters, Cap::Tcb { addr }) => {
                need(3)?;
                let r = &mut self.thread(addr).regs;
                (r.rip, r.rdi) = (w[0], w[2]);
                Ok(Done::Value(0))
            }
            (I::TcbResume, Cap::Tcb { addr }) => {
                if self.thread(addr).state == ThreadState::Inactive {
                    self.make_ready(addr);
                }
                Ok(Done::Value(0))
            }
            (I::TcbSuspend, Cap::Tcb { addr }) => {
                self.suspend(addr);
                Ok(Done::Value(0))
            }
            (I::TcbSetAffinity, Cap::Tcb { addr } | Cap::VCpu { addr }) => {
                need(1)?;
                let cpu = u8::try_from(w[0])
                    .ok()
                    .filter(|c| *c < self.cpus)
                    .ok_or(Error::InvalidArgument)?;
                if self.thread(addr).cpu != cpu {
                    let queued = self.unlink(addr);
                    self.thread(addr).cpu = cpu;
                    let ready = self.thread(addr).state == ThreadState::Ready;
                    // The caller moving itself leaves at the next scheduling decision.
                    if queued || (addr != self.current && ready) {
                        self.enqueue(addr);
                    }
                }
                Ok(Done::Value(0))
            }
            (I::TcbSetPriority, Cap::Tcb { addr }) => {
                need(1)?;
                let own = self.thread(self.current).priority;
                let prio =
                    u8::try_from(w[0]).ok().filter(|p| *p <= own).ok_or(Error::NotPermitted)?;
                let queued = self.unlink(addr);
                self.thread(addr).priority = prio;
                if queued {
                    self.enqueue(addr);
                }
                Ok(Done::Value(0))
            }
            (I::TcbSetIpcBuffer, Cap::Tcb { addr }) => {
                need(1)?;
                let new = if w[0] == u64::MAX {
                    None
                } else {
                    let (from, c) = self.lookup(w[0])?;
                    match c {
                        Cap::Frame { rights, .. } if rights.contains(Rights::WRITE) => {
                            Some((from, c.derive(Rights::ALL).ok_or(Error::InvalidCapability)?))
                        }
                        Cap::Frame { .. } => return Err(Error::InsufficientRights.into()),
                        _ => return Err(Error::WrongType.into()),
                    }
                };
                self.rebind(tcb_slot(addr, TcbSlot::IpcBuffer), new)?;
                Ok(Done::Value(0))
            }
            (I::ReplySave, Cap::Reply { addr }) => {
                let cur = self.current;
                let caller = self.thread(cur).caller;
                if caller == 0
                    || self.thread(caller).state != (ThreadState::BlockedReply { server: cur })
                {
                    return Err(Error::WouldBlock.into());
                }
                if self.replies.get(&addr).copied().unwrap_or(0) != 0 {
                    return Err(Error::InUse.into());
                }
                self.thread(cur).caller = 0;
                self.thread(caller).state = ThreadState::BlockedSavedReply { reply: addr };
                self.replies.insert(addr, caller);
                Ok(Done::Value(0))
            }
            (I::FrameAddress, Cap::Frame { addr, .. }) => Ok(Done::Value(addr)),
            (I::FrameUnmap, Cap::Frame { mapped: None, .. }) => Ok(Done::Value(0)),
            (I::IrqControlGet, Cap::IrqControl) => {
                need(2)?;
                let irq = u8::try_from(w[0])
                    .ok()
                    .filter(|i| *i < IRQ_LINES)
                    .ok_or(Error::InvalidArgument)?;
                if irq == IRQ_TIMER || irq == IRQ_CASCADE {
                    return Err(Error::NotPermitted.into());
                }
                if self.irqs.issued & (1 << irq) != 0 {
                    return Err(Error::InUse.into());
                }
                let dst = self.empty_slot(self.root(), w[1])?;
                self.cdt.insert_child(at, dst, Cap::IrqHandler { irq });
                self.irqs.issued |= 1 << irq;
                Ok(Done::Value(0))
            }
            (I::IrqHandlerSetNotification, Cap::IrqHandler { irq }) => {
                need(1)?;
                let (from, c) = self.lookup(w[0])?;
                let Cap::Notification { rights, .. } = c else {
                    return Err(Error::WrongType.into());
                };
                if !rights.contains(Rights::WRITE) {
                    return Err(Error::InsufficientRights.into());
                }
                self.rebind(cnode_slot(self.irqs.node, u64::from(irq)), Some((from, c)))?;
                Ok(Done::Value(0))
            }
            (I::IrqHandlerAck, Cap::IrqHandler { irq }) => {
                self.irqs.unmasked |= 1 << irq;
                Ok(Done::Value(0))
            }
            (
                I::FrameMap
                | I::FrameUnmap
                | I::FrameMapGuest
                | I::VCpuConfigure
                | I::VCpuStart
                | I::VCpuPassPorts
                | I::VCpuSwitchMsr
                | I::IoPortIn
                | I::IoPortOut
                | I::IoPortsCarve,
                Cap::Frame { .. } | Cap::VCpu { .. } | Cap::IoPorts { .. },
            ) => Err(Stop::Unmodeled("mappings, vCPUs and ports")),
            _ => Err(Error::WrongType.into()),
        }
    }

    /// Copy from the caller's slot `src` into `cnode`'s empty slot `dst`.
    fn copy(&mut self, cnode: Cap, src: u64, dst: u64, f: impl FnOnce(&Cap) -> Option<Cap>) -> R {
        let (src, cap) = self.lookup(src)?;
        let dst = self.empty_slot(Some(cnode), dst)?;
        let cap = f(&cap).ok_or(Error::InvalidArgument)?;
        self.cdt.insert_child(src, dst, cap);
        Ok(Done::Value(0))
    }

    fn retype(&mut self, ut: u64, ty: ObjectType, size_bits: u8, first: u64, count: u64) -> R {
        let Some(Cap::Untyped { base, bits: ut_bits, free }) = self.cdt.get(ut) else {
            return Err(Error::WrongType.into());
        };
        let bits = object_bits(ty, size_bits).ok_or(Error::InvalidArgument)?;
        if count == 0 || count > 256 {
            return Err(Error::InvalidArgument.into());
        }
        let root = self.root();
        let mut dsts = Vec::new();
        for i in 0..count {
            let index = first.checked_add(i).ok_or(Error::InvalidArgument)?;
            dsts.push(self.empty_slot(root, index)?);
        }
        let spaces = matches!(ty, ObjectType::VSpace | ObjectType::GuestSpace);
        if spaces && (self.space_room as u64) < count {
            return Err(Error::OutOfMemory.into());
        }
        if ty == ObjectType::VCpu && !self.vmx {
            return Err(Error::NotSupported.into());
        }
        // Objects go at the watermark rounded up to their size, one after another.
        let size = 1u128 << bits;
        let start = u128::from(free).div_ceil(size) * size;
        let end = start + u128::from(count) * size;
        if bits > ut_bits || end > 1u128 << ut_bits {
            return Err(Error::OutOfMemory.into());
        }
        self.cdt.replace(ut, Cap::Untyped { base, bits: ut_bits, free: end as u64 });
        if spaces {
            self.space_room -= count as usize;
        }
        let start = base + start as u64;
        for (i, dst) in dsts.into_iter().enumerate() {
            let addr = start + ((i as u64) << bits);
            let cap = self.create(ty, addr, bits, size_bits);
            self.cdt.insert_child(ut, dst, cap);
        }
        Ok(Done::Value(start))
    }

    /// A new object at `addr`: whatever was there before is gone.
    fn create(&mut self, ty: ObjectType, addr: u64, bits: u8, size_bits: u8) -> Cap {
        let end = addr + (1u64 << bits);
        let stale: Vec<u64> =
            self.cdt.iter().map(|(s, _)| s).filter(|s| (addr..end).contains(s)).collect();
        for s in stale {
            self.cdt.remove(s);
        }
        self.threads.remove(&addr);
        self.endpoints.remove(&addr);
        self.notifications.remove(&addr);
        self.replies.remove(&addr);
        self.buffers.retain(|f, _| !(addr..end).contains(f));
        let rw = Rights::ALL;
        match ty {
            ObjectType::Untyped => Cap::Untyped { base: addr, bits, free: 0 },
            ObjectType::CNode => Cap::CNode { addr, radix: size_bits },
            ObjectType::Tcb => {
                self.threads.insert(addr, Thread { cpu: self.cpu, ..Thread::default() });
                Cap::Tcb { addr }
            }
            ObjectType::Endpoint => Cap::Endpoint { addr, badge: 0, rights: rw },
            ObjectType::Notification => Cap::Notification { addr, badge: 0, rights: rw },
            ObjectType::Frame | ObjectType::LargeFrame => {
                self.buffers.insert(addr, alloc::vec![0; protocols::ipc::IPC_BUFFER_WORDS]);
                Cap::Frame { addr, large: ty == ObjectType::LargeFrame, rights: rw, mapped: None }
            }
            ObjectType::VSpace => Cap::VSpace { addr, bits },
            ObjectType::GuestSpace => Cap::GuestSpace { addr, bits },
            ObjectType::VCpu => {
                self.threads
                    .insert(addr, Thread { vcpu: true, cpu: self.cpu, ..Thread::default() });
                Cap::VCpu { addr }
            }
            ObjectType::Reply => Cap::Reply { addr },
        }
    }

    fn configure(&mut self, tcb: u64, cspace: u64, vspace: u64, fault: u64) -> R {
        let (cs_at, cs) = self.lookup(cspace)?;
        let (vs_at, vs) = self.lookup(vspace)?;
        if !matches!(cs, Cap::CNode { .. }) || !matches!(vs, Cap::VSpace { .. }) {
            return Err(Error::WrongType.into());
        }
        let ep = if fault == u64::MAX {
            None
        } else {
            match self.lookup(fault)? {
                (at, c @ Cap::Endpoint { rights, .. }) if rights.contains(Rights::CALL) => {
                    Some((at, c))
                }
                (_, Cap::Endpoint { .. }) => return Err(Error::InsufficientRights.into()),
                _ => return Err(Error::WrongType.into()),
            }
        };
        if self.thread(tcb).state != ThreadState::Inactive {
            return Err(Error::NotPermitted.into());
        }
        for which in [TcbSlot::CSpace, TcbSlot::VSpace, TcbSlot::FaultEndpoint] {
            self.delete(tcb_slot(tcb, which))?;
        }
        self.cdt.insert_child(cs_at, tcb_slot(tcb, TcbSlot::CSpace), cs);
        self.cdt.insert_child(vs_at, tcb_slot(tcb, TcbSlot::VSpace), vs);
        if let Some((at, c)) = ep {
            self.cdt.insert_child(at, tcb_slot(tcb, TcbSlot::FaultEndpoint), c);
        }
        Ok(Done::Value(0))
    }

    /// Replace the kernel's copy in `slot` with a copy of the capability in `from`.
    fn rebind(&mut self, slot: u64, new: Option<(u64, Cap)>) -> R<()> {
        self.delete(slot)?;
        if let Some((from, cap)) = new {
            self.cdt.insert_child(from, slot, cap);
        }
        Ok(())
    }

    /// Stop a thread: out of every queue; a caller waiting for its reply is released.
    pub(crate) fn suspend(&mut self, tcb: u64) {
        self.stop_elsewhere(tcb, false);
        match self.thread(tcb).state {
            ThreadState::Ready => {
                self.unlink(tcb);
            }
            ThreadState::BlockedSend { ep, .. } | ThreadState::BlockedRecv { ep } => {
                let e = self.endpoints.entry(ep).or_default();
                e.queue.retain(|t| *t != tcb);
                if e.queue.is_empty() {
                    e.kind = Queueing::Idle;
                }
            }
            ThreadState::BlockedNotification { ntfn } => {
                self.notifications.entry(ntfn).or_default().waiters.retain(|t| *t != tcb);
            }
            ThreadState::BlockedReply { server } => {
                if server != 0 && self.thread(server).caller == tcb {
                    self.thread(server).caller = 0;
                }
            }
            ThreadState::BlockedSavedReply { reply } => {
                if self.replies.get(&reply) == Some(&tcb) {
                    self.replies.insert(reply, 0);
                }
            }
            ThreadState::Inactive => {}
        }
        let caller = core::mem::take(&mut self.thread(tcb).caller);
        if caller != 0 {
            self.release(caller, Error::ObjectDeleted as u64);
        }
        let t = self.thread(tcb);
        t.message = None;
        t.state = ThreadState::Inactive;
    }

    /// Delete every capability derived from the one in `slot`, newest first; a revoked
    /// untyped region is empty again.
    fn revoke(&mut self, slot: u64) -> R<()> {
        while let Some(d) = self.cdt.first_child(slot) {
            self.delete(d)?;
        }
        if let Some(Cap::Untyped { base, bits, .. }) = self.cdt.get(slot) {
            self.cdt.replace(slot, Cap::Untyped { base, bits, free: 0 });
        }
        Ok(())
    }

    /// Delete the capability in `slot`.
    pub(crate) fn delete(&mut self, slot: u64) -> R<()> {
        // The kernel may split a long deletion over several entries; the fuzz target
        // compares only deletions that finish in one.
        self.delete_in(slot, &mut BTreeSet::new());
        Ok(())
    }

    /// Delete `slot`; `dying` holds the slots whose objects are being emptied (their
    /// capabilities no longer count as other references).
    fn delete_in(&mut self, slot: u64, dying: &mut BTreeSet<u64>) {
        let Some(cap) = self.cdt.get(slot) else { return };
        if dying.contains(&slot) {
            return;
        }
        let last = self.cdt.is_final(slot, dying);
        let own: Option<(u64, u64)> = match cap {
            Cap::CNode { addr, radix } => Some((addr, 1 << radix)),
            Cap::Tcb { addr } => Some((addr + TCB_SLOTS_OFFSET, TCB_SLOTS)),
            Cap::VCpu { addr } => {
                Some((addr + crate::layout::VCPU_SLOTS_OFFSET, crate::layout::VCPU_SLOTS))
            }
            _ => None,
        };
        if let (true, Some((first, count))) = (last, own) {
            if let Cap::Tcb { addr } | Cap::VCpu { addr } = cap {
                self.suspend(addr);
            }
            dying.insert(slot);
            for i in 0..count {
                self.delete_in(first + (i << crate::layout::SLOT_BITS), dying);
            }
            dying.remove(&slot);
            self.cdt.remove(slot);
            return;
        }
        self.cdt.remove(slot);
        if !last {
            return;
        }
        match cap {
            Cap::Endpoint { addr, .. } => {
                let e = self.endpoints.remove(&addr).unwrap_or_default();
                for t in e.queue {
                    self.release(t, Error::ObjectDeleted as u64);
                }
                self.endpoints.insert(addr, Endpoint::default());
            }
            Cap::Notification { addr, .. } => {
                let n = self.notifications.remove(&addr).unwrap_or_default();
                for t in n.waiters {
                    self.thread(t).regs.rax = Error::ObjectDeleted as u64;
                    self.make_ready(t);
                }
                self.notifications.insert(addr, Notification::default());
            }
            Cap::VSpace { .. } | Cap::GuestSpace { .. } => self.space_room += 1,
            Cap::IrqHandler { irq } => {
                self.irqs.issued &= !(1 << irq);
                self.irqs.unmasked &= !(1 << irq);
                self.delete_in(cnode_slot(self.irqs.node, u64::from(irq)), dying);
            }
            Cap::Reply { addr } => {
                let caller = self.replies.insert(addr, 0).unwrap_or(0);
                if caller != 0
                    && self.thread(caller).state == (ThreadState::BlockedSavedReply { reply: addr })
                {
                    self.release(caller, Error::ObjectDeleted as u64);
                }
            }
            _ => {}
        }
    }
}
