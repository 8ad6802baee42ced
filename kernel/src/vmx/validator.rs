//! The VMCS-write batch validator: the kernel runs [`decode_reply`] on every VMM reply
//! before it touches the VMCS.
//!
//! Decode, then invoke: validation is a pure function of the reply, the CPU's
//! capabilities, the kernel's [`Policy`] and the kernel's cached [`VcpuState`]. It
//! either refuses the whole batch with the first offending field, or returns a
//! [`ValidatedBatch`] whose writes the kernel applies blindly (so a refused batch leaves
//! nothing half-applied). Flags become ordinary writes here (advance RIP, inject an
//! event, open an interrupt window) so that the apply loop has no decisions left.
//!
//! Checks run in three layers: per write (field class, width, the value rules of that
//! field), per control field (capability MSRs, then kernel policy), and on the state
//! the guest would enter with (fixed CR0/CR4 bits, RFLAGS, interruptibility, and the
//! event being injected), so the kernel never VM-enters with state that fails a VM-entry
//! check it can know in advance.

use protocols::vmcs::ctl::{entry, exit, pin, proc, proc2};
use protocols::vmcs::{activity, Field, FieldClass, ALWAYS_INTERCEPTED_EXCEPTIONS};
use protocols::vmexit::{
    exception_has_error_code, BatchError, Controls, EventInjection, EventType, ExitReply, Gprs,
    ReplyFlags, VmcsWrite, MAX_WRITES,
};

use super::caps::{CtlMsr, VmxCaps};
use protocols::x86::{
    CR0_PE, CR0_PG, CR4_PAE, CR4_PCIDE, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, RFLAGS_FIXED1,
    RFLAGS_IF, RFLAGS_VM,
};

/// RFLAGS bits 63:22, 15, 5 and 3 must be 0 on VM entry.
const RFLAGS_RESERVED: u64 = !0x003f_ffff | 1 << 15 | 1 << 5 | 1 << 3;
const BLOCKING_STI: u32 = 1 << 0;
const BLOCKING_MOV_SS: u32 = 1 << 1;
const BLOCKING_SMI: u32 = 1 << 2;
const BLOCKING_NMI: u32 = 1 << 3;
const ENCLAVE_INTERRUPTION: u32 = 1 << 4;
/// Interruptibility bits 31:5 are reserved, and blocking by SMI is only valid in SMM,
/// where this kernel never runs.
const INTERRUPTIBILITY_RESERVED: u64 = !0x1f | BLOCKING_SMI as u64;
/// Pending debug exceptions: B3-B0, enabled breakpoint, BS and RTM are the defined bits.
const PENDING_DEBUG_RESERVED: u64 = !(0xf | 1 << 12 | 1 << 14 | 1 << 16);
/// Access-rights bits 11:8 and 31:17 must be 0 for a usable segment.
const AR_RESERVED: u64 = 0xfffe_0f00;
const AR_UNUSABLE: u64 = 1 << 16;
/// IA32_EFER on Intel: SCE, LME, LMA and NXE are the only defined bits.
const EFER_DEFINED: u64 = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
/// The TPR threshold has four bits.
const TPR_THRESHOLD_RESERVED: u64 = !0xf;

/// Room for the VMM's writes plus those the flags add: interrupt window (primary
/// controls), guest RSP from the GPR mask, RIP and interruptibility from ADVANCE_RIP,
/// and the three injection fields.
pub const MAX_VALIDATED_WRITES: usize = MAX_WRITES + 7;

/// The kernel's rule for one control field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtlPolicy {
    /// Bits the kernel relies on: a value that clears one is refused.
    pub forced: u32,
    /// Bits the VMM may choose. Anything outside `forced | vmm` and the CPU's required
    /// bits is refused, so a control bit nobody has reviewed is never available.
    pub vmm: u32,
}

/// The kernel's policy for the five control fields of one VCpu.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Policy {
    /// Pin-based controls.
    pub pin: CtlPolicy,
    /// Primary processor-based controls.
    pub proc: CtlPolicy,
    /// Secondary processor-based controls.
    pub proc2: CtlPolicy,
    /// VM-exit controls.
    pub exit: CtlPolicy,
    /// VM-entry controls.
    pub entry: CtlPolicy,
}

impl Policy {
    /// The standard policy. `guest_space`: the VCpu runs on a GuestSpace, so EPT is forced
    /// on (and the EPT-dependent features become available); without one EPT is
    /// forbidden, since the EPT pointer would name nothing. `vpid`: the kernel gave this
    /// VCpu a VPID, so "enable VPID" is forced on, else forbidden.
    pub const fn new(caps: &VmxCaps, guest_space: bool, vpid: bool) -> Self {
        // Host EFER and PAT are restored on every exit where the CPU can; only then may
        // the guest load its own, or the host would run on with the guest's NXE or PAT.
        let host_restore = (exit::LOAD_EFER | exit::LOAD_PAT) & caps.exit.may_be_one;
        let mut entry_vmm = entry::LOAD_DEBUG_CONTROLS | entry::IA32E_MODE_GUEST;
        if host_restore & exit::LOAD_EFER != 0 {
            entry_vmm |= entry::LOAD_EFER;
        }
        if host_restore & exit::LOAD_PAT != 0 {
            entry_vmm |= entry::LOAD_PAT;
        }
        // Where the CPU has them: WBINVD would flush every cache of the machine for the
        // guest (a latency attack on every other VM), and the notify window bounds how long
        // a guest may go without an instruction boundary (the kernel owns the window).
        let proc2_forced_if_present =
            caps.procbased2.may_be_one & (proc2::WBINVD_EXITING | proc2::INSTRUCTION_TIMEOUT);
        let (ept, ept_features) = if guest_space {
            (proc2::ENABLE_EPT, proc2::UNRESTRICTED_GUEST | proc2::MODE_BASED_EPT_EXECUTE)
        } else {
            (0, 0)
        };
        Self {
            // The kernel keeps host interrupts and NMIs: they always exit.
            pin: CtlPolicy {
                forced: pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
                vmm: pin::VIRTUAL_NMIS | pin::PREEMPTION_TIMER,
            },
            // Port and MSR pass-through only through the kernel's bitmaps. CR8 accesses
            // must exit: without a TPR shadow (kernel-owned) they reach the host's TPR.
            // MOV DR and RDPMC always exit: the kernel never switches the debug
            // registers or performance counters, so a guest that touched them natively
            // would read or set another VM's (docs/abi.md, what runs natively).
            proc: CtlPolicy {
                forced: proc::USE_IO_BITMAPS
                    | proc::USE_MSR_BITMAPS
                    | proc::ACTIVATE_SECONDARY_CONTROLS
                    | proc::CR8_LOAD_EXITING
                    | proc::CR8_STORE_EXITING
                    | proc::MOV_DR_EXITING
                    | proc::RDPMC_EXITING,
                vmm: proc::INTERRUPT_WINDOW_EXITING
                    | proc::USE_TSC_OFFSETTING
                    | proc::HLT_EXITING
                    | proc::INVLPG_EXITING
                    | proc::MWAIT_EXITING
                    | proc::RDTSC_EXITING
                    | proc::CR3_LOAD_EXITING
                    | proc::CR3_STORE_EXITING
                    | proc::NMI_WINDOW_EXITING
                    | proc::UNCONDITIONAL_IO_EXITING
                    | proc::MONITOR_TRAP_FLAG
                    | proc::MONITOR_EXITING
                    | proc::PAUSE_EXITING,
            },
            // Everything that needs a kernel-owned page (APIC virtualization, PML, #VE,
            // VMFUNC, VMCS shadowing, SPP, PASID, PCONFIG) stays off.
            proc2: CtlPolicy {
                forced: ept | if vpid { proc2::ENABLE_VPID } else { 0 } | proc2_forced_if_present,
                vmm: proc2::DESCRIPTOR_TABLE_EXITING
                    | proc2::ENABLE_RDTSCP
                    | proc2::PAUSE_LOOP_EXITING
                    | proc2::RDRAND_EXITING
                    | proc2::ENABLE_INVPCID
                    | proc2::ENCLS_EXITING
                    | proc2::RDSEED_EXITING
                    | proc2::ENABLE_XSAVES
                    | proc2::USE_TSC_SCALING
                    | proc2::ENABLE_USER_WAIT_PAUSE
                    | proc2::ENCLV_EXITING
                    | proc2::BUS_LOCK_DETECTION
                    | ept_features,
            },
            // The kernel is 64-bit; interrupt acknowledgement and host MSR loading are the
            // kernel's business.
            exit: CtlPolicy {
                forced: exit::HOST_ADDRESS_SPACE_SIZE | host_restore,
                vmm: exit::SAVE_DEBUG_CONTROLS
                    | exit::SAVE_PAT
                    | exit::SAVE_EFER
                    | exit::SAVE_PREEMPTION_TIMER,
            },
            entry: CtlPolicy { forced: 0, vmm: entry_vmm },
        }
    }

    /// A forced bit this CPU cannot set, if any: a VCpu with this policy cannot be
    /// created (`NotSupported`).
    pub fn unsupported(&self, caps: &VmxCaps) -> Option<(Field, u32)> {
        self.fields(caps).into_iter().find_map(|(field, pol, msr)| {
            let missing = pol.forced & !msr.may_be_one;
            (missing != 0).then_some((field, missing))
        })
    }

    /// The controls a new VCpu starts with: the CPU's required bits plus the forced ones.
    pub const fn initial_controls(&self, caps: &VmxCaps) -> Controls {
        Controls {
            pin: caps.pinbased.must_be_one | self.pin.forced,
            proc: caps.procbased.must_be_one | self.proc.forced,
            proc2: caps.procbased2.must_be_one | self.proc2.forced,
            exit: caps.exit.must_be_one | self.exit.forced,
            entry: caps.entry.must_be_one | self.entry.forced,
        }
    }

    const fn fields(&self, caps: &VmxCaps) -> [(Field, CtlPolicy, CtlMsr); 5] {
        [
            (Field::PinBasedControls, self.pin, caps.pinbased),
            (Field::ProcBasedControls, self.proc, caps.procbased),
            (Field::SecondaryProcBasedControls, self.proc2, caps.procbased2),
            (Field::ExitControls, self.exit, caps.exit),
            (Field::EntryControls, self.entry, caps.entry),
        ]
    }
}

/// The kernel's cached view of a VCpu's VMCS at the time of the exit: the values the
/// checks need for fields the batch does not write. The kernel already has them (the
/// controls are its own shadow copies, the rest is in the exit message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VcpuState {
    /// Current control fields.
    pub controls: Controls,
    /// Guest CR0.
    pub cr0: u64,
    /// Guest CR4.
    pub cr4: u64,
    /// Guest RFLAGS.
    pub rflags: u64,
    /// Guest RIP.
    pub rip: u64,
    /// Guest interruptibility state.
    pub interruptibility: u32,
    /// VM-exit instruction length of the exit being answered.
    pub exit_instruction_len: u32,
}

/// Where the guest's CR2 comes from for a #PF a batch injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedPageFault {
    /// The reply names no address: a reflected #PF keeps the one its exit reported.
    Reflected,
    /// [`ReplyFlags::PAGE_FAULT_ADDRESS`]: the address the VMM gave.
    At(u64),
}

/// A batch that passed every check: apply `writes` in order, load the GPRs named by
/// `gpr_mask` from the reply, then resume unless `stop`. GPR values need no check (any
/// value is a valid guest register), so they are not copied here: [`Self::load_gprs`]
/// reads each from the reply once, as it loads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatedBatch {
    writes: [(Field, u64); MAX_VALIDATED_WRITES],
    len: usize,
    /// Which of the reply's GPRs to load into the save area (never bit 4: RSP is already
    /// a [`Field::GuestRsp`] write).
    pub gpr_mask: u16,
    /// Leave the vCPU stopped after applying.
    pub stop: bool,
    /// The #PF the batch injects, if it injects one (set only for such a batch, taken
    /// with it, cleared when a batch is refused, so the common reply neither writes nor
    /// clears it).
    pub page_fault: Option<InjectedPageFault>,
    /// What the batch writes of the VMX-preemption timer, which the kernel borrows while
    /// the VMM's is off (`kernel::vcpu::VcpuData::backstop`).
    pub timer: TimerWrites,
    /// The kernel's cached state once the batch is applied.
    pub next: VcpuState,
}

/// A batch's writes to the VMX-preemption timer: its control word, its value (one byte
/// says which, so that a batch writing neither costs one test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerWrites {
    written: u8,
    value: u32,
}

impl TimerWrites {
    /// Neither.
    pub const NONE: Self = Self { written: 0, value: 0 };
    const CONTROLS: u8 = 1;
    const VALUE: u8 = 2;

    /// Whether the batch writes the pin-based controls or the timer's value.
    pub fn any(&self) -> bool {
        self.written != 0
    }

    /// Whether it writes the pin-based controls, which turn the timer on or off.
    pub fn controls(&self) -> bool {
        self.written & Self::CONTROLS != 0
    }

    /// The timer value it writes, if it writes one.
    pub fn value(&self) -> Option<u32> {
        (self.written & Self::VALUE != 0).then_some(self.value)
    }

    /// Note a write if it is one of the timer's.
    fn note(&mut self, field: Field, value: u64) {
        match field {
            Field::PinBasedControls => self.written |= Self::CONTROLS,
            Field::PreemptionTimerValue => {
                self.written |= Self::VALUE;
                // The width check made it 32-bit.
                self.value = value as u32;
            }
            _ => {}
        }
    }
}

impl Default for ValidatedBatch {
    fn default() -> Self {
        Self {
            writes: [(Field::GuestRip, 0); MAX_VALIDATED_WRITES],
            len: 0,
            gpr_mask: 0,
            stop: false,
            page_fault: None,
            timer: TimerWrites::NONE,
            next: VcpuState::default(),
        }
    }
}

impl ValidatedBatch {
    /// Drop the writes (once applied, or after a refusal).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The VMCS writes, in the order to apply them.
    pub fn writes(&self) -> &[(Field, u64)] {
        self.writes.get(..self.len).unwrap_or(&[])
    }

    /// Load the GPRs the batch names from `from` (the reply it was validated from) into
    /// `to`.
    pub fn load_gprs(&self, from: &Gprs, to: &mut Gprs) {
        let mut mask = self.gpr_mask;
        // CPUID's answer, the commonest reply: RAX, RCX, RDX and RBX as one block.
        if mask == 0b1111 {
            if let (Some(t), Some(f)) = (to.regs.first_chunk_mut::<4>(), from.regs.first_chunk()) {
                *t = *f;
            }
            return;
        }
        while mask != 0 {
            // Below 16: the mask is 16 bits wide.
            let r = mask.trailing_zeros() as usize & 15;
            mask &= mask - 1;
            to.regs[r] = from.regs[r];
        }
    }

    /// Whether the batch writes `field`.
    fn writes_field(&self, field: Field) -> bool {
        // Most batches hold one write or none: a plain loop, no slice set-up.
        let mut i = 0;
        while let Some(&(f, _)) = self.writes.get(i).filter(|_| i < self.len) {
            if f == field {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Give the write of `field`, if the batch has one, `value` instead.
    pub(crate) fn replace(&mut self, field: Field, value: u64) {
        let len = self.len;
        if let Some(w) =
            self.writes.get_mut(..len).and_then(|w| w.iter_mut().find(|w| w.0 == field))
        {
            w.1 = value;
        }
    }

    /// Append a write; each field at most once, so the result does not depend on order.
    pub(crate) fn push(&mut self, field: Field, value: u64) -> Result<(), BatchError> {
        if self.writes_field(field) {
            return Err(BatchError::DuplicateField { field: field as u32 });
        }
        let slot = self
            .writes
            .get_mut(self.len)
            .ok_or(BatchError::TooManyWrites { count: self.len as u32 + 1 })?;
        *slot = (field, value);
        self.len += 1;
        Ok(())
    }
}

/// The event VM entry will deliver, gathered from explicit writes or INJECT_EVENT.
#[derive(Clone, Copy, Default)]
struct Injection {
    info: Option<u32>,
    error: Option<u32>,
    len: Option<u32>,
}

/// The reply's header, read once: the VMM may still write its page (from another CPU, or
/// a thread of its own), so nothing is read twice.
#[derive(Clone, Copy)]
struct Header {
    flags: ReplyFlags,
    count: usize,
    gpr_mask: u16,
    advance_len: u16,
    injection: EventInjection,
    injection_error: u32,
    injection_len: u32,
}

/// Word index and bits of a reserved field at byte `offset` of the reply, as
/// [`BatchError::ReservedBits`] reports them.
fn reserved_at(offset: usize, value: u64) -> BatchError {
    let bits = value.checked_shl(8 * (offset % 8) as u32).unwrap_or(0);
    BatchError::ReservedBits { word: (offset / 8) as u32, bits }
}

/// The shape checks: known flags, at most [`MAX_WRITES`] writes, no event without
/// [`ReplyFlags::INJECT_EVENT`], reserved fields zero.
fn header(reply: &ExitReply) -> Result<Header, BatchError> {
    let raw_flags = reply.flags.bits();
    let flags =
        ReplyFlags::from_bits(raw_flags).ok_or(BatchError::BadFlags { flags: raw_flags })?;
    let count = reply.count;
    if count as usize > MAX_WRITES {
        return Err(BatchError::TooManyWrites { count });
    }
    let h = Header {
        flags,
        count: count as usize,
        gpr_mask: reply.gpr_mask,
        advance_len: reply.advance_len,
        injection: reply.injection,
        injection_error: reply.injection_error,
        injection_len: reply.injection_len,
    };
    // PAGE_FAULT_ADDRESS belongs to an injection too.
    let event_words = h.injection.raw()
        | h.injection_error
        | h.injection_len
        | raw_flags & ReplyFlags::PAGE_FAULT_ADDRESS.bits();
    if !flags.contains(ReplyFlags::INJECT_EVENT) && event_words != 0 {
        return Err(BatchError::BadInjection { info: h.injection.raw() });
    }
    ExitReply::check_advance(flags, h.advance_len)?;
    Ok(h)
}

/// Whether `event` is a #PF.
fn is_page_fault(event: EventInjection) -> bool {
    event.event_type() == Some(EventType::HardwareException)
        && event.vector() == protocols::x86::PAGE_FAULT_VECTOR
}

/// The fault address of a reply with [`ReplyFlags::PAGE_FAULT_ADDRESS`], which must
/// inject a #PF.
#[cold]
fn fault_address(
    reply: &ExitReply,
    flags: ReplyFlags,
    injection: EventInjection,
) -> Result<u64, BatchError> {
    ExitReply::check_fault_address(flags, injection).map(|()| reply.fault_address)
}

/// Validate `reply` against the CPU, the policy and the VCpu's current state. Pure: on
/// error nothing has happened; on success the kernel applies the result unchanged. Each
/// word of `reply` is read once, so it may be the VMM's page itself.
pub fn decode_reply(
    reply: &ExitReply,
    caps: &VmxCaps,
    policy: &Policy,
    now: &VcpuState,
) -> Result<ValidatedBatch, BatchError> {
    let mut out = ValidatedBatch::default();
    decode_reply_into(reply, caps, policy, now, &mut out).map(|()| out)
}

/// [`decode_reply`] into `out`, the VCpu's own pending batch, so that nothing is built
/// and then moved on the exit path. On error `out` holds no writes.
pub fn decode_reply_into(
    reply: &ExitReply,
    caps: &VmxCaps,
    policy: &Policy,
    now: &VcpuState,
    out: &mut ValidatedBatch,
) -> Result<(), BatchError> {
    out.clear();
    let result = validate(reply, caps, policy, now, out);
    if result.is_err() {
        out.clear();
        out.page_fault = None;
    }
    result
}

fn validate(
    reply: &ExitReply,
    caps: &VmxCaps,
    policy: &Policy,
    now: &VcpuState,
    out: &mut ValidatedBatch,
) -> Result<(), BatchError> {
    let head = header(reply)?;
    let flags = head.flags;
    out.gpr_mask = head.gpr_mask & !(1 << Gprs::RSP);
    out.stop = flags.contains(ReplyFlags::STOP_VCPU);
    out.timer = TimerWrites::NONE;
    out.next = *now;
    let mut inj = Injection::default();
    let mut efer = None;

    let sent = reply.writes.get(..head.count).unwrap_or_default();
    for (i, w) in sent.iter().enumerate() {
        let write = *w;
        if write.reserved != 0 {
            let at = core::mem::offset_of!(ExitReply, writes) + i * size_of::<VmcsWrite>() + 4;
            return Err(reserved_at(at, write.reserved.into()));
        }
        let field =
            Field::from_raw(write.field).ok_or(BatchError::UnknownField { raw: write.field })?;
        let mut value = write.value;
        if !field.vmm_writable() {
            return Err(BatchError::FieldNotWritable { field: write.field });
        }
        if value > field.width().max_value() {
            return Err(BatchError::ValueTooWide { field: write.field, value });
        }
        if field == Field::ProcBasedControls && flags.contains(ReplyFlags::REQUEST_INTERRUPT_WINDOW)
        {
            value |= u64::from(proc::INTERRUPT_WINDOW_EXITING);
        }
        match field.class() {
            FieldClass::Control => {
                check_control_write(field, value, caps, policy, &mut out.next, &mut inj)?
            }
            FieldClass::GuestState => {
                check_guest_write(field, value, caps, &mut out.next, &mut efer)?
            }
            // Already refused above; repeated so a new class cannot slip through.
            FieldClass::ControlPointer | FieldClass::HostState | FieldClass::ReadOnly => {
                return Err(BatchError::FieldNotWritable { field: write.field })
            }
        }
        out.timer.note(field, value);
        out.push(field, value)?;
    }

    if flags.contains(ReplyFlags::REQUEST_INTERRUPT_WINDOW)
        && !out.writes_field(Field::ProcBasedControls)
    {
        let value = now.controls.proc | proc::INTERRUPT_WINDOW_EXITING;
        out.next.controls.proc =
            check_control(Field::ProcBasedControls, value.into(), caps.procbased, policy.proc)?;
        out.push(Field::ProcBasedControls, value.into())?;
    }
    if head.gpr_mask & (1 << Gprs::RSP) != 0 {
        out.push(Field::GuestRsp, reply.gprs.rsp())?;
    }
    if flags.contains(ReplyFlags::ADVANCE_RIP) {
        advance_rip(out, now, head.advance_len)?;
    }
    if flags.contains(ReplyFlags::INJECT_EVENT) {
        let event = head.injection;
        let kind = event.event_type();
        if !event.is_valid() {
            return Err(BatchError::BadInjection { info: event.raw() });
        }
        out.push(Field::EntryInterruptionInfo, event.raw().into())?;
        inj.info = Some(event.raw());
        if event.delivers_error_code() {
            out.push(Field::EntryExceptionErrorCode, head.injection_error.into())?;
            inj.error = Some(head.injection_error);
        }
        if kind.is_some_and(EventType::uses_instruction_length) {
            out.push(Field::EntryInstructionLength, head.injection_len.into())?;
            inj.len = Some(head.injection_len);
        }
        // The fault address is read only with its flag (without it, it is not part of
        // the reply, as writes past the count are not); the header refused the flag
        // without an injection.
        if flags.contains(ReplyFlags::PAGE_FAULT_ADDRESS) {
            out.page_fault = Some(InjectedPageFault::At(fault_address(reply, flags, event)?));
        } else if is_page_fault(event) {
            out.page_fault = Some(InjectedPageFault::Reflected);
        }
    }

    // A reply without VMCS writes changes only GPRs, RIP (past the instruction that
    // exited, dropping its interrupt shadow) and maybe the interrupt window: the state
    // the CPU exited with stays as valid as it was, so only an injection is checked.
    if head.count != 0 {
        check_control_dependencies(&out.next.controls)?;
        check_entry_state(caps, &out.next, efer)?;
    }
    if let Some(info) = inj.info {
        check_injection(EventInjection::from_raw(info), inj, caps, &out.next)?;
    }
    Ok(())
}

/// ADVANCE_RIP: skip the exiting instruction (`len` bytes, or the exit's instruction
/// length where `len` is 0), as retiring it would, including the end of an STI or MOV SS
/// interrupt shadow (unless the VMM set interruptibility itself).
fn advance_rip(out: &mut ValidatedBatch, now: &VcpuState, len: u16) -> Result<(), BatchError> {
    let len = if len != 0 { u32::from(len) } else { now.exit_instruction_len };
    let mut rip = now.rip.wrapping_add(len.into());
    if out.next.controls.entry & entry::IA32E_MODE_GUEST == 0 {
        rip &= u64::from(u32::MAX);
    }
    out.push(Field::GuestRip, rip)?;
    out.next.rip = rip;
    let shadow = BLOCKING_STI | BLOCKING_MOV_SS;
    // The shadow test first: it is rare, the search through the writes is not free.
    if now.interruptibility & shadow != 0 && !out.writes_field(Field::GuestInterruptibility) {
        let value = now.interruptibility & !shadow;
        out.push(Field::GuestInterruptibility, value.into())?;
        out.next.interruptibility = value;
    }
    Ok(())
}

/// Capability MSRs first (the CPU cannot do it), then kernel policy (it must not).
fn check_control(field: Field, value: u64, msr: CtlMsr, pol: CtlPolicy) -> Result<u32, BatchError> {
    let raw = field as u32;
    let v = u32::try_from(value).map_err(|_| BatchError::ValueTooWide { field: raw, value })?;
    let cpu = (v & !msr.may_be_one) | (msr.must_be_one & !v);
    if cpu != 0 {
        return Err(BatchError::ControlBitsRejected { field: raw, value, bits: cpu.into() });
    }
    let policy = (pol.forced & !v) | (v & !(pol.forced | pol.vmm | msr.must_be_one));
    if policy != 0 {
        return Err(BatchError::ControlPolicy { field: raw, value, bits: policy.into() });
    }
    Ok(v)
}

fn check_control_write(
    field: Field,
    value: u64,
    caps: &VmxCaps,
    policy: &Policy,
    next: &mut VcpuState,
    inj: &mut Injection,
) -> Result<(), BatchError> {
    let raw = field as u32;
    let c = &mut next.controls;
    match field {
        Field::PinBasedControls => c.pin = check_control(field, value, caps.pinbased, policy.pin)?,
        Field::ProcBasedControls => {
            c.proc = check_control(field, value, caps.procbased, policy.proc)?
        }
        Field::SecondaryProcBasedControls => {
            c.proc2 = check_control(field, value, caps.procbased2, policy.proc2)?
        }
        Field::ExitControls => c.exit = check_control(field, value, caps.exit, policy.exit)?,
        Field::EntryControls => c.entry = check_control(field, value, caps.entry, policy.entry)?,
        // Their activation bits are never available, so only "nothing" is a valid value.
        Field::TertiaryProcBasedControls | Field::SecondaryExitControls if value != 0 => {
            return Err(BatchError::ControlPolicy { field: raw, value, bits: value });
        }
        Field::Cr3TargetCount if value > u64::from(caps.cr3_target_count()) => {
            return Err(BatchError::ControlBitsRejected { field: raw, value, bits: value });
        }
        Field::ExceptionBitmap
            if value & u64::from(ALWAYS_INTERCEPTED_EXCEPTIONS)
                != u64::from(ALWAYS_INTERCEPTED_EXCEPTIONS) =>
        {
            return Err(BatchError::Liveness { field: raw, value });
        }
        Field::TprThreshold if value & TPR_THRESHOLD_RESERVED != 0 => {
            let bits = value & TPR_THRESHOLD_RESERVED;
            return Err(BatchError::ControlBitsRejected { field: raw, value, bits });
        }
        // The width check made these 32-bit.
        Field::EntryInterruptionInfo => inj.info = Some(value as u32),
        Field::EntryExceptionErrorCode => inj.error = Some(value as u32),
        Field::EntryInstructionLength => inj.len = Some(value as u32),
        _ => {}
    }
    Ok(())
}

fn check_guest_write(
    field: Field,
    value: u64,
    caps: &VmxCaps,
    next: &mut VcpuState,
    efer: &mut Option<u64>,
) -> Result<(), BatchError> {
    let invalid = Err(BatchError::InvalidGuestState { field: field as u32 });
    match field {
        Field::GuestCr0 => next.cr0 = value,
        Field::GuestCr4 => next.cr4 = value,
        Field::GuestRflags => next.rflags = value,
        Field::GuestRip => next.rip = value,
        Field::GuestInterruptibility => next.interruptibility = value as u32,
        Field::GuestActivityState if !activity::vmm_settable(value) => {
            return Err(BatchError::Liveness { field: field as u32, value })
        }
        Field::GuestActivityState if !caps.activity_state_supported(value) => return invalid,
        Field::GuestDr7 if value >> 32 != 0 => return invalid,
        Field::GuestPendingDebugExceptions if value & PENDING_DEBUG_RESERVED != 0 => {
            return invalid
        }
        Field::GuestEsAccessRights
        | Field::GuestCsAccessRights
        | Field::GuestSsAccessRights
        | Field::GuestDsAccessRights
        | Field::GuestFsAccessRights
        | Field::GuestGsAccessRights
        | Field::GuestLdtrAccessRights
        | Field::GuestTrAccessRights
            if value & AR_UNUSABLE == 0 && value & AR_RESERVED != 0 =>
        {
            return invalid
        }
        Field::GuestIa32Pat if !valid_pat(value) => return invalid,
        Field::GuestIa32Efer if value & !EFER_DEFINED != 0 => return invalid,
        Field::GuestIa32Efer => *efer = Some(value),
        _ => {}
    }
    Ok(())
}

/// Every PAT entry must name a memory type: UC, WC, WT, WP, WB or UC-.
fn valid_pat(pat: u64) -> bool {
    pat.to_le_bytes().iter().all(|&ty| matches!(ty, 0 | 1 | 4 | 5 | 6 | 7))
}

/// Control bits that are only valid together with another (SDM 27.2.1.1).
const DEPENDENCIES: [(Field, u32, Field, u32); 5] = [
    (Field::PinBasedControls, pin::VIRTUAL_NMIS, Field::PinBasedControls, pin::NMI_EXITING),
    (
        Field::ProcBasedControls,
        proc::NMI_WINDOW_EXITING,
        Field::PinBasedControls,
        pin::VIRTUAL_NMIS,
    ),
    (
        Field::SecondaryProcBasedControls,
        proc2::UNRESTRICTED_GUEST,
        Field::SecondaryProcBasedControls,
        proc2::ENABLE_EPT,
    ),
    (
        Field::SecondaryProcBasedControls,
        proc2::MODE_BASED_EPT_EXECUTE,
        Field::SecondaryProcBasedControls,
        proc2::ENABLE_EPT,
    ),
    (
        Field::ExitControls,
        exit::SAVE_PREEMPTION_TIMER,
        Field::PinBasedControls,
        pin::PREEMPTION_TIMER,
    ),
];

const fn control(c: &Controls, field: Field) -> u32 {
    match field {
        Field::PinBasedControls => c.pin,
        Field::ProcBasedControls => c.proc,
        Field::SecondaryProcBasedControls => c.proc2,
        Field::ExitControls => c.exit,
        Field::EntryControls => c.entry,
        _ => 0,
    }
}

fn check_control_dependencies(c: &Controls) -> Result<(), BatchError> {
    for (field, bit, needs_field, needs_bit) in DEPENDENCIES {
        let value = control(c, field);
        if value & bit != 0 && control(c, needs_field) & needs_bit == 0 {
            let (field, value, bits) = (field as u32, value.into(), bit.into());
            return Err(BatchError::ControlBitsRejected { field, value, bits });
        }
    }
    Ok(())
}

const fn unrestricted_guest(c: &Controls) -> bool {
    c.proc & proc::ACTIVATE_SECONDARY_CONTROLS != 0 && c.proc2 & proc2::UNRESTRICTED_GUEST != 0
}

/// The guest-state checks of SDM 27.3.1 that depend on the fields the kernel tracks.
fn check_entry_state(caps: &VmxCaps, s: &VcpuState, efer: Option<u64>) -> Result<(), BatchError> {
    let fail = |field: Field| Err(BatchError::InvalidGuestState { field: field as u32 });
    let unrestricted = unrestricted_guest(&s.controls);
    let ia32e = s.controls.entry & entry::IA32E_MODE_GUEST != 0;
    if caps.cr0_violations(s.cr0, unrestricted) != 0
        || (s.cr0 & CR0_PG != 0 && s.cr0 & CR0_PE == 0)
        || (ia32e && s.cr0 & CR0_PG == 0)
    {
        return fail(Field::GuestCr0);
    }
    if caps.cr4_violations(s.cr4) != 0
        || (ia32e && s.cr4 & CR4_PAE == 0)
        || (!ia32e && s.cr4 & CR4_PCIDE != 0)
    {
        return fail(Field::GuestCr4);
    }
    if let Some(efer) = efer {
        let loads_efer = s.controls.entry & entry::LOAD_EFER != 0;
        let lma = efer & EFER_LMA != 0;
        if loads_efer && (lma != ia32e || (s.cr0 & CR0_PG != 0 && (efer & EFER_LME != 0) != lma)) {
            return fail(Field::GuestIa32Efer);
        }
    }
    if s.rflags & RFLAGS_RESERVED != 0
        || s.rflags & RFLAGS_FIXED1 == 0
        || ((ia32e || s.cr0 & CR0_PE == 0) && s.rflags & RFLAGS_VM != 0)
    {
        return fail(Field::GuestRflags);
    }
    // Outside IA-32e mode RIP is 32 bits; in it, canonicality depends on CS.L and the
    // paging mode, which the kernel does not track, so VM entry is left to judge.
    if !ia32e && s.rip >> 32 != 0 {
        return fail(Field::GuestRip);
    }
    let blocking = s.interruptibility;
    if u64::from(blocking) & INTERRUPTIBILITY_RESERVED != 0
        || blocking & (BLOCKING_STI | BLOCKING_MOV_SS) == BLOCKING_STI | BLOCKING_MOV_SS
        || (blocking & BLOCKING_STI != 0 && s.rflags & RFLAGS_IF == 0)
        || (blocking & ENCLAVE_INTERRUPTION != 0 && blocking & BLOCKING_MOV_SS != 0)
    {
        return fail(Field::GuestInterruptibility);
    }
    Ok(())
}

/// The event-injection checks of SDM 27.2.1.3 and the guest-state checks that involve
/// the event (27.3.1.5).
fn check_injection(
    event: EventInjection,
    inj: Injection,
    caps: &VmxCaps,
    s: &VcpuState,
) -> Result<(), BatchError> {
    if !event.is_valid() {
        return Ok(());
    }
    let bad = Err(BatchError::BadInjection { info: event.raw() });
    let vector = event.vector();
    let Some(kind) = event.event_type() else { return bad };
    if event.raw() & EventInjection::RESERVED != 0 {
        return bad;
    }
    let vector_ok = match kind {
        EventType::Nmi => vector == 2,
        EventType::HardwareException => vector <= 31,
        EventType::Other => vector == 0 && caps.procbased.allows(proc::MONITOR_TRAP_FLAG),
        _ => true,
    };
    if !vector_ok {
        return bad;
    }
    // Only a hardware exception outside real mode pushes an error code, and (unless
    // IA32_VMX_BASIC bit 56 lifts it) exactly for the vectors that architecturally push
    // one. SDM revisions disagree on #CP (21), so it may go either way.
    let protected = !unrestricted_guest(&s.controls) || s.cr0 & CR0_PE != 0;
    let hardware = kind == EventType::HardwareException;
    let delivers = event.delivers_error_code();
    if delivers && !(hardware && protected) {
        return bad;
    }
    let by_vector = hardware && protected && !caps.inject_any_error_code && vector != 21;
    if by_vector && delivers != exception_has_error_code(vector) {
        return bad;
    }
    if event.delivers_error_code() {
        // The error code comes from this batch; a stale VMCS value is unknowable here.
        match inj.error {
            Some(code) if code >> 16 == 0 => {}
            _ => return bad,
        }
    }
    if kind.uses_instruction_length() {
        match inj.len {
            Some(1..=15) => {}
            Some(0) if caps.zero_length_injection() => {}
            _ => return bad,
        }
    }
    let blocking = s.interruptibility;
    let invalid = |field: Field| Err(BatchError::InvalidGuestState { field: field as u32 });
    match kind {
        EventType::ExternalInterrupt if s.rflags & RFLAGS_IF == 0 => invalid(Field::GuestRflags),
        EventType::ExternalInterrupt if blocking & (BLOCKING_STI | BLOCKING_MOV_SS) != 0 => {
            invalid(Field::GuestInterruptibility)
        }
        EventType::Nmi if blocking & BLOCKING_MOV_SS != 0 => invalid(Field::GuestInterruptibility),
        EventType::Nmi
            if s.controls.pin & pin::VIRTUAL_NMIS != 0 && blocking & BLOCKING_NMI != 0 =>
        {
            invalid(Field::GuestInterruptibility)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed test is a panic")]
mod tests {
    use super::{decode_reply, Policy, VcpuState};
    use crate::vmx::caps::{VmxCaps, VmxMsrs};
    use protocols::vmcs::ctl::{entry, exit, pin, proc, proc2};
    use protocols::vmcs::{activity, Field, FieldClass, ALWAYS_INTERCEPTED_EXCEPTIONS};
    use protocols::vmexit::{
        BatchError, EventInjection, EventType, ExitReply, Gprs, ReplyFlags, MAX_WRITES,
    };

    // A Skylake-like CPU with TRUE_* controls, EPT, VPID and unrestricted guest.
    const MSRS: VmxMsrs = crate::vmx::samples::SKYLAKE;
    const CR0_LONG: u64 = 0x8000_0031;
    const CR4_LONG: u64 = 0x2020;

    fn caps() -> VmxCaps {
        VmxCaps::from_all(&MSRS)
    }

    fn policy() -> Policy {
        Policy::new(&caps(), true, true)
    }

    /// A 64-bit guest just after a 2-byte instruction exited.
    fn state() -> VcpuState {
        let mut controls = policy().initial_controls(&caps());
        controls.entry |= entry::IA32E_MODE_GUEST;
        VcpuState {
            controls,
            cr0: CR0_LONG,
            cr4: CR4_LONG,
            rflags: 0x202,
            rip: 0x1000,
            interruptibility: 0,
            exit_instruction_len: 2,
        }
    }

    fn decode(reply: &ExitReply) -> Result<super::ValidatedBatch, BatchError> {
        decode_reply(reply, &caps(), &policy(), &state())
    }

    fn one_write(field: Field, value: u64) -> Result<super::ValidatedBatch, BatchError> {
        let mut r = ExitReply::new();
        r.write(field, value).unwrap();
        decode(&r)
    }

    fn err_field(field: Field) -> BatchError {
        BatchError::InvalidGuestState { field: field as u32 }
    }

    #[test]
    fn cpuid_style_reply_becomes_plain_writes() {
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::ADVANCE_RIP;
        for (reg, v) in [(Gprs::RAX, 1), (Gprs::RBX, 2), (Gprs::RCX, 3), (Gprs::RDX, 4)] {
            r.set_gpr(reg, v).unwrap();
        }
        let b = decode(&r).unwrap();
        assert_eq!(b.writes(), [(Field::GuestRip, 0x1002)]);
        assert_eq!(b.gpr_mask, 0b1111);
        let mut loaded = Gprs::default();
        b.load_gprs(&r.gprs, &mut loaded);
        assert_eq!(loaded.regs[..4], [1, 3, 4, 2]);
        assert!(!b.stop);
        assert_eq!(b.next.rip, 0x1002);
        // RDMSR's answer: RAX and RDX only; the others keep their values.
        let mut r = ExitReply::new();
        r.set_gpr(Gprs::RAX, 7).unwrap();
        r.set_gpr(Gprs::RDX, 8).unwrap();
        let mut loaded = Gprs { regs: [9; 16] };
        decode(&r).unwrap().load_gprs(&r.gprs, &mut loaded);
        assert_eq!(loaded.regs[..4], [7, 9, 8, 9]);
    }

    #[test]
    fn no_host_pointer_or_read_only_field_is_ever_accepted() {
        let values = [0, 1, 0x1000, 0xffff, u64::from(u32::MAX), u64::MAX];
        let mut refused = 0;
        for &field in Field::ALL {
            for value in values {
                let result = one_write(field, value);
                match field.class() {
                    FieldClass::HostState | FieldClass::ControlPointer | FieldClass::ReadOnly => {
                        assert_eq!(
                            result,
                            Err(BatchError::FieldNotWritable { field: field as u32 }),
                            "{field:?} = {value:#x}"
                        );
                        refused += 1;
                    }
                    FieldClass::Control | FieldClass::GuestState => assert!(
                        !matches!(result, Err(BatchError::FieldNotWritable { .. })),
                        "{field:?}"
                    ),
                }
            }
        }
        assert!(refused > 60 * values.len());
    }

    #[test]
    fn unknown_and_too_wide_values_are_refused() {
        let mut r = ExitReply::new();
        for raw in [0x1234, Field::EptPointer as u32 | 1, u32::MAX, 0x6c1e] {
            r.count = 0;
            r.write_raw(raw, 0).unwrap();
            assert_eq!(decode(&r), Err(BatchError::UnknownField { raw }));
        }
        assert_eq!(
            one_write(Field::GuestEsSelector, 0x1_0000),
            Err(BatchError::ValueTooWide { field: 0x0800, value: 0x1_0000 })
        );
        assert_eq!(
            one_write(Field::ExceptionBitmap, 1 << 32),
            Err(BatchError::ValueTooWide { field: 0x4004, value: 1 << 32 })
        );
        assert!(one_write(Field::GuestEsSelector, 0xffff).is_ok());
    }

    #[test]
    fn a_new_vcpu_starts_with_the_required_and_the_forced_controls() {
        let caps = caps();
        let mut p = policy();
        // A policy that also forces bits the CPU requires keeps them.
        p.pin.forced |= caps.pinbased.must_be_one;
        p.proc.forced |= caps.procbased.must_be_one;
        p.proc2.forced |= caps.procbased2.must_be_one | 1;
        p.exit.forced |= caps.exit.must_be_one;
        p.entry.forced |= caps.entry.must_be_one;
        let c = p.initial_controls(&caps);
        assert_eq!(c.pin, caps.pinbased.must_be_one | p.pin.forced);
        assert_eq!(c.proc, caps.procbased.must_be_one | p.proc.forced);
        assert_eq!(c.proc2, caps.procbased2.must_be_one | p.proc2.forced);
        assert_eq!(c.exit, caps.exit.must_be_one | p.exit.forced);
        assert_eq!(c.entry, caps.entry.must_be_one | p.entry.forced);
        assert_ne!(c.pin & caps.pinbased.must_be_one, 0, "the sample CPU requires some");
    }

    #[test]
    fn the_header_refuses_what_does_not_belong_and_names_where() {
        // Sixteen writes are allowed in number (here refused for naming one field twice).
        let mut r = ExitReply::new();
        for _ in 0..MAX_WRITES {
            r.write(Field::ExceptionBitmap, ALWAYS_INTERCEPTED_EXCEPTIONS.into()).unwrap_or(());
        }
        let duplicate = BatchError::DuplicateField { field: Field::ExceptionBitmap as u32 };
        assert_eq!(decode(&r), Err(duplicate));
        // Any event word, or the fault address's flag, without INJECT_EVENT.
        for (error, len) in [(5, 0), (0, 3), (3, 3)] {
            let mut r = ExitReply::new();
            (r.injection_error, r.injection_len) = (error, len);
            assert!(matches!(decode(&r), Err(BatchError::BadInjection { .. })), "{error} {len}");
        }
        // Words that would cancel if they were combined by anything but OR.
        let mut r = ExitReply::new();
        (r.injection, r.injection_error) = (EventInjection::from_raw(5), 5);
        assert!(matches!(decode(&r), Err(BatchError::BadInjection { .. })));
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::PAGE_FAULT_ADDRESS;
        r.injection_len = ReplyFlags::PAGE_FAULT_ADDRESS.bits();
        assert!(matches!(decode(&r), Err(BatchError::BadInjection { .. })));
        // A reserved word names its own offset.
        let mut r = ExitReply::new();
        for field in [Field::GuestRip, Field::GuestRflags, Field::GuestRsp] {
            r.write(field, 0x2000).unwrap();
        }
        r.writes[2].reserved = 1;
        let at = core::mem::offset_of!(ExitReply, writes)
            + 2 * size_of::<protocols::vmexit::VmcsWrite>()
            + 4;
        assert_eq!(decode(&r), Err(super::reserved_at(at, 1)));
        assert_eq!(super::reserved_at(at, 1), BatchError::ReservedBits { word: 24, bits: 1 << 32 });
    }

    #[test]
    fn only_an_injected_hardware_page_fault_is_reflected_with_its_address() {
        use super::InjectedPageFault;
        let inject = |event: EventInjection| {
            let mut r = ExitReply::new();
            r.inject(event, 0, 2);
            decode(&r).map(|b| b.page_fault)
        };
        assert_eq!(inject(EventInjection::exception(14)), Ok(Some(InjectedPageFault::Reflected)));
        assert_eq!(inject(EventInjection::exception(13)), Ok(None));
        let int14 = EventInjection::new(14, EventType::SoftwareException, false);
        assert!(!matches!(inject(int14), Ok(Some(_))), "a software INT 14 is no page fault");
    }

    #[test]
    fn asking_for_the_window_again_keeps_it_open() {
        let mut now = state();
        now.controls.proc |= proc::INTERRUPT_WINDOW_EXITING;
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::REQUEST_INTERRUPT_WINDOW;
        let b = decode_reply(&r, &caps(), &policy(), &now).unwrap();
        assert_eq!(b.writes(), [(Field::ProcBasedControls, now.controls.proc.into())]);
    }

    #[test]
    fn reserved_rflags_and_pending_debug_bits_are_refused_defined_ones_kept() {
        for bit in [3, 5, 15, 22, 40] {
            let e = one_write(Field::GuestRflags, 0x202 | 1 << bit);
            assert!(e.is_err(), "RFLAGS bit {bit} is reserved");
        }
        assert!(one_write(Field::GuestRflags, 0x202 | 1 << 21 | 1 << 16 | 1 << 11).is_ok());
        let pending = Field::GuestPendingDebugExceptions;
        for bit in [0, 3, 12, 14, 16] {
            assert!(one_write(pending, 1 << bit).is_ok(), "pending-debug bit {bit} is defined");
        }
        for bit in [4, 13, 15, 17] {
            assert!(one_write(pending, 1 << bit).is_err(), "pending-debug bit {bit} is reserved");
        }
    }

    #[test]
    fn injections_the_cpu_and_the_guest_allow_are_accepted() {
        let inject = |event: EventInjection, len: u32| {
            let mut r = ExitReply::new();
            r.inject(event, 0, len);
            decode(&r)
        };
        // A software interrupt of length 0 only where the CPU allows it.
        let int80 = EventInjection::new(0x80, EventType::SoftwareInterrupt, false);
        assert!(!caps().zero_length_injection());
        assert!(inject(int80, 0).is_err());
        let mut zero_ok = caps();
        zero_ok.misc |= 1 << 30;
        assert!(zero_ok.zero_length_injection());
        let mut r = ExitReply::new();
        r.inject(int80, 0, 0);
        assert!(decode_reply(&r, &zero_ok, &policy(), &state()).is_ok());
        // An NMI to a guest blocking nothing; one blocked by an NMI only with virtual NMIs.
        let nmi = EventInjection::new(2, EventType::Nmi, false);
        assert!(inject(nmi, 0).is_ok());
        let mut blocked = state();
        blocked.interruptibility = super::BLOCKING_NMI;
        blocked.controls.pin &= !pin::VIRTUAL_NMIS;
        let mut r = ExitReply::new();
        r.inject(nmi, 0, 0);
        assert!(decode_reply(&r, &caps(), &policy(), &blocked).is_ok());
        // With virtual NMIs, an NMI to a guest that blocks none is accepted too.
        let mut virtual_nmis = state();
        virtual_nmis.controls.pin |= pin::VIRTUAL_NMIS | pin::NMI_EXITING;
        assert!(decode_reply(&r, &caps(), &policy(), &virtual_nmis).is_ok());
        // The TPR threshold's four bits, and not a fifth.
        assert!(one_write(Field::TprThreshold, 0xf).is_ok());
        assert!(one_write(Field::TprThreshold, 0x10).is_err());
    }

    #[test]
    fn too_many_writes_are_refused() {
        let mut r = ExitReply::new();
        for _ in 0..MAX_WRITES {
            r.write(Field::ExceptionBitmap, 0).unwrap_or(());
        }
        r.count = MAX_WRITES as u32 + 1;
        assert_eq!(decode(&r), Err(BatchError::TooManyWrites { count: 17 }));
        r.count = u32::MAX;
        assert_eq!(decode(&r), Err(BatchError::TooManyWrites { count: u32::MAX }));
    }

    #[test]
    fn controls_are_checked_against_the_capability_msrs() {
        let base = state().controls;
        // Pin bits 1, 2, 4 are required by this CPU; bit 8 does not exist.
        let no_default1 = u64::from(pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING);
        assert_eq!(
            one_write(Field::PinBasedControls, no_default1),
            Err(BatchError::ControlBitsRejected { field: 0x4000, value: no_default1, bits: 0x16 })
        );
        let reserved = u64::from(base.pin | 1 << 8);
        assert_eq!(
            one_write(Field::PinBasedControls, reserved),
            Err(BatchError::ControlBitsRejected { field: 0x4000, value: reserved, bits: 1 << 8 })
        );
        // This CPU has no monitor trap flag and no "conceal VMX from PT".
        let mtf = u64::from(base.proc | proc::MONITOR_TRAP_FLAG);
        assert!(matches!(
            one_write(Field::ProcBasedControls, mtf),
            Err(BatchError::ControlBitsRejected { bits, .. }) if bits == proc::MONITOR_TRAP_FLAG.into()
        ));
        let pt = u64::from(base.proc2 | proc2::CONCEAL_VMX_FROM_PT);
        assert!(matches!(
            one_write(Field::SecondaryProcBasedControls, pt),
            Err(BatchError::ControlBitsRejected { .. })
        ));
    }

    #[test]
    fn controls_keep_kernel_forced_bits_and_refuse_forbidden_ones() {
        let base = state().controls;
        let no_ext = u64::from(base.pin & !pin::EXTERNAL_INTERRUPT_EXITING);
        assert_eq!(
            one_write(Field::PinBasedControls, no_ext),
            Err(BatchError::ControlPolicy { field: 0x4000, value: no_ext, bits: 1 })
        );
        for forced in [proc::USE_IO_BITMAPS, proc::USE_MSR_BITMAPS, proc::CR8_LOAD_EXITING] {
            let v = u64::from(base.proc & !forced);
            assert!(matches!(
                one_write(Field::ProcBasedControls, v),
                Err(BatchError::ControlPolicy { bits, .. }) if bits == forced.into()
            ));
        }
        let v = u64::from(base.exit & !exit::HOST_ADDRESS_SPACE_SIZE);
        assert!(matches!(one_write(Field::ExitControls, v), Err(BatchError::ControlPolicy { .. })));
        let v = u64::from(base.proc2 & !proc2::ENABLE_EPT);
        assert!(matches!(
            one_write(Field::SecondaryProcBasedControls, v),
            Err(BatchError::ControlPolicy { .. })
        ));
        for never in [proc2::ENABLE_VMFUNC, proc2::VMCS_SHADOWING, proc2::ENABLE_PML] {
            let v = u64::from(base.proc2 | never);
            assert_eq!(
                one_write(Field::SecondaryProcBasedControls, v),
                Err(BatchError::ControlPolicy { field: 0x401e, value: v, bits: never.into() }),
                "{never:#x}"
            );
        }
        let v = u64::from(base.exit | exit::ACK_INTERRUPT_ON_EXIT);
        assert!(matches!(one_write(Field::ExitControls, v), Err(BatchError::ControlPolicy { .. })));
        let v = u64::from(base.entry | entry::ENTRY_TO_SMM);
        assert!(one_write(Field::EntryControls, v).is_err());
        assert!(matches!(
            one_write(Field::TertiaryProcBasedControls, 1),
            Err(BatchError::ControlPolicy { .. })
        ));
        assert!(one_write(Field::TertiaryProcBasedControls, 0).is_ok());
    }

    #[test]
    fn accepted_controls_are_written_and_tracked() {
        let base = state().controls;
        let mut r = ExitReply::new();
        let p = base.proc | proc::HLT_EXITING | proc::RDTSC_EXITING;
        let e = base.entry | entry::LOAD_EFER | entry::LOAD_PAT;
        r.write(Field::ProcBasedControls, p.into()).unwrap();
        r.write(Field::EntryControls, e.into()).unwrap();
        r.write(Field::ExceptionBitmap, (1 << 14 | ALWAYS_INTERCEPTED_EXCEPTIONS).into()).unwrap();
        r.write(Field::Cr3TargetCount, 4).unwrap();
        let b = decode(&r).unwrap();
        assert_eq!(b.writes().len(), 4);
        assert_eq!(b.writes()[0], (Field::ProcBasedControls, p.into()));
        assert_eq!(b.next.controls.proc, p);
        assert_eq!(b.next.controls.entry, e);
        assert!(matches!(
            one_write(Field::Cr3TargetCount, 5),
            Err(BatchError::ControlBitsRejected { .. })
        ));
        assert!(matches!(
            one_write(Field::TprThreshold, 0x10),
            Err(BatchError::ControlBitsRejected { bits: 0x10, .. })
        ));
    }

    #[test]
    fn ept_follows_the_guest_space() {
        let caps = caps();
        let no_space = Policy::new(&caps, false, false);
        let mut now = state();
        now.controls = no_space.initial_controls(&caps);
        now.controls.entry |= entry::IA32E_MODE_GUEST;
        assert_eq!(now.controls.proc2 & proc2::ENABLE_EPT, 0);
        let mut r = ExitReply::new();
        let v = now.controls.proc2 | proc2::ENABLE_EPT;
        r.write(Field::SecondaryProcBasedControls, v.into()).unwrap();
        assert!(matches!(
            decode_reply(&r, &caps, &no_space, &now),
            Err(BatchError::ControlPolicy { bits: 2, .. })
        ));
        assert_eq!(state().controls.proc2 & proc2::ENABLE_EPT, proc2::ENABLE_EPT);
        assert_eq!(policy().unsupported(&caps), None);
        let no_ept = VmxCaps::from_all(&VmxMsrs { procbased2: 0x0000_00fd << 32, ..MSRS });
        assert_eq!(
            policy().unsupported(&no_ept),
            Some((Field::SecondaryProcBasedControls, proc2::ENABLE_EPT))
        );
    }

    #[test]
    fn control_dependencies_are_enforced() {
        let base = state().controls;
        let nmi_window = base.proc | proc::NMI_WINDOW_EXITING;
        assert!(matches!(
            one_write(Field::ProcBasedControls, nmi_window.into()),
            Err(BatchError::ControlBitsRejected { field: 0x4002, .. })
        ));
        let mut r = ExitReply::new();
        r.write(Field::ProcBasedControls, nmi_window.into()).unwrap();
        r.write(Field::PinBasedControls, (base.pin | pin::VIRTUAL_NMIS).into()).unwrap();
        assert!(decode(&r).is_ok());
        let timer = base.exit | exit::SAVE_PREEMPTION_TIMER;
        assert!(one_write(Field::ExitControls, timer.into()).is_err());
    }

    #[test]
    fn cr0_and_cr4_fixed_bits_with_unrestricted_guest() {
        assert_eq!(one_write(Field::GuestCr0, 0x30), Err(err_field(Field::GuestCr0)));
        assert_eq!(one_write(Field::GuestCr0, CR0_LONG & !0x20), Err(err_field(Field::GuestCr0)));
        assert_eq!(one_write(Field::GuestCr0, CR0_LONG | 1 << 32), Err(err_field(Field::GuestCr0)));
        // Real mode: unrestricted guest, not IA-32e, PE = PG = 0, NE still set.
        let base = state().controls;
        let real_mode = |cr0: u64| {
            let mut r = ExitReply::new();
            let p2 = base.proc2 | proc2::UNRESTRICTED_GUEST;
            r.write(Field::SecondaryProcBasedControls, p2.into()).unwrap();
            r.write(Field::EntryControls, (base.entry & !entry::IA32E_MODE_GUEST).into()).unwrap();
            r.write(Field::GuestCr0, cr0).unwrap();
            r.write(Field::GuestCr4, 0x2000).unwrap();
            decode(&r)
        };
        assert!(real_mode(0x30).is_ok());
        assert_eq!(real_mode(0x10), Err(err_field(Field::GuestCr0)), "NE is still fixed");
        assert_eq!(real_mode(0x8000_0030), Err(err_field(Field::GuestCr0)), "PG needs PE");
        assert_eq!(one_write(Field::GuestCr4, 0x20), Err(err_field(Field::GuestCr4)));
        assert_eq!(one_write(Field::GuestCr4, CR4_LONG | 1 << 12), Err(err_field(Field::GuestCr4)));
        assert_eq!(one_write(Field::GuestCr4, 0x2000), Err(err_field(Field::GuestCr4)), "no PAE");
        assert!(one_write(Field::GuestCr4, CR4_LONG | 1 << 17).is_ok(), "PCIDE in long mode");
    }

    #[test]
    fn guest_state_values_are_checked() {
        let cases = [
            (Field::GuestRflags, 0x200),
            (Field::GuestRflags, 0x202 | 1 << 22),
            (Field::GuestRflags, 0x202 | 1 << 17),
            (Field::GuestDr7, 1 << 32 | 0x400),
            (Field::GuestPendingDebugExceptions, 1 << 5),
            (Field::GuestCsAccessRights, 0xa09b | 1 << 8),
            (Field::GuestIa32Pat, 0x0007_0406_0007_0402),
            (Field::GuestIa32Efer, 0xd01 | 1 << 12),
            (Field::GuestInterruptibility, 1 << 5),
            (Field::GuestInterruptibility, 3),
            (Field::GuestInterruptibility, 1 << 2),
            (Field::GuestInterruptibility, 0x12),
        ];
        for (field, value) in cases {
            assert_eq!(one_write(field, value), Err(err_field(field)), "{field:?} = {value:#x}");
        }
        let fine = [
            (Field::GuestRflags, 0x2),
            (Field::GuestActivityState, 1),
            (Field::GuestDr7, 0x400),
            (Field::GuestPendingDebugExceptions, 1 << 14),
            (Field::GuestCsAccessRights, 0xa09b),
            (Field::GuestLdtrAccessRights, 0x1_0f00),
            (Field::GuestIa32Pat, 0x0007_0406_0007_0406),
            (Field::GuestIa32Efer, 0x500),
            (Field::GuestInterruptibility, 1),
        ];
        for (field, value) in fine {
            assert!(one_write(field, value).is_ok(), "{field:?} = {value:#x}");
        }
        // STI blocking needs IF = 1.
        let mut r = ExitReply::new();
        r.write(Field::GuestRflags, 0x2).unwrap();
        r.write(Field::GuestInterruptibility, 1).unwrap();
        assert_eq!(decode(&r), Err(err_field(Field::GuestInterruptibility)));
        // With "load EFER", EFER.LMA must match IA-32e mode.
        let mut r = ExitReply::new();
        let e = state().controls.entry | entry::LOAD_EFER;
        r.write(Field::EntryControls, e.into()).unwrap();
        r.write(Field::GuestIa32Efer, 0x100).unwrap();
        assert_eq!(decode(&r), Err(err_field(Field::GuestIa32Efer)));
        r.count = 1;
        r.write(Field::GuestIa32Efer, 0x400).unwrap();
        assert_eq!(decode(&r), Err(err_field(Field::GuestIa32Efer)), "LME != LMA with paging");
        r.count = 1;
        r.write(Field::GuestIa32Efer, 0xd01).unwrap();
        assert!(decode(&r).is_ok());
        // Outside IA-32e mode RIP has 32 bits.
        let mut r = ExitReply::new();
        r.write(Field::EntryControls, (state().controls.entry & !entry::IA32E_MODE_GUEST).into())
            .unwrap();
        r.write(Field::GuestCr4, 0x2000).unwrap();
        r.write(Field::GuestRip, 1 << 32).unwrap();
        assert_eq!(decode(&r), Err(err_field(Field::GuestRip)));
    }

    fn inject(
        event: EventInjection,
        error: u32,
        len: u32,
    ) -> Result<super::ValidatedBatch, BatchError> {
        let mut r = ExitReply::new();
        r.inject(event, error, len);
        decode(&r)
    }

    #[test]
    fn valid_injections_become_entry_field_writes() {
        let b = inject(EventInjection::exception(14), 0x2, 0).unwrap();
        assert_eq!(
            b.writes(),
            [(Field::EntryInterruptionInfo, 0x8000_0b0e), (Field::EntryExceptionErrorCode, 2)]
        );
        let int80 = EventInjection::new(0x80, EventType::SoftwareInterrupt, false);
        let b = inject(int80, 0, 2).unwrap();
        assert_eq!(
            b.writes(),
            [(Field::EntryInterruptionInfo, 0x8000_0480), (Field::EntryInstructionLength, 2)]
        );
        assert!(inject(EventInjection::nmi(), 0, 0).is_ok());
        assert!(inject(EventInjection::interrupt(0x30), 0, 0).is_ok());
    }

    #[test]
    fn invalid_injections_are_refused() {
        let bad = |e: EventInjection| BatchError::BadInjection { info: e.raw() };
        let cases = [
            (EventInjection::new(3, EventType::Nmi, false), 0, 0),
            (EventInjection::new(32, EventType::HardwareException, false), 0, 0),
            (EventInjection::from_raw(0x8000_0100), 0, 0),
            (EventInjection::new(13, EventType::HardwareException, false), 0, 0),
            (EventInjection::new(6, EventType::HardwareException, true), 0, 0),
            (EventInjection::exception(13), 0x1_0000, 0),
            (EventInjection::new(0x80, EventType::SoftwareInterrupt, false), 0, 0),
            (EventInjection::new(0x80, EventType::SoftwareInterrupt, false), 0, 16),
            (EventInjection::new(0, EventType::Other, false), 0, 0),
            (EventInjection::from_raw(0x8000_1020), 0, 0),
            (EventInjection::from_raw(0x20), 0, 0),
            (EventInjection::new(0x30, EventType::ExternalInterrupt, true), 0, 0),
        ];
        for (event, error, len) in cases {
            assert_eq!(inject(event, error, len), Err(bad(event)), "{:#x}", event.raw());
        }
        // An explicit write is checked the same way, and needs its error code alongside.
        let mut r = ExitReply::new();
        r.write(Field::EntryInterruptionInfo, EventInjection::exception(13).raw().into()).unwrap();
        assert!(matches!(decode(&r), Err(BatchError::BadInjection { .. })));
        r.write(Field::EntryExceptionErrorCode, 0).unwrap();
        assert!(decode(&r).is_ok());
        // IA32_VMX_BASIC bit 56 lifts the vector rule, not the type rule.
        let lax = VmxCaps::from_all(&VmxMsrs { basic: MSRS.basic | 1 << 56, ..MSRS });
        let lax_inject = |e: EventInjection| {
            let mut r = ExitReply::new();
            r.inject(e, 0, 0);
            decode_reply(&r, &lax, &policy(), &state())
        };
        assert!(lax_inject(EventInjection::new(6, EventType::HardwareException, true)).is_ok());
        assert!(lax_inject(EventInjection::new(13, EventType::HardwareException, false)).is_ok());
        assert!(lax_inject(EventInjection::new(0x30, EventType::ExternalInterrupt, true)).is_err());
    }

    #[test]
    fn real_mode_exceptions_push_no_error_code() {
        let base = state().controls;
        let mut r = ExitReply::new();
        let p2 = base.proc2 | proc2::UNRESTRICTED_GUEST;
        r.write(Field::SecondaryProcBasedControls, p2.into()).unwrap();
        r.write(Field::EntryControls, (base.entry & !entry::IA32E_MODE_GUEST).into()).unwrap();
        r.write(Field::GuestCr0, 0x30).unwrap();
        r.write(Field::GuestCr4, 0x2000).unwrap();
        let gp = EventInjection::new(13, EventType::HardwareException, false);
        r.inject(gp, 0, 0);
        assert!(decode(&r).is_ok());
        r.inject(EventInjection::exception(13), 0, 0);
        assert!(matches!(decode(&r), Err(BatchError::BadInjection { .. })));
    }

    #[test]
    fn injection_respects_guest_interruptibility() {
        let caps = caps();
        let pol = policy();
        let mut now = state();
        let mut r = ExitReply::new();
        r.inject(EventInjection::interrupt(0x30), 0, 0);
        now.rflags = 0x2;
        assert_eq!(decode_reply(&r, &caps, &pol, &now), Err(err_field(Field::GuestRflags)));
        now.rflags = 0x202;
        now.interruptibility = 1;
        assert_eq!(
            decode_reply(&r, &caps, &pol, &now),
            Err(err_field(Field::GuestInterruptibility))
        );
        // Retiring the instruction (STI; HLT) ends the shadow, so the interrupt may go in.
        r.flags |= ReplyFlags::ADVANCE_RIP;
        let b = decode_reply(&r, &caps, &pol, &now).unwrap();
        assert!(b.writes().contains(&(Field::GuestInterruptibility, 0)));
        assert_eq!(b.next.interruptibility, 0);
        // NMI: MOV SS blocking, or NMI blocking with virtual NMIs, forbid it.
        let mut r = ExitReply::new();
        r.inject(EventInjection::nmi(), 0, 0);
        now.interruptibility = 2;
        assert_eq!(
            decode_reply(&r, &caps, &pol, &now),
            Err(err_field(Field::GuestInterruptibility))
        );
        now.interruptibility = 8;
        assert!(decode_reply(&r, &caps, &pol, &now).is_ok());
        now.controls.pin |= pin::VIRTUAL_NMIS;
        assert!(decode_reply(&r, &caps, &pol, &now).is_err());
    }

    #[test]
    fn duplicate_writes_and_conflicting_flags_are_refused() {
        let dup = |f: Field| Err(BatchError::DuplicateField { field: f as u32 });
        let mut r = ExitReply::new();
        r.write(Field::GuestRip, 1).unwrap();
        r.write(Field::GuestRip, 2).unwrap();
        assert_eq!(decode(&r), dup(Field::GuestRip));
        let mut r = ExitReply::new();
        r.write(Field::GuestRip, 1).unwrap();
        r.flags = ReplyFlags::ADVANCE_RIP;
        assert_eq!(decode(&r), dup(Field::GuestRip));
        let mut r = ExitReply::new();
        r.write(Field::GuestRsp, 1).unwrap();
        r.set_gpr(Gprs::RSP, 2).unwrap();
        assert_eq!(decode(&r), dup(Field::GuestRsp));
        let mut r = ExitReply::new();
        r.write(Field::EntryInterruptionInfo, 0).unwrap();
        r.inject(EventInjection::nmi(), 0, 0);
        assert_eq!(decode(&r), dup(Field::EntryInterruptionInfo));
    }

    #[test]
    fn flags_become_writes() {
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::REQUEST_INTERRUPT_WINDOW | ReplyFlags::STOP_VCPU;
        r.set_gpr(Gprs::RSP, 0x8000).unwrap();
        let b = decode(&r).unwrap();
        let p = state().controls.proc | proc::INTERRUPT_WINDOW_EXITING;
        assert_eq!(b.writes(), [(Field::ProcBasedControls, p.into()), (Field::GuestRsp, 0x8000)]);
        assert_eq!(b.gpr_mask, 0);
        assert!(b.stop);
        // With an explicit primary-controls write, the window bit is merged into it.
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::REQUEST_INTERRUPT_WINDOW;
        let explicit = state().controls.proc | proc::HLT_EXITING;
        r.write(Field::ProcBasedControls, explicit.into()).unwrap();
        let b = decode(&r).unwrap();
        let merged = explicit | proc::INTERRUPT_WINDOW_EXITING;
        assert_eq!(b.writes(), [(Field::ProcBasedControls, merged.into())]);
        // A 32-bit guest's RIP wraps at 4 GiB.
        let mut now = state();
        now.controls.entry &= !entry::IA32E_MODE_GUEST;
        now.cr4 = 0x2000;
        now.rip = 0xffff_ffff;
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::ADVANCE_RIP;
        let b = decode_reply(&r, &caps(), &policy(), &now).unwrap();
        assert_eq!(b.writes(), [(Field::GuestRip, 1)]);
    }

    #[test]
    fn an_explicit_advance_length_replaces_the_exits() {
        // An EPT violation reports no instruction length: the VMM that decoded the
        // instruction says how long it was.
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::ADVANCE_RIP;
        r.advance_len = 7;
        assert_eq!(decode(&r).unwrap().writes(), [(Field::GuestRip, 0x1007)]);
        r.advance_len = 0;
        assert_eq!(decode(&r).unwrap().writes(), [(Field::GuestRip, 0x1002)], "the exit's 2");
        r.advance_len = 16;
        assert_eq!(decode(&r).unwrap_err(), BatchError::BadAdvance { len: 16 });
        r.advance_len = 3;
        r.flags = ReplyFlags::NONE;
        assert_eq!(decode(&r).unwrap_err(), BatchError::BadAdvance { len: 3 }, "no flag");
    }

    /// The liveness invariant: no batch leaves the CPU where the next tick cannot take
    /// it back.
    #[test]
    fn writes_that_would_keep_the_cpu_from_the_kernel_are_refused() {
        for state in [activity::SHUTDOWN, activity::WAIT_FOR_SIPI, 4, u64::from(u32::MAX)] {
            let want =
                BatchError::Liveness { field: Field::GuestActivityState as u32, value: state };
            assert_eq!(one_write(Field::GuestActivityState, state), Err(want));
        }
        assert!(one_write(Field::GuestActivityState, activity::HLT).is_ok());
        assert!(one_write(Field::GuestActivityState, activity::ACTIVE).is_ok());
        let all = u64::from(u32::MAX);
        for bitmap in [0, all & !(1 << 1), all & !(1 << 17), 1 << 1, 1 << 17] {
            let want = BatchError::Liveness { field: Field::ExceptionBitmap as u32, value: bitmap };
            assert_eq!(one_write(Field::ExceptionBitmap, bitmap), Err(want), "{bitmap:#x}");
        }
        assert!(one_write(Field::ExceptionBitmap, all).is_ok());
        assert!(one_write(Field::NotifyWindow, 1 << 20).is_err(), "the kernel owns the window");
        // Host interrupts, NMIs, debug registers and counters stay the kernel's.
        let c = state().controls;
        let forced = [
            (Field::PinBasedControls, c.pin & !pin::EXTERNAL_INTERRUPT_EXITING),
            (Field::PinBasedControls, c.pin & !pin::NMI_EXITING),
            (Field::ProcBasedControls, c.proc & !proc::MOV_DR_EXITING),
            (Field::ProcBasedControls, c.proc & !proc::RDPMC_EXITING),
        ];
        for (field, value) in forced {
            assert!(
                matches!(one_write(field, value.into()), Err(BatchError::ControlPolicy { .. })),
                "{field:?} = {value:#x}"
            );
        }
    }

    #[test]
    fn refusal_is_all_or_nothing_and_deterministic() {
        let mut r = ExitReply::new();
        r.write(Field::GuestRip, 0x2000).unwrap();
        r.write(Field::ExceptionBitmap, ALWAYS_INTERCEPTED_EXCEPTIONS.into()).unwrap();
        r.write(Field::HostRip, 0).unwrap();
        let first = decode(&r);
        assert_eq!(first, Err(BatchError::FieldNotWritable { field: 0x6c16 }));
        assert_eq!(decode(&r), first);
    }

    /// The reply is read in place from the VMM's page, so any bytes can arrive: the
    /// shape checks the old word decoder made are the validator's now.
    #[test]
    fn malformed_replies_are_refused_by_shape() {
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::ADVANCE_RIP;
        let mut raw = r;
        raw.count = MAX_WRITES as u32 + 1;
        assert_eq!(decode(&raw), Err(BatchError::TooManyWrites { count: 17 }));
        let mut raw: [u8; size_of::<ExitReply>()] = bytemuck_bytes(&r);
        raw[0] |= 0x80;
        let bad_flags = from_bytes(&raw);
        assert!(matches!(decode(&bad_flags), Err(BatchError::BadFlags { .. })));
        let mut raw = r;
        raw.injection = EventInjection::exception(13);
        assert!(matches!(decode(&raw), Err(BatchError::BadInjection { .. })), "no INJECT_EVENT");
        let mut raw = r;
        raw.advance_len = 16;
        assert_eq!(decode(&raw), Err(BatchError::BadAdvance { len: 16 }));
        let mut raw = r;
        raw.write(Field::GuestRip, 0x2000).unwrap();
        raw.writes[0].reserved = 5;
        assert_eq!(decode(&raw), Err(BatchError::ReservedBits { word: 20, bits: 5 << 32 }));
        // A fault address without its flag is not part of the reply.
        let mut raw = r;
        raw.fault_address = 0x1000;
        assert_eq!(decode(&raw).map(|b| b.page_fault), Ok(None));
        // Writes past `count` are not part of the reply.
        let mut raw = r;
        raw.writes[3].field = Field::HostRip as u32;
        assert!(decode(&raw).is_ok());
    }

    fn bytemuck_bytes(r: &ExitReply) -> [u8; size_of::<ExitReply>()] {
        let mut out = [0u8; size_of::<ExitReply>()];
        out.copy_from_slice(bytemuck::bytes_of(r));
        out
    }

    fn from_bytes(raw: &[u8]) -> ExitReply {
        bytemuck::pod_read_unaligned(raw)
    }

    /// Random replies (a fixed xorshift stream): decoding never panics, and whatever it
    /// accepts only writes fields a VMM may write.
    #[test]
    fn random_batches_never_panic_or_leak_privileged_writes() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (caps, pol, now) = (caps(), policy(), state());
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut r = ExitReply::new();
            r.flags = ReplyFlags::from_bits(next() as u32 & 0xf).unwrap();
            r.gpr_mask = next() as u16;
            if r.flags.contains(ReplyFlags::INJECT_EVENT) {
                r.injection = EventInjection::from_raw(next() as u32 | 1 << 31);
                r.injection_error = next() as u32 & 0x1_ffff;
                r.injection_len = next() as u32 & 0x1f;
            }
            for _ in 0..next() % 4 {
                let field = match next() % 3 {
                    0 => next() as u32,
                    _ => Field::ALL[(next() % Field::ALL.len() as u64) as usize] as u32,
                };
                let value = match next() % 3 {
                    0 => next(),
                    1 => next() & 0xffff_ffff,
                    _ => next() & 0xff,
                };
                r.write_raw(field, value).unwrap();
            }
            if let Ok(b) = decode_reply(&r, &caps, &pol, &now) {
                accepted += 1;
                for (field, value) in b.writes() {
                    assert!(field.vmm_writable(), "{field:?}");
                    assert!(*value <= field.width().max_value());
                }
            }
        }
        assert!(accepted > 100, "the generator also produces valid batches ({accepted})");
    }
}
