//! Fuzzes the kernel's VMCS-write batch validator (`kernel::vmx::validator::decode_reply`)
//! with hostile VMM replies, against arbitrary or realistic CPU capabilities, kernel
//! policies and vCPU states.
//!
//! Invariants on every accepted batch, restated here from the SDM and the design rather
//! than taken from the validator: no write names a HostState, ControlPointer or ReadOnly
//! field (nor does the reply); every value fits its field; no field is written twice;
//! every written control value satisfies the capability MSRs' allowed-0/allowed-1 masks
//! and the policy's forced/allowed bits passed in; the VMM's own writes are all applied
//! unchanged (but for the interrupt-window bit the flag adds); the flags become exactly
//! the writes they promise; the cached next state matches the writes; and the resulting
//! state of a batch with VMCS writes passes the VM-entry checks the validator models (fixed CR0/CR4 bits, RFLAGS,
//! RIP width, interruptibility, control dependencies, the injected event). The liveness
//! invariant (docs/abi.md): no accepted batch sets an activity state other than active or
//! HLT, or an exception bitmap without #DB and #AC, and under the kernel's own policy the
//! next controls keep external-interrupt and NMI exiting. On refusal, an error that names
//! a field names one the reply really holds.

use arbitrary::Arbitrary;
use kernel::vmx::caps::{VmxCaps, VmxMsrs};
use kernel::vmx::validator::{decode_reply, CtlPolicy, Policy, ValidatedBatch, VcpuState};
use protocols::vmcs::ctl::{entry, exit, pin, proc, proc2};
use protocols::vmcs::{activity, Field, FieldClass, ALWAYS_INTERCEPTED_EXCEPTIONS};
use protocols::vmexit::{
    exception_has_error_code, BatchError, Controls, EventInjection, EventType, ExitReply, Gprs,
    ReplyFlags,
};

/// A Skylake-like CPU with TRUE_* controls, EPT, VPID and unrestricted guest (the values
/// the validator's unit tests use).
const SKYLAKE: VmxMsrs = kernel::vmx::samples::SKYLAKE;

#[derive(Arbitrary, Debug)]
enum Cpu {
    Skylake,
    /// Skylake with capability bits flipped: other CPUs, and inconsistent MSRs.
    SkylakeXor {
        pin: u64,
        proc: u64,
        proc2: u64,
        exit: u64,
        entry: u64,
        basic: u64,
        misc: u64,
    },
    Raw([u64; 11]),
}

impl Cpu {
    fn msrs(&self) -> VmxMsrs {
        match *self {
            Self::Skylake => SKYLAKE,
            Self::SkylakeXor { pin, proc, proc2, exit, entry, basic, misc } => VmxMsrs {
                basic: SKYLAKE.basic ^ basic,
                pinbased: SKYLAKE.pinbased ^ pin,
                procbased: SKYLAKE.procbased ^ proc,
                procbased2: SKYLAKE.procbased2 ^ proc2,
                exit: SKYLAKE.exit ^ exit,
                entry: SKYLAKE.entry ^ entry,
                misc: SKYLAKE.misc ^ misc,
                ..SKYLAKE
            },
            Self::Raw(m) => VmxMsrs {
                basic: m[0],
                pinbased: m[1],
                procbased: m[2],
                procbased2: m[3],
                exit: m[4],
                entry: m[5],
                misc: m[6],
                cr0_fixed0: m[7],
                cr0_fixed1: m[8],
                cr4_fixed0: m[9],
                cr4_fixed1: m[10],
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum StateSpec {
    /// A 64-bit guest with the policy's initial controls, just after an exit.
    Long {
        rip: u32,
        exit_len: u8,
        interruptibility: u8,
        if_flag: bool,
        flip: Option<(u8, u8)>,
    },
    Raw {
        controls: [u32; 5],
        cr0: u64,
        cr4: u64,
        rflags: u64,
        rip: u64,
        blocking: u32,
        len: u32,
    },
}

/// A value to write: raw, small, or the field's current value with one bit flipped (so
/// control and CR writes stay near valid ones).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Raw(u64),
    Small(u8),
    Current,
    Flip(u8),
}

#[derive(Arbitrary, Debug)]
enum ReplyOp {
    /// A known field (an index into `Field::ALL`).
    Write {
        field: u16,
        value: Value,
    },
    WriteRaw {
        field: u32,
        value: u64,
    },
    SetGpr {
        reg: u8,
        value: u64,
    },
    Inject {
        vector: u8,
        kind: u8,
        deliver: bool,
        error: u32,
        len: u8,
    },
    InjectRaw {
        info: u32,
        error: u32,
        len: u32,
    },
}

/// One fuzz input: a CPU, a policy, a vCPU state and a reply built from operations.
#[derive(Arbitrary, Debug)]
pub struct Input {
    cpu: Cpu,
    guest_space: bool,
    vpid: bool,
    /// Replace the standard policy with arbitrary forced/allowed masks.
    custom_policy: Option<[(u32, u32); 5]>,
    state: StateSpec,
    flags: u8,
    ops: Vec<ReplyOp>,
}

const CONTROL_FIELDS: [Field; 5] = [
    Field::PinBasedControls,
    Field::ProcBasedControls,
    Field::SecondaryProcBasedControls,
    Field::ExitControls,
    Field::EntryControls,
];

fn control_of(c: &Controls, field: Field) -> Option<u32> {
    Some(match field {
        Field::PinBasedControls => c.pin,
        Field::ProcBasedControls => c.proc,
        Field::SecondaryProcBasedControls => c.proc2,
        Field::ExitControls => c.exit,
        Field::EntryControls => c.entry,
        _ => return None,
    })
}

fn set_control(c: &mut Controls, i: usize, v: u32) {
    match i % 5 {
        0 => c.pin = v,
        1 => c.proc = v,
        2 => c.proc2 = v,
        3 => c.exit = v,
        _ => c.entry = v,
    }
}

fn current(s: &VcpuState, field: Field) -> u64 {
    match field {
        Field::GuestCr0 => s.cr0,
        Field::GuestCr4 => s.cr4,
        Field::GuestRflags => s.rflags,
        Field::GuestRip => s.rip,
        Field::GuestInterruptibility => s.interruptibility.into(),
        f => control_of(&s.controls, f).map_or(0, u64::from),
    }
}

fn state(spec: &StateSpec, policy: &Policy, caps: &VmxCaps) -> VcpuState {
    match *spec {
        StateSpec::Long { rip, exit_len, interruptibility, if_flag, flip } => {
            let mut controls = policy.initial_controls(caps);
            controls.entry |= entry::IA32E_MODE_GUEST;
            if let Some((which, bit)) = flip {
                let i = usize::from(which);
                let v = control_of(&controls, CONTROL_FIELDS[i % 5]).unwrap_or(0);
                set_control(&mut controls, i, v ^ 1 << (bit % 32));
            }
            VcpuState {
                controls,
                cr0: 0x8000_0031,
                cr4: 0x2020,
                rflags: if if_flag { 0x202 } else { 0x2 },
                rip: 0x10_0000 + u64::from(rip),
                interruptibility: u32::from(interruptibility % 32),
                exit_instruction_len: u32::from(exit_len % 16),
            }
        }
        StateSpec::Raw { controls, cr0, cr4, rflags, rip, blocking, len } => VcpuState {
            controls: Controls {
                pin: controls[0],
                proc: controls[1],
                proc2: controls[2],
                exit: controls[3],
                entry: controls[4],
            },
            cr0,
            cr4,
            rflags,
            rip,
            interruptibility: blocking,
            exit_instruction_len: len,
        },
    }
}

fn build_reply(input: &Input, now: &VcpuState) -> ExitReply {
    let mut r = ExitReply::new();
    for op in input.ops.iter().take(32) {
        // Refusals by the builder (a 17th write, a GPR above 15) are the protocol
        // target's business; here they only end up as a shorter reply.
        let _ = match *op {
            ReplyOp::Write { field, value } => {
                let f = Field::ALL[usize::from(field) % Field::ALL.len()];
                let v = match value {
                    Value::Raw(v) => v,
                    Value::Small(v) => v.into(),
                    Value::Current => current(now, f),
                    Value::Flip(bit) => current(now, f) ^ 1 << (bit % 64),
                };
                r.write(f, v)
            }
            ReplyOp::WriteRaw { field, value } => r.write_raw(field, value),
            ReplyOp::SetGpr { reg, value } => r.set_gpr(reg % 16, value),
            ReplyOp::Inject { vector, kind, deliver, error, len } => {
                let kind = EventType::from_raw(kind % 8).unwrap_or(EventType::HardwareException);
                r.inject(EventInjection::new(vector, kind, deliver), error, len.into());
                Ok(())
            }
            ReplyOp::InjectRaw { info, error, len } => {
                r.inject(EventInjection::from_raw(info), error, len);
                Ok(())
            }
        };
    }
    r.flags |=
        ReplyFlags::from_bits(u32::from(input.flags) & ReplyFlags::ALL.bits()).unwrap_or_default();
    r
}

const RFLAGS_RESERVED: u64 = !0x003f_ffff | 1 << 15 | 1 << 5 | 1 << 3;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_VM: u64 = 1 << 17;
const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const STI: u32 = 1;
const MOV_SS: u32 = 2;
const SMI: u32 = 4;
const NMI: u32 = 8;

/// The VM-entry checks of SDM 27.2/27.3 that depend only on what the kernel tracks.
fn check_entry_state(caps: &VmxCaps, s: &VcpuState) {
    let c = &s.controls;
    let ia32e = c.entry & entry::IA32E_MODE_GUEST != 0;
    let unrestricted =
        c.proc & proc::ACTIVATE_SECONDARY_CONTROLS != 0 && c.proc2 & proc2::UNRESTRICTED_GUEST != 0;
    assert_eq!(caps.cr0_violations(s.cr0, unrestricted), 0, "CR0 {:#x} fails fixed bits", s.cr0);
    assert!(s.cr0 & CR0_PG == 0 || s.cr0 & CR0_PE != 0, "CR0.PG without PE");
    assert!(!ia32e || s.cr0 & CR0_PG != 0, "IA-32e guest without paging");
    assert_eq!(caps.cr4_violations(s.cr4), 0, "CR4 {:#x} fails fixed bits", s.cr4);
    assert!(!ia32e || s.cr4 & CR4_PAE != 0, "IA-32e guest without PAE");
    assert_eq!(s.rflags & RFLAGS_RESERVED, 0, "RFLAGS {:#x} sets reserved bits", s.rflags);
    assert_ne!(s.rflags & 2, 0, "RFLAGS bit 1 clear");
    assert!(!(ia32e || s.cr0 & CR0_PE == 0) || s.rflags & RFLAGS_VM == 0, "RFLAGS.VM here");
    assert!(ia32e || s.rip >> 32 == 0, "RIP {:#x} too wide outside IA-32e mode", s.rip);
    let b = s.interruptibility;
    assert_eq!(b & !0x1f, 0, "interruptibility reserved bits");
    assert_eq!(b & SMI, 0, "blocking by SMI outside SMM");
    assert_ne!(b & (STI | MOV_SS), STI | MOV_SS, "blocking by STI and MOV SS together");
    assert!(b & STI == 0 || s.rflags & RFLAGS_IF != 0, "blocking by STI with IF clear");
    // Control dependencies (SDM 27.2.1.1).
    assert!(c.pin & pin::VIRTUAL_NMIS == 0 || c.pin & pin::NMI_EXITING != 0);
    assert!(c.proc & proc::NMI_WINDOW_EXITING == 0 || c.pin & pin::VIRTUAL_NMIS != 0);
    assert!(c.proc2 & proc2::UNRESTRICTED_GUEST == 0 || c.proc2 & proc2::ENABLE_EPT != 0);
    assert!(c.exit & exit::SAVE_PREEMPTION_TIMER == 0 || c.pin & pin::PREEMPTION_TIMER != 0);
}

/// The injection checks of SDM 27.2.1.3 and 27.3.1.5.
fn check_injection(caps: &VmxCaps, b: &ValidatedBatch) {
    let written = |f: Field| b.writes().iter().find(|&&(g, _)| g == f).map(|&(_, v)| v);
    let Some(info) = written(Field::EntryInterruptionInfo) else { return };
    let ev = EventInjection::from_raw(info as u32);
    if !ev.is_valid() {
        return;
    }
    let kind = ev.event_type().expect("reserved event type injected");
    assert_eq!(ev.raw() & EventInjection::RESERVED, 0, "reserved injection bits");
    match kind {
        EventType::Nmi => assert_eq!(ev.vector(), 2, "NMI with vector {}", ev.vector()),
        EventType::HardwareException => assert!(ev.vector() <= 31, "exception {}", ev.vector()),
        EventType::Other => assert_eq!(ev.vector(), 0),
        _ => {}
    }
    let s = &b.next;
    let unrestricted = s.controls.proc & proc::ACTIVATE_SECONDARY_CONTROLS != 0
        && s.controls.proc2 & proc2::UNRESTRICTED_GUEST != 0;
    let protected = !unrestricted || s.cr0 & CR0_PE != 0;
    if ev.delivers_error_code() {
        assert!(kind == EventType::HardwareException && protected, "error code for {kind:?}");
        let code = written(Field::EntryExceptionErrorCode).expect("error code not in the batch");
        assert_eq!(code >> 16, 0, "error code {code:#x} wider than 16 bits");
        if !caps.inject_any_error_code && ev.vector() != 21 {
            assert!(exception_has_error_code(ev.vector()), "error code for #{}", ev.vector());
        }
    } else if kind == EventType::HardwareException && protected && !caps.inject_any_error_code {
        assert!(
            ev.vector() == 21 || !exception_has_error_code(ev.vector()),
            "exception {} needs an error code",
            ev.vector()
        );
    }
    if kind.uses_instruction_length() {
        let len = written(Field::EntryInstructionLength).expect("no instruction length");
        assert!((1..=15).contains(&len) || (len == 0 && caps.zero_length_injection()));
    }
    let blocking = s.interruptibility;
    match kind {
        EventType::ExternalInterrupt => {
            assert_ne!(s.rflags & RFLAGS_IF, 0, "interrupt injected with IF clear");
            assert_eq!(blocking & (STI | MOV_SS), 0, "interrupt injected in a shadow");
        }
        EventType::Nmi => {
            assert_eq!(blocking & MOV_SS, 0, "NMI injected after MOV SS");
            let virtual_nmis = s.controls.pin & pin::VIRTUAL_NMIS != 0;
            assert!(!virtual_nmis || blocking & NMI == 0, "virtual NMI injected while blocked");
        }
        _ => {}
    }
}

fn check_accepted(
    reply: &ExitReply,
    caps: &VmxCaps,
    policy: &Policy,
    now: &VcpuState,
    b: &ValidatedBatch,
    standard_policy: bool,
) {
    let flags = reply.flags;
    let pol = [policy.pin, policy.proc, policy.proc2, policy.exit, policy.entry];
    let msr = [caps.pinbased, caps.procbased, caps.procbased2, caps.exit, caps.entry];
    for (i, &(f, v)) in b.writes().iter().enumerate() {
        assert!(
            matches!(f.class(), FieldClass::Control | FieldClass::GuestState),
            "accepted a write to {f} ({:?})",
            f.class()
        );
        assert!(v <= f.width().max_value(), "{f} = {v:#x} does not fit");
        assert!(b.writes()[..i].iter().all(|&(g, _)| g != f), "{f} written twice");
        if let Some(k) = CONTROL_FIELDS.iter().position(|&c| c == f) {
            let v = u32::try_from(v).expect("control value wider than 32 bits");
            let (m, p): (_, CtlPolicy) = (msr[k], pol[k]);
            assert_eq!(v & !m.may_be_one, 0, "{f} = {v:#x} sets bits the CPU forbids");
            assert_eq!(m.must_be_one & !v, 0, "{f} = {v:#x} clears bits the CPU requires");
            assert_eq!(p.forced & !v, 0, "{f} = {v:#x} clears bits the kernel forces");
            assert_eq!(v & !(p.forced | p.vmm | m.must_be_one), 0, "{f} = {v:#x} beyond policy");
            assert_eq!(control_of(&b.next.controls, f), Some(v), "next.controls disagrees");
        }
    }
    // The reply's own writes: all known, writable, and applied as sent.
    for w in reply.writes() {
        let f = Field::from_raw(w.field).expect("accepted an unknown field");
        assert!(f.vmm_writable(), "accepted a write to {f}");
        let mut want = w.value;
        if f == Field::ProcBasedControls && flags.contains(ReplyFlags::REQUEST_INTERRUPT_WINDOW) {
            want |= u64::from(proc::INTERRUPT_WINDOW_EXITING);
        }
        assert!(b.writes().contains(&(f, want)), "{f} = {want:#x} not applied as sent");
    }
    let written = |f: Field| b.writes().iter().find(|&&(g, _)| g == f).map(|&(_, v)| v);
    // Liveness: nothing the next tick cannot end.
    if let Some(state) = written(Field::GuestActivityState) {
        assert!(state == activity::ACTIVE || state == activity::HLT, "activity state {state}");
    }
    if let Some(bitmap) = written(Field::ExceptionBitmap) {
        let always = u64::from(ALWAYS_INTERCEPTED_EXCEPTIONS);
        assert_eq!(bitmap & always, always, "exception bitmap {bitmap:#x} lets #DB or #AC through");
    }
    if standard_policy {
        // A batch never takes these away (the state it starts from may lack them only
        // because the harness made it so).
        let (c, was) = (&b.next.controls, &now.controls);
        let pin_needed = (pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING) & was.pin;
        assert_eq!(c.pin & pin_needed, pin_needed, "host interrupts or NMIs stop exiting");
        let proc_needed = (proc::MOV_DR_EXITING | proc::RDPMC_EXITING) & was.proc;
        assert_eq!(c.proc & proc_needed, proc_needed, "debug registers or counters go native");
    }
    // Flags.
    assert_eq!(b.stop, flags.contains(ReplyFlags::STOP_VCPU));
    assert_eq!(b.gpr_mask & 1 << Gprs::RSP, 0, "RSP left in the GPR mask");
    assert_eq!(b.gpr_mask, reply.gpr_mask & !(1 << Gprs::RSP));
    if reply.gpr_mask & 1 << Gprs::RSP != 0 {
        assert_eq!(written(Field::GuestRsp), Some(reply.gprs.rsp()), "RSP update lost");
    }
    if flags.contains(ReplyFlags::ADVANCE_RIP) {
        let mut rip = now.rip.wrapping_add(now.exit_instruction_len.into());
        if b.next.controls.entry & entry::IA32E_MODE_GUEST == 0 {
            rip &= u64::from(u32::MAX);
        }
        assert_eq!(written(Field::GuestRip), Some(rip), "ADVANCE_RIP wrote the wrong RIP");
    }
    if flags.contains(ReplyFlags::REQUEST_INTERRUPT_WINDOW) {
        assert_ne!(b.next.controls.proc & proc::INTERRUPT_WINDOW_EXITING, 0, "no window");
    }
    if flags.contains(ReplyFlags::INJECT_EVENT) {
        assert_eq!(written(Field::EntryInterruptionInfo), Some(reply.injection.raw().into()));
        assert!(reply.injection.is_valid(), "an invalid event accepted for injection");
    }
    // The cached state follows the writes.
    let n = &b.next;
    for (f, got) in [
        (Field::GuestCr0, n.cr0),
        (Field::GuestCr4, n.cr4),
        (Field::GuestRflags, n.rflags),
        (Field::GuestRip, n.rip),
        (Field::GuestInterruptibility, n.interruptibility.into()),
    ] {
        assert_eq!(got, written(f).unwrap_or(current(now, f)), "next state of {f} is stale");
    }
    for f in CONTROL_FIELDS {
        if written(f).is_none() {
            assert_eq!(control_of(&n.controls, f), control_of(&now.controls, f));
        }
    }
    if reply.count == 0 {
        // No VMCS write: the state the CPU exited with stays as it was but for RIP, the
        // interrupt shadow and the interrupt-window control, so the kernel re-checks none
        // of it (the harness's starting states need not be ones a CPU exits with).
        assert_eq!((n.cr0, n.cr4, n.rflags), (now.cr0, now.cr4, now.rflags));
        let (c, was) = (&n.controls, &now.controls);
        assert_eq!((c.pin, c.proc2, c.exit, c.entry), (was.pin, was.proc2, was.exit, was.entry));
        assert_eq!(
            c.proc & !proc::INTERRUPT_WINDOW_EXITING,
            was.proc & !proc::INTERRUPT_WINDOW_EXITING
        );
    } else {
        check_entry_state(caps, n);
    }
    check_injection(caps, b);
}

fn check_refused(reply: &ExitReply, e: &BatchError) {
    let sent = |raw: u32| reply.writes().iter().any(|w| w.field == raw);
    match *e {
        BatchError::FieldNotWritable { field } => {
            assert!(sent(field), "refusal names {field:#x}, which the reply does not write");
            assert!(!Field::from_raw(field).is_some_and(Field::vmm_writable));
        }
        BatchError::UnknownField { raw } => {
            assert!(sent(raw) && Field::from_raw(raw).is_none(), "bogus unknown field {raw:#x}");
        }
        BatchError::Liveness { field, value } => {
            assert!(reply.writes().iter().any(|w| w.field == field && w.value == value));
            let liveness = [Field::GuestActivityState as u32, Field::ExceptionBitmap as u32];
            assert!(liveness.contains(&field), "liveness refusal for {field:#x}");
        }
        _ => {}
    }
}

/// Run one input: panics (naming the broken invariant) on a finding; otherwise whether
/// the validator accepted the batch.
pub fn run(input: Input) -> bool {
    let caps = VmxCaps::from_all(&input.cpu.msrs());
    let policy = match input.custom_policy {
        None => Policy::new(&caps, input.guest_space, input.vpid),
        Some(p) => {
            let c = |(forced, vmm): (u32, u32)| CtlPolicy { forced, vmm };
            Policy { pin: c(p[0]), proc: c(p[1]), proc2: c(p[2]), exit: c(p[3]), entry: c(p[4]) }
        }
    };
    let now = state(&input.state, &policy, &caps);
    let reply = build_reply(&input, &now);
    let result = decode_reply(&reply, &caps, &policy, &now);
    assert_eq!(decode_reply(&reply, &caps, &policy, &now), result, "validation is not pure");
    match &result {
        Ok(b) => {
            let standard = input.custom_policy.is_none();
            check_accepted(&reply, &caps, &policy, &now, b, standard);
        }
        Err(e) => check_refused(&reply, e),
    }
    result.is_ok()
}
