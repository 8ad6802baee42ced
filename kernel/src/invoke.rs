//! Invocations of kernel objects (`Call` on a non-endpoint capability), each split into
//! decoding (every check, a specific error each) and acting (cannot fail on user input),
//! plus deletion and revocation with the finalisation of objects whose last capability
//! goes.

use crate::cap::{Cap, Mapping};
use crate::cnode;
use crate::paging::{FrameSize, NO_EXECUTE, USER, WRITABLE};
use crate::state::{Done, Kernel, Platform};
use crate::store::{object_bits, tcb_slot, Store, TcbSlot};
use crate::tcb::ThreadState;
use crate::untyped;
use crate::vspace::Stale;
use protocols::error::Error;
use protocols::ipc::MsgInfo;
use protocols::object::{map, Invocation, ObjectType};
use protocols::rights::Rights;

impl<S: Store> Kernel<S> {
    /// Decode and perform the invocation the current thread made on slot `cptr`. An
    /// invocation is the only way a capability is deleted, so IRQ lines it released are
    /// masked here.
    pub(crate) fn invoke(
        &mut self,
        p: &mut impl Platform,
        cptr: u64,
        info: u64,
    ) -> Result<Done, Error> {
        let result = self.invoke_object(p, cptr, info);
        self.mask_released_irqs(p);
        result
    }

    fn invoke_object(
        &mut self,
        p: &mut impl Platform,
        cptr: u64,
        info: u64,
    ) -> Result<Done, Error> {
        let info = MsgInfo::from_raw(info).ok_or(Error::InvalidArgument)?;
        let label = Invocation::from_raw(info.label).ok_or(Error::InvalidArgument)?;
        let (at, cap) = self.lookup(cptr)?;
        if let (Invocation::VCpuKick, Cap::VCpu { addr }) = (label, cap) {
            // Never a stall: the vCPU goes on where it runs, and leaves its guest at once.
            return self.vcpu_kick(addr);
        }
        if let Cap::Tcb { addr } | Cap::VCpu { addr } = cap {
            // A thread or vCPU running on another CPU is stopped there first: its
            // registers are in memory only then, and a guest runs without the lock.
            self.stop_elsewhere(addr, true);
        }
        let c = self.store.tcb(self.current).context;
        let w = [c.rdx, c.r10, c.r8, c.r9];
        let need = |n: u8| if info.len >= n { Ok(()) } else { Err(Error::InvalidArgument) };
        match (label, cap) {
            (Invocation::UntypedRetype, Cap::Untyped { .. }) => {
                need(4)?;
                let ty = ObjectType::from_raw(w[0]).ok_or(Error::InvalidArgument)?;
                let size_bits = u8::try_from(w[1]).map_err(|_| Error::InvalidArgument)?;
                self.retype(at, ty, size_bits, w[2], w[3])
            }
            (Invocation::CNodeCopy, Cap::CNode { .. }) => {
                need(3)?;
                let rights = Rights::from_bits(w[2] as u8)
                    .filter(|_| w[2] <= 0xff)
                    .ok_or(Error::InvalidArgument)?;
                self.copy(cap, w[0], w[1], |c| c.derive(rights))
            }
            (Invocation::CNodeMint, Cap::CNode { .. }) => {
                need(4)?;
                let rights = Rights::from_bits(w[2] as u8)
                    .filter(|_| w[2] <= 0xff)
                    .ok_or(Error::InvalidArgument)?;
                let badge = w[3];
                self.copy(cap, w[0], w[1], |c| c.mint(rights, badge))
            }
            (Invocation::CNodeMove, Cap::CNode { .. }) => {
                need(2)?;
                let (src, _) = self.lookup(w[0])?;
                let dst = self.empty_slot(cap, w[1])?;
                cnode::move_slot(&mut self.store, src, dst).map_err(|_| Error::InvalidArgument)?;
                Ok(Done::Value(0))
            }
            (Invocation::CNodeDelete, Cap::CNode { .. }) => {
                need(1)?;
                let slot = self.slot_in(cap, w[0])?;
                Ok(self.delete(slot).map_or(Done::Restart, |()| Done::Value(0)))
            }
            (Invocation::CNodeRevoke, Cap::CNode { .. }) => {
                need(1)?;
                let slot = self.slot_in(cap, w[0])?;
                Ok(self.revoke(slot).map_or(Done::Restart, |()| Done::Value(0)))
            }
            (Invocation::TcbConfigure, Cap::Tcb { addr }) => {
                need(3)?;
                self.tcb_configure(addr, w[0], w[1], w[2])
            }
            (Invocation::TcbWriteRegisters, Cap::Tcb { addr }) => {
                need(3)?;
                let ctx = &mut self.store.tcb(addr).context;
                ctx.rip = w[0];
                ctx.rsp = w[1];
                ctx.rdi = w[2];
                ctx.sanitize();
                Ok(Done::Value(0))
            }
            (Invocation::TcbResume, Cap::Tcb { addr }) => {
                if self.store.sched(addr).state == ThreadState::Inactive {
                    self.make_ready(addr);
                }
                Ok(Done::Value(0))
            }
            (Invocation::ReplySave, Cap::Reply { addr }) => self.reply_save(addr),
            (Invocation::TcbSetIpcBuffer, Cap::Tcb { addr }) => {
                need(1)?;
                self.tcb_set_ipc_buffer(addr, w[0])
            }
            (Invocation::TcbSuspend, Cap::Tcb { addr }) => {
                self.suspend(addr);
                Ok(Done::Value(0))
            }
            (Invocation::TcbSetAffinity, Cap::Tcb { addr } | Cap::VCpu { addr }) => {
                need(1)?;
                let cpu = usize::try_from(w[0])
                    .ok()
                    .filter(|c| *c < self.cpus)
                    .ok_or(Error::InvalidArgument)?;
                self.set_affinity(addr, cpu);
                Ok(Done::Value(0))
            }
            (Invocation::TcbSetPriority, Cap::Tcb { addr }) => {
                need(1)?;
                let own = self.store.sched(self.current).priority;
                let prio =
                    u8::try_from(w[0]).ok().filter(|p| *p <= own).ok_or(Error::NotPermitted)?;
                let queued = self.sched.unlink(&mut self.store, addr);
                self.store.sched(addr).priority = prio;
                if queued {
                    self.enqueue(addr);
                }
                Ok(Done::Value(0))
            }
            (Invocation::FrameMap, Cap::Frame { .. }) => {
                need(3)?;
                self.frame_map(at, cap, w[0], w[1], w[2])
            }
            (Invocation::FrameUnmap, Cap::Frame { addr, size, rights, mapped }) => {
                if let Some(m) = mapped {
                    self.unmap_frame(m, (addr, size));
                    self.store.slot(at).cap = Cap::Frame { addr, size, rights, mapped: None };
                }
                Ok(Done::Value(0))
            }
            (Invocation::FrameAddress, Cap::Frame { addr, .. }) => Ok(Done::Value(addr)),
            (Invocation::FrameMapGuest, Cap::Frame { .. }) => {
                need(3)?;
                self.frame_map_guest(at, cap, w[0], w[1], w[2])
            }
            (Invocation::VCpuConfigure, Cap::VCpu { addr }) => {
                need(4)?;
                self.vcpu_configure(addr, w)
            }
            (Invocation::VCpuStart, Cap::VCpu { addr }) => {
                need(4)?;
                self.vcpu_start(addr, w)
            }
            (Invocation::VCpuPassPorts, Cap::VCpu { addr }) => {
                need(1)?;
                self.vcpu_pass_ports(addr, w[0])
            }
            (Invocation::VCpuSwitchMsr, Cap::VCpu { addr }) => {
                need(2)?;
                self.vcpu_switch_msr(addr, w[0], w[1])
            }
            (Invocation::IoPortIn, Cap::IoPorts { first, last }) => {
                need(2)?;
                self.io_port_in(p, (first, last), w[0], w[1])
            }
            (Invocation::IoPortOut, Cap::IoPorts { first, last }) => {
                need(3)?;
                self.io_port_out(p, (first, last), [w[0], w[1], w[2]])
            }
            (Invocation::IoPortsCarve, Cap::IoPorts { first, last }) => {
                need(3)?;
                self.io_ports_carve(at, (first, last), [w[0], w[1], w[2]])
            }
            (Invocation::IrqControlGet, Cap::IrqControl) => {
                need(2)?;
                self.irq_control_get(at, w[0], w[1])
            }
            (Invocation::IrqHandlerSetNotification, Cap::IrqHandler { irq }) => {
                need(1)?;
                self.irq_set_notification(irq, w[0])
            }
            (Invocation::IrqHandlerAck, Cap::IrqHandler { irq }) => self.irq_ack(p, irq),
            _ => Err(Error::WrongType),
        }
    }

    /// Slot `index` of CNode `cnode`, which must hold a capability.
    fn slot_in(&mut self, cnode: Cap, index: u64) -> Result<u64, Error> {
        let Cap::CNode { addr, radix } = cnode else { return Err(Error::WrongType) };
        if index >> radix != 0 {
            return Err(Error::InvalidArgument);
        }
        let at = crate::store::cnode_slot(addr, index);
        if self.store.slot(at).cap == Cap::Null {
            return Err(Error::InvalidCapability);
        }
        Ok(at)
    }

    /// Copy from the caller's CSpace slot `src` into slot `dst` of `cnode`.
    fn copy(
        &mut self,
        cnode: Cap,
        src: u64,
        dst: u64,
        derive: impl FnOnce(&Cap) -> Result<Cap, crate::cap::DeriveError>,
    ) -> Result<Done, Error> {
        let (src, cap) = self.lookup(src)?;
        let dst = self.empty_slot(cnode, dst)?;
        let cap = derive(&cap).map_err(|_| Error::InvalidArgument)?;
        cnode::insert_child(&mut self.store, src, dst, cap).map_err(|_| Error::InvalidArgument)?;
        Ok(Done::Value(0))
    }

    fn retype(
        &mut self,
        ut_slot: u64,
        ty: ObjectType,
        size_bits: u8,
        first: u64,
        count: u64,
    ) -> Result<Done, Error> {
        let Cap::Untyped { base, size_bits: ut_bits, free } = self.store.slot(ut_slot).cap else {
            return Err(Error::WrongType);
        };
        let bits = object_bits(ty, size_bits).ok_or(Error::InvalidArgument)?;
        if count == 0 || count > 256 {
            return Err(Error::InvalidArgument);
        }
        let root = self.store.slot(tcb_slot(self.current, TcbSlot::CSpace)).cap;
        let mut dsts = [0u64; 256];
        for (i, d) in dsts.iter_mut().enumerate().take(count as usize) {
            *d =
                self.empty_slot(root, first.checked_add(i as u64).ok_or(Error::InvalidArgument)?)?;
        }
        let spaces = matches!(ty, ObjectType::VSpace | ObjectType::GuestSpace);
        if spaces && (self.vspaces.room() as u64) < count {
            return Err(Error::OutOfMemory);
        }
        if ty == ObjectType::VCpu && self.vmx.is_none() {
            return Err(Error::NotSupported);
        }
        let (start, new_free) =
            untyped::place(base, ut_bits, free, bits, count).map_err(|e| match e {
                untyped::Error::BadCount => Error::InvalidArgument,
                untyped::Error::OutOfMemory => Error::OutOfMemory,
            })?;
        // Everything is checked: from here on nothing can fail.
        self.store.slot(ut_slot).cap = Cap::Untyped { base, size_bits: ut_bits, free: new_free };
        for (i, dst) in dsts.iter().take(count as usize).enumerate() {
            let addr = start + ((i as u64) << bits);
            self.store.create(ty, addr, bits);
            if matches!(ty, ObjectType::Tcb | ObjectType::VCpu) {
                // Made on its creator's CPU.
                self.store.sched(addr).cpu = self.cpu as u8;
            }
            let cap = match ty {
                ObjectType::Untyped => Cap::Untyped { base: addr, size_bits: bits, free: 0 },
                ObjectType::CNode => Cap::CNode { addr, radix: size_bits },
                ObjectType::Tcb => Cap::Tcb { addr },
                ObjectType::Endpoint => Cap::Endpoint { addr, badge: 0, rights: Rights::ALL },
                ObjectType::Notification => {
                    Cap::Notification { addr, badge: 0, rights: Rights::ALL }
                }
                ObjectType::Frame | ObjectType::LargeFrame => {
                    let size =
                        if ty == ObjectType::Frame { FrameSize::Small } else { FrameSize::Large };
                    Cap::Frame { addr, size, rights: Rights::ALL, mapped: None }
                }
                ObjectType::VSpace => {
                    for (j, e) in self.kernel_half.iter().enumerate() {
                        crate::paging::set_entry(&mut self.store, addr, 256 + j, *e);
                    }
                    let pages = (1u64 << bits) / 4096 - 1;
                    // Room for `count` spaces was checked above, so this cannot fail.
                    let _ = self.vspaces.add(addr, addr + 4096, pages);
                    Cap::VSpace { addr, size_bits: bits }
                }
                ObjectType::GuestSpace => {
                    let pages = (1u64 << bits) / 4096 - 1;
                    let _ = self.vspaces.add_guest(addr, addr + 4096, pages);
                    Cap::GuestSpace { addr, size_bits: bits }
                }
                ObjectType::VCpu => {
                    self.init_vcpu_pages(addr);
                    Cap::VCpu { addr }
                }
                ObjectType::Reply => Cap::Reply { addr },
            };
            let _ = cnode::insert_child(&mut self.store, ut_slot, *dst, cap);
        }
        Ok(Done::Value(start))
    }

    fn tcb_configure(
        &mut self,
        tcb: u64,
        cspace: u64,
        vspace: u64,
        fault_ep: u64,
    ) -> Result<Done, Error> {
        let (cs_at, cs) = self.lookup(cspace)?;
        let (vs_at, vs) = self.lookup(vspace)?;
        if !matches!(cs, Cap::CNode { .. }) || !matches!(vs, Cap::VSpace { .. }) {
            return Err(Error::WrongType);
        }
        let ep = if fault_ep == u64::MAX {
            None
        } else {
            let (ep_at, ep) = self.lookup(fault_ep)?;
            match ep {
                Cap::Endpoint { rights, .. } if rights.contains(Rights::CALL) => Some((ep_at, ep)),
                Cap::Endpoint { .. } => return Err(Error::InsufficientRights),
                _ => return Err(Error::WrongType),
            }
        };
        if self.store.sched(tcb).state != ThreadState::Inactive {
            return Err(Error::NotPermitted);
        }
        // The TCB holds its own copies, so revoking the originals also unbinds it. The old
        // CSpace may be the last capability to a deep tree: the call is then restarted,
        // and makes the same checks again before it goes on.
        for which in [TcbSlot::CSpace, TcbSlot::VSpace, TcbSlot::FaultEndpoint] {
            if self.delete(tcb_slot(tcb, which)).is_err() {
                return Ok(Done::Restart);
            }
        }
        let _ = cnode::insert_child(&mut self.store, cs_at, tcb_slot(tcb, TcbSlot::CSpace), cs);
        let _ = cnode::insert_child(&mut self.store, vs_at, tcb_slot(tcb, TcbSlot::VSpace), vs);
        if let Some((at, ep)) = ep {
            let _ =
                cnode::insert_child(&mut self.store, at, tcb_slot(tcb, TcbSlot::FaultEndpoint), ep);
        }
        Ok(Done::Value(0))
    }

    /// Bind the frame in slot `frame` (it needs the write right: the kernel writes
    /// received words there) as the thread's IPC buffer, or unbind it (`u64::MAX`). The
    /// TCB keeps a copy derived from that capability, so revoking it unbinds the buffer.
    fn tcb_set_ipc_buffer(&mut self, tcb: u64, frame: u64) -> Result<Done, Error> {
        let new = if frame == u64::MAX {
            None
        } else {
            let (at, cap) = self.lookup(frame)?;
            match cap {
                Cap::Frame { rights, .. } if rights.contains(Rights::WRITE) => {
                    Some((at, cap.derive(Rights::ALL).map_err(|_| Error::InvalidCapability)?))
                }
                Cap::Frame { .. } => return Err(Error::InsufficientRights),
                _ => return Err(Error::WrongType),
            }
        };
        self.rebind(tcb_slot(tcb, TcbSlot::IpcBuffer), new)?;
        Ok(Done::Value(0))
    }

    /// `FrameMap`: the frame in slot `at` (capability `cap`) at `vaddr` in a VSpace, as
    /// one page of the frame's size.
    fn frame_map(
        &mut self,
        at: u64,
        cap: Cap,
        vspace: u64,
        vaddr: u64,
        want: u64,
    ) -> Result<Done, Error> {
        let Cap::Frame { addr: frame, size, rights, mapped: None } = cap else {
            return Err(Error::InvalidArgument);
        };
        let (_, vs) = self.lookup(vspace)?;
        let Cap::VSpace { addr: root, .. } = vs else { return Err(Error::WrongType) };
        if want & !(map::WRITE | map::EXECUTE) != 0
            || !vaddr.is_multiple_of(size.bytes())
            || vaddr
                .checked_add(size.bytes())
                .is_none_or(|end| end > protocols::layout::USER_MAP_END)
            || vaddr < protocols::layout::USER_MIN
        {
            return Err(Error::InvalidArgument);
        }
        let write = want & map::WRITE != 0;
        let exec = want & map::EXECUTE != 0;
        if write && exec {
            return Err(Error::InvalidArgument);
        }
        if (write && !rights.contains(Rights::WRITE))
            || (exec && !rights.contains(Rights::EXECUTE))
            || !rights.contains(Rights::READ)
        {
            return Err(Error::InsufficientRights);
        }
        let mut flags = USER;
        if write {
            flags |= WRITABLE;
        }
        if !exec && self.nx {
            flags |= NO_EXECUTE;
        }
        self.vspaces.map(&mut self.store, root, vaddr, (frame, size), flags).map_err(
            |e| match e {
                crate::vspace::MapError::Paging(crate::paging::Error::OutOfMemory) => {
                    Error::OutOfMemory
                }
                _ => Error::InvalidArgument,
            },
        )?;
        let mapped = Some(Mapping { vspace: root, vaddr });
        self.store.slot(at).cap = Cap::Frame { addr: frame, size, rights, mapped };
        Ok(Done::Value(0))
    }

    /// Remove a frame's mapping and note which translation caches the hardware layer
    /// must flush before user code runs again.
    pub(crate) fn unmap_frame(&mut self, m: Mapping, frame: (u64, FrameSize)) {
        match self.vspaces.unmap(&mut self.store, m.vspace, m.vaddr, frame) {
            Stale::Tlb => self.tlb_stale = true,
            Stale::Ept => self.ept_stale = true,
            Stale::Nothing => {}
        }
    }

    /// Move a thread or vCPU to `cpu` (one that ran on another CPU was stopped there
    /// before any invocation on it); a VCpu's VMCS, which may still be active on its old
    /// CPU, is cleared there.
    fn set_affinity(&mut self, t: u64, cpu: usize) {
        let old = usize::from(self.store.sched(t).cpu);
        if old == cpu {
            return;
        }
        if self.store.sched(t).kind == crate::schedulable::Kind::VCpu {
            if old == self.cpu {
                self.vmcs_released = true;
            } else {
                (self.stall)(old);
            }
        }
        let queued = self.sched.unlink(&mut self.store, t);
        self.store.sched(t).cpu = cpu as u8;
        // The caller moving itself leaves at the next `schedule`.
        if queued || (t != self.current && self.store.sched(t).state == ThreadState::Ready) {
            self.enqueue(t);
        }
    }

    /// Stop a thread: out of every queue, no longer runnable.
    pub(crate) fn suspend(&mut self, tcb: u64) {
        self.stop_elsewhere(tcb, false);
        match self.store.sched(tcb).state {
            ThreadState::Ready => {
                self.sched.unlink(&mut self.store, tcb);
            }
            ThreadState::BlockedSend { ep, .. } | ThreadState::BlockedRecv { ep } => {
                let mut q = self.store.endpoint(ep).queue;
                q.remove(&mut self.store, tcb);
                let e = self.store.endpoint(ep);
                e.queue = q;
                if q.is_empty() {
                    e.state = crate::endpoint::EndpointState::Idle;
                }
            }
            ThreadState::BlockedNotification { ntfn } => {
                let mut q = self.store.notification(ntfn).waiters;
                q.remove(&mut self.store, tcb);
                self.store.notification(ntfn).waiters = q;
            }
            ThreadState::BlockedReply { server } => {
                if server != 0 && self.store.sched(server).caller == tcb {
                    self.store.sched(server).caller = 0;
                }
            }
            ThreadState::BlockedSavedReply { reply } => {
                if self.store.reply(reply).caller == tcb {
                    self.store.reply(reply).caller = 0;
                }
            }
            ThreadState::Inactive => {}
        }
        // Whoever waits for this thread's reply learns that it is gone.
        let caller = core::mem::take(&mut self.store.sched(tcb).caller);
        if caller != 0 {
            self.release(caller, Error::ObjectDeleted as u64);
        }
        // What the kernel was to send for it (a fault, its last word) goes with it.
        self.store.sched(tcb).message = None;
        self.store.sched(tcb).state = ThreadState::Inactive;
    }

    /// Replace the capability the kernel holds in `slot` (a TCB's own slot, an IRQ
    /// binding) with `new`: a copy of the capability in slot `from`, recorded as derived
    /// from it so that revoking the original also unbinds it. `None` only empties it.
    /// These slots only hold frames and notifications, whose deletion always completes.
    pub(crate) fn rebind(&mut self, slot: u64, new: Option<(u64, Cap)>) -> Result<(), Error> {
        self.delete_one(slot);
        if let Some((from, cap)) = new {
            cnode::insert_child(&mut self.store, from, slot, cap)
                .map_err(|_| Error::InvalidArgument)?;
        }
        Ok(())
    }
}
