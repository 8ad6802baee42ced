//! VCpu objects: a schedulable context that runs a guest instead of ring-3 code.
//!
//! A VCpu is an object of its own (32 KiB): its scheduling part (`Schedulable`, where a
//! TCB has it, so it sits in run queues and endpoint queues like a thread), its own slots
//! (`store::VCpuSlot`: guest space, message frame, exit endpoint, then port pass-through),
//! its VMCS, the kernel's per-vCPU data and the I/O and MSR bitmaps. It has no ring-3
//! registers: its exit is a `Call` on the exit endpoint, delivered by the fastpath or as
//! a kernel message, and the VMM's reply carries a VMCS-write batch in the message frame,
//! which is validated in full before anything is applied.

use crate::cap::{Cap, Mapping};
use crate::cnode;
use crate::kernel_message::KernelMessage;
use crate::state::{Done, Kernel, Next};
use crate::store::{vcpu_slot, Store, VCpuSlot};
use crate::tcb::{FpuArea, ThreadState};
use crate::vcpu_passthrough::HostMsrs;
use crate::vmx::caps::VmxCaps;
use crate::vmx::ept::EptVpidCaps;
use crate::vmx::ept::{self, Access, Ept};
use crate::vmx::validator::{
    decode_reply_into, InjectedPageFault, Policy, ValidatedBatch, VcpuState,
};
use crate::vmx::vmcs_setup::{initial_vmcs, GuestEntry, GuestMode, VcpuPages};
use crate::vmx::vmcs_setup::{HostState, InitialVmcs};
use crate::vspace::MapError;
use protocols::error::Error;
use protocols::object::{map, vcpu_mode};
use protocols::rights::Rights;
use protocols::vcpu_page;
use protocols::vmcs::ctl::{exit, pin, proc};
use protocols::vmcs::Field;
use protocols::vmexit::{
    BatchError, EventInjection, EventType, ExitMessage, ExitReason, Gprs, TransferMask,
};
use protocols::vmx_failure::VmxFailure;

/// log2 of a VCpu object's size.
pub const VCPU_BITS: u8 = 15;
/// Offset of the VMCS region.
pub const VMCS_OFFSET: u64 = 0x1000;
/// Offset of [`VcpuData`].
pub const DATA_OFFSET: u64 = 0x2000;
/// Offset of I/O bitmap A (ports 0-0x7fff); B follows.
pub const IO_BITMAP_OFFSET: u64 = 0x4000;
/// Offset of the MSR bitmaps. The last page holds the MSR areas
/// (`vcpu_passthrough::GUEST_MSR_AREA_OFFSET`).
pub const MSR_BITMAP_OFFSET: u64 = 0x6000;

/// What VT-x support the kernel found at boot.
#[derive(Clone, Copy, Debug)]
pub struct VmxInfo {
    /// The capability MSRs.
    pub caps: VmxCaps,
    /// The kernel's control policy.
    pub policy: Policy,
    /// EPT/VPID capabilities.
    pub ept: EptVpidCaps,
    /// Host state every VMCS gets.
    pub host: HostState,
    /// Physical-address width.
    pub maxphyaddr: u8,
    /// The host's values of the MSRs a VCpu may switch (`VCpuSwitchMsr`).
    pub host_msrs: HostMsrs,
    /// TSC ticks per second (0: unknown), measured at boot once the tick is calibrated.
    pub tsc_hz: u64,
    /// The VMX-preemption-timer value that spans one scheduling tick: the backstop a
    /// guest runs under while its VMM's timer is off (0: none, for want of the timer or
    /// a known TSC rate). See [`VcpuData::backstop`].
    pub backstop: u32,
}

impl VmxInfo {
    /// This VT-x support once the TSC is measured at `tsc_hz` and the scheduling tick
    /// runs at `tick_hz`: the TSC rate, and the backstop timer value that spans a tick
    /// (rounded up, at least 1, at most the field's 32 bits).
    pub fn with_clock(self, tsc_hz: u64, tick_hz: u32) -> Self {
        let backstop = if self.caps.pinbased.allows(pin::PREEMPTION_TIMER) && tick_hz != 0 {
            let tick = tsc_hz.div_ceil(u64::from(tick_hz));
            let units = tick.div_ceil(1 << self.caps.preemption_timer_shift());
            u32::try_from(units).unwrap_or(u32::MAX)
        } else {
            0
        };
        Self { tsc_hz, backstop, ..self }
    }

    /// What `VCpuConfigure` tells a VMM about time: the TSC rate, and whether and how
    /// fast the VMX-preemption timer and TSC offsetting can be used (the validator lets a
    /// VMM turn both on wherever the CPU has them).
    pub fn clock(&self) -> vcpu_page::Clock {
        let mut flags = 0;
        if self.caps.pinbased.allows(pin::PREEMPTION_TIMER) {
            flags |= vcpu_page::Clock::PREEMPTION_TIMER;
        }
        if self.caps.procbased.allows(proc::USE_TSC_OFFSETTING) {
            flags |= vcpu_page::Clock::TSC_OFFSETTING;
        }
        vcpu_page::Clock {
            tsc_hz: self.tsc_hz,
            preemption_timer_shift: self.caps.preemption_timer_shift(),
            flags,
            reserved: [0; 6],
        }
    }
}

/// The kernel's per-vCPU data.
#[repr(C)]
#[derive(Clone, Debug)]
pub struct VcpuData {
    /// Guest general-purpose registers (RSP lives in the VMCS; slot 4 is unused).
    pub gprs: Gprs,
    /// Guest x87/SSE state.
    pub fpu: FpuArea,
    /// The validator's view of the VMCS.
    pub cached: VcpuState,
    /// The last validated reply: its writes are applied before the next entry.
    pub pending: ValidatedBatch,
    /// VMLAUNCH done (VMRESUME from now on).
    pub launched: bool,
    /// The VMCS was set up by `VCpuStart`.
    pub started: bool,
    /// The initial VMCS, written (after VMCLEAR and VMPTRLD) before the first entry.
    pub init: Option<InitialVmcs>,
    /// The optional groups every exit message carries, as the VMM asked.
    pub transfer: TransferMask,
    /// MSRs switched on entry and exit (entries of the MSR areas in use).
    pub msr_count: u8,
    /// `msr_count` changed since the VMCS's MSR-area counts were written.
    pub msr_areas_changed: bool,
    /// The guest's CR2, which VMX does not switch: loaded before every entry, saved
    /// after every exit.
    pub cr2: u64,
    /// The linear address of the page fault the last exit intercepted, if it was one.
    pub page_fault: Option<u64>,
    /// Where a kick (`VCpuKick`) stands: see [`Kick`].
    pub kick: Kick,
    /// The VMX-preemption-timer value the VMM's controls had while a kick's zero value
    /// replaced it.
    pub kick_saved_timer: u64,
    /// The preemption timer's value field, as the kernel follows it (no VMREAD).
    pub timer: TimerCount,
    /// The VMCS's timer is the kernel's backstop: the VMM's timer is off, and the
    /// kernel's counts one tick ([`VmxInfo::backstop`]) from each entry. A host interrupt
    /// always makes a guest exit, but an emulator may hold it back while the guest runs
    /// with interrupts disabled (Bochs 2.7 does until the guest's RFLAGS.IF changes):
    /// the backstop bounds that at one tick, so the kernel regains the CPU whatever the
    /// guest does (a VMM's own timer is bounded the same way: `TimerCount`). Its expiry
    /// is an exit the kernel keeps; the VMM never sees it. Any write of the VMM's to the
    /// timer's controls or value disarms it (the next entry arms it again if the timer is
    /// still off).
    pub backstop: bool,
    /// `passed[i]`: the port range whose exits are off because pass-through slot `i`
    /// holds an `IoPorts` capability for it.
    pub passed: [Option<(u16, u16)>; crate::store::VCPU_PASS_SLOTS],
    /// The kernel's `io_ports_generation` when `passed` was last checked.
    pub pass_generation: u64,
}

impl Default for VcpuData {
    fn default() -> Self {
        Self {
            gprs: Gprs::default(),
            fpu: FpuArea::default(),
            cached: VcpuState::default(),
            pending: ValidatedBatch::default(),
            launched: false,
            started: false,
            init: None,
            transfer: TransferMask::NONE,
            passed: [None; crate::store::VCPU_PASS_SLOTS],
            pass_generation: 0,
            msr_count: 0,
            msr_areas_changed: false,
            cr2: 0,
            page_fault: None,
            kick: Kick::None,
            kick_saved_timer: 0,
            timer: TimerCount::default(),
            backstop: false,
        }
    }
}

/// The VM-entry interruption information that delivers again the event an exit the
/// kernel keeps (an interrupt of the host's) cut short, from the exit's IDT-vectoring
/// information; `None` when no delivery was under way. The VMM never sees such an exit,
/// so without this the event (an interrupt the VMM injected, an exception the guest
/// raised) would be lost (SDM 27.2.4: the VMM must inject it again). The formats agree
/// but for bit 12, undefined in the one and reserved in the other.
pub fn reinjection(vectoring: u32) -> Option<u32> {
    const VALID: u32 = 1 << 31;
    const KEPT: u32 = VALID | 0xfff;
    (vectoring & VALID != 0).then_some(vectoring & KEPT)
}

/// A kick's way from `VCpuKick` to the exit it causes. The VMX-preemption timer, armed
/// at zero for one entry, makes the guest exit before its first instruction (SDM
/// 26.7.4, out of HLT too), so the VMM gets an ordinary exit with the full state, and no
/// exit reason is the kernel's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kick {
    /// Nothing asked.
    #[default]
    None,
    /// Asked: the next entry arms the timer at zero.
    Asked,
    /// Armed in the VMCS: the next exit puts the VMM's timer controls back.
    Armed,
}

/// The VMX-preemption timer's value field. The CPU loads it at each entry and counts
/// down from there: an exit the kernel keeps (a host interrupt) and the entry after it
/// would start the VMM's count afresh, so that a guest halted with a timer longer than
/// the host's tick never saw it expire. The kernel therefore writes what is left at such
/// an exit, and the VMM's own value again with the next reply that leaves the value
/// alone, so that the VMM's count restarts as it always has (from each entry after a
/// reply). And the field never holds more than the backstop's tick ([`VmxInfo::backstop`]):
/// the rest of a longer count waits in `over`, and an expiry with some left over is the
/// kernel's, as a tick, so no timer value a VMM writes keeps the kernel from its CPU.
/// Where the VMM's "save" exit control has the CPU keep the count, the kernel leaves the
/// field alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerCount {
    /// The value the field held at the last entry.
    pub loaded: u32,
    /// What is left of the VMM's count beyond `loaded`.
    pub over: u32,
    /// The VMM's value, as it last wrote it.
    pub vmm: u32,
    /// Kept exits counted the VMM's count down from `vmm`: the next reply that leaves
    /// the value alone puts `vmm` back.
    pub reduced: bool,
}

impl TimerCount {
    /// What is left of `loaded` after the guest ran from `entry_tsc` to `exit_tsc`, on a
    /// timer that counts down once every 2^`shift` TSC ticks. The span includes the VM
    /// entry and exit, so the timer may expire a little early, never late.
    pub fn left(&self, entry_tsc: u64, exit_tsc: u64, shift: u8) -> u32 {
        let units = exit_tsc.wrapping_sub(entry_tsc) >> shift.min(63);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        self.loaded.saturating_sub(units)
    }

    /// Count `count` from the next entry: at most `cap` in the field (none with `cap`
    /// 0), the rest in `over`.
    pub fn count(&mut self, count: u32, cap: u32) {
        self.loaded = if cap == 0 { count } else { count.min(cap) };
        self.over = count - self.loaded;
    }
}

impl VcpuData {
    /// A batch was taken that writes the preemption timer, or kept exits counted the
    /// VMM's timer down: follow the VMM's writes (which replace the backstop's controls
    /// or value: the next entry arms it again if the VMM's timer is off), hold back what
    /// of its value exceeds `cap` (`TimerCount`), and, where the VMM left its value alone,
    /// start its count afresh with a write of the kernel's own.
    #[cold]
    #[inline(never)]
    pub(crate) fn take_timer_writes(&mut self, cap: u32) {
        let saved = self.cached.controls.exit & exit::SAVE_PREEMPTION_TIMER != 0;
        let cap = if saved { 0 } else { cap };
        let writes = self.pending.timer;
        if let Some(value) = writes.value() {
            self.timer.vmm = value;
            self.timer.reduced = false;
            self.timer.count(value, cap);
            if self.timer.loaded != value {
                self.pending.replace(Field::PreemptionTimerValue, self.timer.loaded.into());
            }
        }
        if writes.any() {
            self.backstop = false;
        }
        // A VMM that turns its timer off and on again writes its value with it.
        if writes.controls() {
            self.timer.reduced = false;
            if self.cached.controls.pin & pin::PREEMPTION_TIMER == 0 {
                self.timer.over = 0;
            }
        }
        if self.timer.reduced {
            let mut t = self.timer;
            t.count(t.vmm, cap);
            if self.pending.push(Field::PreemptionTimerValue, t.loaded.into()).is_ok() {
                self.timer = TimerCount { reduced: false, ..t };
            }
        }
    }

    /// Whether the kernel counts the VMM's timer (`TimerCount`): it is on, and the CPU
    /// does not keep the count itself (the VMM's "save" exit control).
    pub fn timer_counted(&self) -> bool {
        let c = &self.cached.controls;
        c.pin & pin::PREEMPTION_TIMER != 0 && c.exit & exit::SAVE_PREEMPTION_TIMER == 0
    }

    /// Whether a preemption-timer expiry (not a kick's) is the kernel's, as a tick: the
    /// timer was its backstop, or the VMM's count goes on beyond it.
    pub fn kernel_timer(&self) -> bool {
        self.backstop || (self.timer.over != 0 && self.timer_counted())
    }

    /// The writes to apply before the next entry.
    pub fn pending(&self) -> &[(Field, u64)] {
        self.pending.writes()
    }
}

/// A refused reply: the error, the `BatchError` code and the offending field.
pub type ReplyError = (Error, u64, u64);

/// Whether interruption information (exit or entry) names a #PF.
fn is_page_fault(raw: u32) -> bool {
    let info = EventInjection::from_raw(raw);
    info.is_valid()
        && info.event_type() == Some(EventType::HardwareException)
        && info.vector() == protocols::x86::PAGE_FAULT_VECTOR
}

/// What the kernel keeps of an exit for itself: the state the validator judges the reply
/// against, the words of the exit IPC, and what reflecting a #PF needs. The hardware layer
/// fills it from its own VMREADs, so nothing here comes from the VMM's page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCore {
    /// Full exit reason.
    pub reason: u32,
    /// VM-exit instruction length.
    pub instruction_len: u32,
    /// Exit qualification (read for exceptions, else when the VMM asked for it).
    pub qualification: u64,
    /// Exit interruption information (read for exceptions).
    pub exit_intr_info: u32,
    /// Guest interruptibility state.
    pub interruptibility: u32,
    /// Guest RIP.
    pub rip: u64,
    /// Guest RFLAGS.
    pub rflags: u64,
    /// Guest CR0.
    pub cr0: u64,
    /// Guest CR4.
    pub cr4: u64,
}

impl ExitCore {
    /// The core of a whole message.
    pub const fn of(msg: &ExitMessage) -> Self {
        Self {
            reason: msg.reason,
            instruction_len: msg.instruction_len,
            qualification: msg.qualification,
            exit_intr_info: msg.exit_intr_info,
            interruptibility: msg.interruptibility,
            rip: msg.rip,
            rflags: msg.rflags,
            cr0: msg.cr0,
            cr4: msg.cr4,
        }
    }

    /// Whether an exception-or-NMI exit is a host NMI's: with NMI exiting (always on)
    /// every NMI that arrives while the guest runs exits, and it is the machine's, not
    /// the guest's.
    fn host_nmi(&self) -> bool {
        let info = EventInjection::from_raw(self.exit_intr_info);
        info.is_valid() && info.event_type() == Some(EventType::Nmi)
    }
}

impl<S: Store> Kernel<S> {
    /// The message frame of `vcpu`, if bound.
    fn message_frame(&mut self, vcpu: u64) -> Option<u64> {
        match self.store.slot(vcpu_slot(vcpu, VCpuSlot::MessageFrame)).cap {
            Cap::Frame { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// A vCPU may run while its guest space is bound and its VMCS is set up.
    pub(crate) fn vcpu_runnable(&mut self, v: u64) -> bool {
        matches!(self.store.slot(vcpu_slot(v, VCpuSlot::GuestSpace)).cap, Cap::GuestSpace { .. })
            && self.store.vcpu(v).started
    }

    /// Where the hardware layer writes an exit of full reason `reason` for `vcpu`: the
    /// groups it carries (the VCpu's default and what its VMM's transfer table adds for
    /// that reason), the exit area of its message frame, and the VCpu's data (its GPRs
    /// and controls go from there straight into the area). `None` without a bound frame.
    pub fn exit_area(
        &mut self,
        vcpu: u64,
        reason: u32,
    ) -> Option<(TransferMask, &mut ExitMessage, &mut VcpuData)> {
        let frame = self.message_frame(vcpu)?;
        let (data, page) = self.store.vcpu_and_frame(vcpu, frame);
        let base = data.transfer;
        let groups = vcpu_page::transfer_table(page).map_or(base, |t| t.for_reason(reason, base));
        Some((groups, vcpu_page::exit_mut(page)?, data))
    }

    /// Deliver `msg` as the current vCPU's exit: written whole into the exit area, then
    /// sent ([`Self::vcpu_exited`]). The hardware layer writes the area field by field
    /// instead; this is the same for a caller that has the message at hand.
    pub fn vcpu_exit(&mut self, msg: &ExitMessage) -> Next {
        let v = self.current;
        if let Some((_, area, _)) = self.exit_area(v, msg.reason) {
            *area = *msg;
        }
        self.vcpu_exited(&ExitCore::of(msg))
    }

    /// The current vCPU left the guest and its exit is in the exit area: send it to the
    /// VMM and block for the reply. `core` is what the kernel itself keeps of the exit
    /// (from its own VMREADs, never read back from the VMM's page).
    pub fn vcpu_exited(&mut self, core: &ExitCore) -> Next {
        let v = self.current;
        let data = self.store.vcpu(v);
        let c = &mut data.cached;
        (c.cr0, c.cr4, c.rflags, c.rip) = (core.cr0, core.cr4, core.rflags, core.rip);
        c.interruptibility = core.interruptibility;
        c.exit_instruction_len = core.instruction_len;
        data.page_fault = None;
        // Exception exits are rare: one test for every other.
        let basic = core.reason & 0xffff;
        if basic == ExitReason::ExceptionOrNmi as u32 && self.exception_exit(v, core) {
            return Next::Run;
        }
        let exit_ep = self.store.slot(vcpu_slot(v, VCpuSlot::ExitEndpoint)).cap;
        match (self.message_frame(v), exit_ep) {
            (Some(_), Cap::Endpoint { addr, badge, .. }) => {
                let words = [
                    u64::from(core.reason),
                    core.qualification,
                    core.rip,
                    u64::from(core.instruction_len),
                ];
                if self.fast_vcpu_exit(v, addr, badge, words) {
                    return Next::Run;
                }
                self.send_message(v, addr, badge, KernelMessage::VmExit(words));
            }
            _ => self.store.sched(v).state = ThreadState::Inactive,
        }
        self.schedule()
    }

    /// An exception-or-NMI exit: a page fault the exception bitmap intercepted is noted
    /// (reflecting it gives the guest its address). True for a host NMI's, which the
    /// kernel keeps: it sends none and has nothing to do for one (a watchdog's, a board
    /// button's), so the VMM never sees it and the vCPU enters its guest again.
    #[cold]
    #[inline(never)]
    fn exception_exit(&mut self, v: u64, core: &ExitCore) -> bool {
        if core.host_nmi() {
            return true;
        }
        if is_page_fault(core.exit_intr_info) {
            self.store.vcpu(v).page_fault = Some(core.qualification);
        }
        false
    }

    /// Interrupt-window exiting is one-shot: at the exit it asked for, the window is
    /// open, so the control goes (a VMM still waiting asks again with
    /// `REQUEST_INTERRUPT_WINDOW`) and a guest that can take interrupts does not exit on
    /// every instruction boundary from then on. Returns the processor-based controls the
    /// current vCPU runs with from this exit on, when they change; the hardware layer
    /// writes them before it builds the exit message.
    pub fn proc_controls_after_exit(&mut self, reason: u32) -> Option<u32> {
        const WINDOW: u32 = protocols::vmcs::ctl::proc::INTERRUPT_WINDOW_EXITING;
        let cached = &mut self.store.vcpu(self.current).cached.controls.proc;
        if reason != ExitReason::InterruptWindow as u32 || *cached & WINDOW == 0 {
            return None;
        }
        *cached &= !WINDOW;
        Some(*cached)
    }

    /// `VCpuKick`: a vCPU in its guest or ready to enter it leaves at its next entry (a
    /// CPU running it now is sent a reschedule IPI, whose exit brings it to that entry);
    /// one that waits for its VMM or is stopped has nothing to leave. The result says
    /// which (1: kicked).
    pub(crate) fn vcpu_kick(&mut self, v: u64) -> Result<Done, Error> {
        let vmx = self.vmx.ok_or(Error::NotSupported)?;
        if !vmx.caps.pinbased.allows(pin::PREEMPTION_TIMER) {
            return Err(Error::NotSupported);
        }
        if self.store.sched(v).state != ThreadState::Ready || !self.store.vcpu(v).started {
            return Ok(Done::Value(0));
        }
        let data = self.store.vcpu(v);
        if data.kick == Kick::None {
            data.kick = Kick::Asked;
        }
        if let Some(cpu) = self.cpu_running(v) {
            self.reschedule |= 1 << cpu;
        }
        Ok(Done::Value(1))
    }

    /// A VMX instruction failed while the current vCPU was to run: it stops, and its VMM
    /// learns why from a one-way message on the exit endpoint (`VCpuStart` runs it again).
    pub fn vcpu_failed(&mut self, failure: VmxFailure) -> Next {
        let v = self.current;
        match self.store.slot(vcpu_slot(v, VCpuSlot::ExitEndpoint)).cap {
            Cap::Endpoint { addr, badge, .. } => {
                self.send_message(v, addr, badge, KernelMessage::VmxFailure(failure));
            }
            _ => self.store.sched(v).state = ThreadState::Inactive,
        }
        self.schedule()
    }

    /// Apply the VMM's reply to the vCPU `v` waiting for it: validate the batch in the
    /// message frame and queue it, or leave the vCPU stopped and say why.
    pub(crate) fn vcpu_reply(&mut self, v: u64) -> Result<(), ReplyError> {
        if let Err(e) = self.accept_reply(v) {
            // Nothing was applied; the vCPU stays stopped until the VMM restarts it.
            self.store.sched(v).state = ThreadState::Inactive;
            return Err(e);
        }
        if self.store.vcpu(v).pending.stop {
            self.store.sched(v).state = ThreadState::Inactive;
        } else {
            self.make_ready(v);
        }
        Ok(())
    }

    /// The fastpath's [`Self::accept_reply`], without building its errors: a batch that
    /// validates and does not stop the vCPU is applied (`true`); otherwise nothing changes
    /// but the pending batch, and the slow path, which validates again, says what happened
    /// (`false`).
    pub(crate) fn take_running_reply(&mut self, v: u64) -> bool {
        let Some(frame) = self.message_frame(v) else { return false };
        let Some(vmx) = self.vmx.as_ref() else { return false };
        let (data, page) = self.store.vcpu_and_frame(v, frame);
        let Some(reply) = vcpu_page::reply(page) else { return false };
        let VcpuData { cached, pending, gprs, .. } = data;
        if decode_reply_into(reply, &vmx.caps, &vmx.policy, cached, pending).is_err()
            || pending.stop
        {
            return false;
        }
        pending.load_gprs(&reply.gprs, gprs);
        self.take_batch_state(v);
        true
    }

    /// Validate the reply in `v`'s reply area into its pending batch and take it as the
    /// vCPU's next state (its thread state is the caller's): the GPRs it names, the cached
    /// VMCS view, CR2 for a reflected #PF; the writes stay pending until the next entry. A
    /// refused batch changes nothing but the pending batch, which then holds no writes.
    pub(crate) fn accept_reply(&mut self, v: u64) -> Result<(), ReplyError> {
        let refuse = |e: BatchError| {
            (Error::BatchRejected, u64::from(e.code()), e.field().map_or(0, u64::from))
        };
        let Some(frame) = self.message_frame(v) else {
            return Err((Error::InvalidCapability, 0, 0));
        };
        // Borrowed, not copied: the capabilities and host state are hundreds of bytes.
        let Some(vmx) = self.vmx.as_ref() else { return Err((Error::NotSupported, 0, 0)) };
        // Validation reads the VMM's words in place, each once; what it accepts is the
        // kernel's own copy from then on.
        let (data, page) = self.store.vcpu_and_frame(v, frame);
        let VcpuData { cached, pending, gprs, .. } = data;
        let Some(reply) = vcpu_page::reply(page) else {
            pending.clear();
            return Err(refuse(BatchError::BadLength { expected: 0, got: 0 }));
        };
        decode_reply_into(reply, &vmx.caps, &vmx.policy, cached, pending).map_err(refuse)?;
        // The GPR values need no check: each is read from the reply as it is loaded.
        pending.load_gprs(&reply.gprs, gprs);
        self.take_batch_state(v);
        Ok(())
    }

    /// The validated batch's state becomes the cached one; a reflected #PF gives the
    /// guest its address in CR2, and a #PF the VMM raised the address it names.
    #[inline(always)]
    fn take_batch_state(&mut self, v: u64) {
        let data = self.store.vcpu(v);
        data.cached = data.pending.next;
        if data.timer.reduced || data.pending.timer.any() {
            data.take_timer_writes(self.vmx.as_ref().map_or(0, |x| x.backstop));
        }
        // Only a batch that injects a #PF touches CR2: one test for every other.
        if let Some(fault) = data.pending.page_fault {
            data.pending.page_fault = None;
            match fault {
                InjectedPageFault::At(address) => data.cr2 = address,
                // A #PF exit leaves CR2 alone; reflecting the fault gives the guest its
                // address.
                InjectedPageFault::Reflected => {
                    if let Some(address) = data.page_fault {
                        data.cr2 = address;
                    }
                }
            }
        }
    }
}

impl<S: Store> Kernel<S> {
    /// Fresh VCpu memory: the VMCS revision identifier, and bitmaps that make every I/O
    /// port and MSR access exit (pass-through is granted by the kernel, never by the VMM).
    pub(crate) fn init_vcpu_pages(&mut self, addr: u64) {
        let revision = self.vmx.map_or(0, |v| v.caps.revision);
        self.store.frame(addr + VMCS_OFFSET)[..4].copy_from_slice(&revision.to_le_bytes());
        for page in [IO_BITMAP_OFFSET, IO_BITMAP_OFFSET + 0x1000, MSR_BITMAP_OFFSET] {
            self.store.frame(addr + page).fill(0xff);
        }
    }

    /// `FrameMapGuest`: map a frame into a guest space, as one page of its size.
    pub(crate) fn frame_map_guest(
        &mut self,
        at: u64,
        cap: Cap,
        space: u64,
        gpa: u64,
        want: u64,
    ) -> Result<Done, Error> {
        let vmx = self.vmx.ok_or(Error::NotSupported)?;
        let Cap::Frame { addr: frame, size, rights, mapped: None } = cap else {
            return Err(Error::InvalidArgument);
        };
        if want & !(map::WRITE | map::EXECUTE) != 0 {
            return Err(Error::InvalidArgument);
        }
        let (_, gs) = self.lookup(space)?;
        let Cap::GuestSpace { addr: root, .. } = gs else { return Err(Error::WrongType) };
        let access =
            Access { read: true, write: want & map::WRITE != 0, execute: want & map::EXECUTE != 0 };
        if (access.write && !rights.contains(Rights::WRITE))
            || (access.execute && !rights.contains(Rights::EXECUTE))
            || !rights.contains(Rights::READ)
        {
            return Err(Error::InsufficientRights);
        }
        self.vspaces
            .map_guest(&mut self.store, root, gpa, (frame, size), access, vmx.ept)
            .map_err(|e| match e {
                MapError::Ept(ept::Error::OutOfMemory) => Error::OutOfMemory,
                MapError::Ept(ept::Error::Unsupported(_)) => Error::NotSupported,
                _ => Error::InvalidArgument,
            })?;
        let mapped = Some(Mapping { vspace: root, vaddr: gpa });
        self.store.slot(at).cap = Cap::Frame { addr: frame, size, rights, mapped };
        Ok(Done::Value(0))
    }

    /// `VCpuConfigure`: bind the guest space, the exit endpoint and the message frame,
    /// and choose the exit message's optional groups.
    pub(crate) fn vcpu_configure(&mut self, v: u64, w: [u64; 4]) -> Result<Done, Error> {
        let [space, exit_ep, frame, mask] = w;
        let transfer = TransferMask::from_bits(mask).ok_or(Error::InvalidArgument)?;
        let (gs_at, gs) = self.lookup(space)?;
        let (ep_at, ep) = self.lookup(exit_ep)?;
        let (fr_at, fr) = self.lookup(frame)?;
        match (gs, ep, fr) {
            (
                Cap::GuestSpace { .. },
                Cap::Endpoint { rights: er, .. },
                Cap::Frame { rights: fr_rights, .. },
            ) => {
                if !er.contains(Rights::CALL)
                    || !fr_rights.contains(Rights::READ.union(Rights::WRITE))
                {
                    return Err(Error::InsufficientRights);
                }
            }
            _ => return Err(Error::WrongType),
        }
        if self.store.sched(v).state != ThreadState::Inactive {
            return Err(Error::NotPermitted);
        }
        let copies = [
            (VCpuSlot::GuestSpace, gs_at, gs),
            (VCpuSlot::ExitEndpoint, ep_at, ep),
            (VCpuSlot::MessageFrame, fr_at, fr),
        ];
        for (which, src, cap) in copies {
            let dst = vcpu_slot(v, which);
            if self.store.slot(dst).cap != Cap::Null {
                // A guest space, endpoint or frame: deleting it always completes.
                self.delete_one(dst);
            }
            let cap = cap.derive(Rights::ALL).map_err(|_| Error::InvalidArgument)?;
            let _ = cnode::insert_child(&mut self.store, src, dst, cap);
        }
        self.store.vcpu(v).transfer = transfer;
        if let (Some(vmx), Cap::Frame { addr, .. }) = (self.vmx, fr) {
            if let Some(clock) = vcpu_page::clock_mut(self.store.frame(addr)) {
                *clock = vmx.clock();
            }
        }
        Ok(Done::Value(0))
    }

    /// `VCpuStart`: `[mode | priority << 8, rip, rsp, cr3]`. An initial VMCS that fails a
    /// check is `StartRefused` with the check's `StartError` words for the caller.
    pub(crate) fn vcpu_start(&mut self, v: u64, w: [u64; 4]) -> Result<Done, Error> {
        let vmx = self.vmx.ok_or(Error::NotSupported)?;
        let with_batch = w[0] & vcpu_mode::WITH_BATCH != 0;
        let mode = match w[0] & 0xff & !vcpu_mode::WITH_BATCH {
            vcpu_mode::LONG64 => GuestMode::Long64,
            vcpu_mode::PROTECTED32 => GuestMode::Protected32,
            vcpu_mode::REAL => GuestMode::Real,
            _ => return Err(Error::InvalidArgument),
        };
        let priority = (w[0] >> 8) as u8;
        let extra_proc = u32::try_from(w[0] >> 16).map_err(|_| Error::InvalidArgument)?;
        if priority > self.store.sched(self.current).priority {
            return Err(Error::NotPermitted);
        }
        let Cap::GuestSpace { addr: root, .. } =
            self.store.slot(vcpu_slot(v, VCpuSlot::GuestSpace)).cap
        else {
            return Err(Error::InvalidCapability);
        };
        if self.store.sched(v).state != ThreadState::Inactive {
            return Err(Error::NotPermitted);
        }
        let eptp = Ept::from_root(root, vmx.ept).eptp(false).ok();
        let msr_areas = self.msr_areas(v);
        let pages = VcpuPages {
            io_bitmap_a: v + IO_BITMAP_OFFSET,
            io_bitmap_b: v + IO_BITMAP_OFFSET + 0x1000,
            msr_bitmap: v + MSR_BITMAP_OFFSET,
            eptp,
            vpid: 0,
            msr_areas,
            maxphyaddr: vmx.maxphyaddr,
        };
        let entry = GuestEntry {
            mode,
            rip: w[1],
            rsp: w[2],
            cr3: w[3],
            exception_bitmap: 0,
            extra_controls: protocols::vmexit::Controls { proc: extra_proc, ..Default::default() },
        };
        let init =
            initial_vmcs(&vmx.caps, &vmx.policy, &vmx.host, &entry, &pages).map_err(|e| {
                self.refusal = Some(e.to_words());
                Error::StartRefused
            })?;
        let data = self.store.vcpu(v);
        data.cached = init.state;
        data.init = Some(init);
        data.started = true;
        data.launched = false;
        data.pending.clear();
        data.gprs = Gprs::default();
        data.msr_areas_changed = false;
        data.page_fault = None;
        data.cr2 = 0;
        // The initial VMCS sets the timer controls afresh: no kick or backstop is armed
        // there.
        data.kick = Kick::None;
        data.backstop = false;
        data.timer = TimerCount::default();
        if with_batch {
            // The batch is validated against the initial state and written after it.
            if let Err((e, code, field)) = self.accept_reply(v) {
                let data = self.store.vcpu(v);
                data.init = None;
                data.started = false;
                self.refusal = Some([code, field, 0]);
                return Err(e);
            }
            if self.store.vcpu(v).pending.stop {
                // Set up, but asked to stay stopped: the next `VCpuStart` runs it.
                return Ok(Done::Value(0));
            }
        }
        self.store.sched(v).priority = priority;
        self.make_ready(v);
        Ok(Done::Value(0))
    }
}
