//! The VCpu life cycle on the host: creation, guest memory, start, an exit delivered to
//! the VMM as IPC, a valid reply batch applied, and hostile batches refused whole.

use crate::cap::Cap;
use crate::paging::PhysMemory;
use crate::state::Next;
use crate::store::Store;
use crate::tcb::ThreadState;
use crate::testbed::{slot, Testbed, ROOT_TCB};
use crate::vmx::caps::{VmxCaps, VmxMsrs};
use crate::vmx::ept::{Ept, EptVpidCaps};
use crate::vmx::samples::SKYLAKE;
use crate::vmx::validator::Policy;
use protocols::error::Error;
use protocols::ipc::MsgInfo;
use protocols::object::{map, vcpu_mode, vm, Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::Syscall;
use protocols::vcpu_start::StartError;
use protocols::vmcs::Field;
use protocols::vmexit::{
    BatchError, EventInjection, ExitMessage, ExitReason, ExitReply, Gprs, ReplyFlags,
};
use protocols::vmx_failure::{InstructionError, VmxError, VmxFailure, VmxInstruction};

fn invoke(t: &mut Testbed, cptr: u64, label: Invocation, words: &[u64]) -> u64 {
    let mut w = [0u64; 4];
    w[..words.len()].copy_from_slice(words);
    let info = MsgInfo::new(label as u64, words.len() as u8).to_raw();
    t.sys(Syscall::Call as u64, [cptr, info, w[0], w[1], w[2], w[3]]);
    t.regs(t.k.current)[0]
}

fn retype(t: &mut Testbed, ty: ObjectType, bits: u64, dst: u64) -> u64 {
    invoke(t, slot::UNTYPED, Invocation::UntypedRetype, &[ty as u64, bits, dst, 1])
}

const VCPU: u64 = 40;
const GUEST: u64 = 41;
const EXIT_EP: u64 = 42;
const MSG: u64 = 43;
const RAM: u64 = 44;

/// A started vCPU whose guest space maps one page at guest-physical 0x1000.
fn started() -> (Testbed, u64, u64) {
    let mut t = configured();
    assert_eq!(
        invoke(&mut t, VCPU, Invocation::VCpuStart, &[vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0]),
        0
    );
    let Cap::VCpu { addr } = t.cap(VCPU) else { panic!() };
    let Cap::Frame { addr: msg, .. } = t.cap(MSG) else { panic!() };
    (t, addr, msg)
}

/// A vCPU bound to its guest space (one page at guest-physical 0x1000), exit endpoint
/// and message frame, not yet started.
fn configured() -> Testbed {
    let mut t = Testbed::with_vmx();
    assert_eq!(retype(&mut t, ObjectType::VCpu, 0, VCPU), 0);
    assert_eq!(retype(&mut t, ObjectType::GuestSpace, 14, GUEST), 0);
    assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, EXIT_EP), 0);
    assert_eq!(retype(&mut t, ObjectType::Frame, 0, MSG), 0);
    assert_eq!(retype(&mut t, ObjectType::Frame, 0, RAM), 0);
    assert_eq!(
        invoke(&mut t, RAM, Invocation::FrameMapGuest, &[GUEST, 0x1000, map::WRITE | map::EXECUTE]),
        0
    );
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuConfigure, &[GUEST, EXIT_EP, MSG, 0]), 0);
    t
}

fn write_reply(t: &mut Testbed, msg: u64, reply: &ExitReply) {
    *protocols::vcpu_page::reply_mut(t.k.store.frame(msg)).unwrap() = *reply;
}

/// The root task waits on the exit endpoint; the vCPU runs and exits with CPUID.
fn exit_with_cpuid(t: &mut Testbed, v: u64) {
    let msg = ExitMessage { reason: ExitReason::Cpuid as u32, instruction_len: 2, ..exit() };
    exit_with(t, v, msg);
}

/// An exit message without a reason, at 0x1000.
fn exit() -> ExitMessage {
    ExitMessage { rip: 0x1000, ..Default::default() }
}

/// The root task waits on the exit endpoint; the vCPU runs and exits with `msg`.
fn exit_with(t: &mut Testbed, v: u64, msg: ExitMessage) {
    t.sys(Syscall::Recv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, v, "the vCPU runs once the VMM blocks");
    // What the hardware reports: the guest's real CR0/CR4/RFLAGS, as the VMCS holds them.
    let now = t.k.store.vcpu(v).cached;
    let msg = ExitMessage { cr0: now.cr0, cr4: now.cr4, rflags: now.rflags, ..msg };
    assert_eq!(t.k.vcpu_exit(&msg), Next::Run);
    assert_eq!(t.k.current, ROOT_TCB);
}

#[test]
fn without_vmx_vcpus_are_not_supported() {
    let mut t = Testbed::new();
    assert_eq!(retype(&mut t, ObjectType::VCpu, 0, VCPU), Error::NotSupported as u64);
    assert_eq!(t.cap(VCPU), Cap::Null, "nothing was created");
}

#[test]
fn configure_tells_the_vmm_the_clock() {
    use crate::vmx::samples::TSC_HZ;
    use protocols::vcpu_page::{clock, Clock};
    let mut t = configured();
    let Cap::Frame { addr: msg, .. } = t.cap(MSG) else { panic!() };
    let c = *clock(t.k.store.frame(msg)).unwrap();
    let both = Clock::PREEMPTION_TIMER | Clock::TSC_OFFSETTING;
    assert_eq!(
        c,
        Clock { tsc_hz: TSC_HZ, preemption_timer_shift: 0, flags: both, reserved: [0; 6] }
    );
    // Another CPU: a preemption timer at TSC / 32, no TSC offsetting.
    let mut msrs = SKYLAKE;
    msrs.misc |= 5;
    msrs.procbased &= !(1 << (32 + 3));
    t.k.vmx.as_mut().unwrap().caps = VmxCaps::from_all(&msrs);
    t.k.vmx.as_mut().unwrap().tsc_hz = 0;
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuConfigure, &[GUEST, EXIT_EP, MSG, 0]), 0);
    let c = *clock(t.k.store.frame(msg)).unwrap();
    assert_eq!((c.known(), c.preemption_timer_shift, c.flags), (false, 5, Clock::PREEMPTION_TIMER));
}

#[test]
fn start_prepares_the_vmcs_and_guest_memory() {
    let (mut t, v, _) = started();
    let data = t.k.store.vcpu(v);
    assert!(data.started && !data.launched);
    let init = data.init.expect("initial VMCS queued");
    assert_eq!(init.get(Field::GuestRip), Some(0x1000));
    assert_eq!(init.get(Field::VmcsLinkPointer), Some(u64::MAX));
    assert_eq!(t.k.store.sched(v).state, ThreadState::Ready);
    let Cap::GuestSpace { addr: root, .. } = t.cap(GUEST) else { panic!() };
    let Cap::Frame { addr: ram, .. } = t.cap(RAM) else { panic!() };
    let tr = Ept::from_root(root, EptVpidCaps::from_raw(0)).translate(&mut t.k.store, 0x1234);
    assert_eq!(tr.map(|x| x.host), Some(ram + 0x234));
    // The VMCS page carries the revision identifier; every port and MSR exits.
    assert_eq!(t.k.store.frame(v + crate::vcpu::VMCS_OFFSET)[..4], 0x2bu32.to_le_bytes());
    assert!(t.k.store.frame(v + crate::vcpu::IO_BITMAP_OFFSET).iter().all(|b| *b == 0xff));
    // The VMCS names the VCpu's own bitmap pages.
    use crate::vcpu::{IO_BITMAP_OFFSET, MSR_BITMAP_OFFSET};
    assert_eq!(init.get(Field::IoBitmapA), Some(v + IO_BITMAP_OFFSET));
    assert_eq!(init.get(Field::IoBitmapB), Some(v + IO_BITMAP_OFFSET + 0x1000));
    assert_eq!(init.get(Field::MsrBitmap), Some(v + MSR_BITMAP_OFFSET));
}

/// A start may ask for more primary controls (here HLT exiting) and a priority up to its
/// caller's own.
#[test]
fn a_start_adds_the_controls_it_asks_for_at_a_priority_up_to_the_callers() {
    use protocols::vmcs::ctl::proc::HLT_EXITING;
    let mut t = configured();
    let own = u64::from(t.k.store.sched(ROOT_TCB).priority);
    let words = |prio: u64| [vcpu_mode::REAL | prio << 8, 0x1000, 0, 0];
    let above = words(own + 1);
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &above), Error::NotPermitted as u64);
    let mut at_own = words(own);
    at_own[0] |= u64::from(HLT_EXITING) << 16;
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &at_own), 0);
    let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
    assert_eq!(u64::from(t.k.store.sched(v).priority), own);
    assert_ne!(t.k.store.vcpu(v).cached.controls.proc & HLT_EXITING, 0);
}

/// `VCpuStart` with `words` as the root task: the status and the refusal's words.
fn start(t: &mut Testbed, words: [u64; 4]) -> (u64, Option<StartError>) {
    let rax = invoke(t, VCPU, Invocation::VCpuStart, &words);
    let [_, _, _, rdx, r10, r8, _] = t.regs(ROOT_TCB);
    (rax, StartError::from_words([rdx, r10, r8]))
}

#[test]
fn a_start_the_cpu_cannot_run_is_refused_naming_the_check() {
    let mut t = configured();
    // Lynnfield: EPT, but no unrestricted guest.
    let caps =
        VmxCaps::from_all(&VmxMsrs { procbased2: SKYLAKE.procbased2 & !(1 << 39), ..SKYLAKE });
    let vmx = t.k.vmx.as_mut().expect("VT-x");
    (vmx.caps, vmx.policy) = (caps, Policy::new(&caps, true, false));
    let real = [vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0];
    let refused = (
        Error::StartRefused as u64,
        Some(StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::REAL }),
    );
    assert_eq!(start(&mut t, real), refused);
    let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
    assert!(!t.k.store.vcpu(v).started && t.k.store.vcpu(v).init.is_none());
    assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive);
    assert!(t.out.console.is_empty(), "the kernel prints nothing");
    // The CPU runs a 64-bit guest, and a successful start leaves no refusal behind.
    let long = [vcpu_mode::LONG64 | 50 << 8, 0x1000, 0x8000, 0x1000];
    assert_eq!(start(&mut t, long), (0, None));
}

#[test]
fn a_start_with_values_the_mode_cannot_hold_is_refused_naming_the_field() {
    let mut t = configured();
    let beyond_1mib = [vcpu_mode::REAL | 50 << 8, 0x10_0000, 0, 0];
    assert_eq!(
        start(&mut t, beyond_1mib),
        (Error::StartRefused as u64, Some(StartError::BadEntry(Field::GuestRip)))
    );
}

#[test]
fn a_failed_vmx_instruction_stops_the_vcpu_and_tells_the_vmm() {
    let (mut t, v, _) = started();
    t.sys(Syscall::Recv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, v);
    let failure = VmxFailure {
        instruction: VmxInstruction::Vmlaunch,
        field: None,
        error: VmxError::FailValid(InstructionError::EntryInvalidControls),
    };
    assert_eq!(t.k.vcpu_failed(failure), Next::Run);
    assert_eq!(t.k.current, ROOT_TCB);
    let [rax, _, info, w0, w1, w2, w3] = t.regs(ROOT_TCB);
    assert_eq!((rax, MsgInfo::from_raw(info)), (0, Some(MsgInfo::new(vm::FAILURE_LABEL, 4))));
    assert_eq!(VmxFailure::from_words([w0, w1, w2, w3]), Some(failure));
    assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive, "stopped, not waiting");
    assert_eq!(t.k.store.sched(ROOT_TCB).caller, 0, "no reply is owed");
    // The VMM may start it again.
    assert_eq!(start(&mut t, [vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0]), (0, None));
    assert_eq!(t.k.store.sched(v).state, ThreadState::Ready);
}

#[test]
fn a_vmx_failure_waits_for_the_vmm_to_receive_it() {
    let (mut t, v, _) = started();
    // The VMM waits for something else meanwhile: the vCPU runs and fails.
    const NTFN: u64 = 45;
    assert_eq!(retype(&mut t, ObjectType::Notification, 0, NTFN), 0);
    t.sys(Syscall::Recv as u64, [NTFN, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, v);
    let failure = VmxFailure {
        instruction: VmxInstruction::Vmwrite,
        field: Some(Field::GuestRip),
        error: VmxError::FailInvalid,
    };
    assert_eq!(t.k.vcpu_failed(failure), Next::Idle);
    assert!(matches!(t.k.store.sched(v).state, ThreadState::BlockedSend { call: false, .. }));
    let Cap::Notification { addr: ntfn, .. } = t.cap(NTFN) else { panic!() };
    t.k.signal(ntfn, 1);
    assert_eq!((t.k.schedule(), t.k.current), (Next::Run, ROOT_TCB));
    assert_eq!(
        start(&mut t, [vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0]).0,
        Error::NotPermitted as u64
    );
    t.sys(Syscall::Recv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    let [_, _, info, w0, w1, w2, w3] = t.regs(ROOT_TCB);
    assert_eq!(MsgInfo::from_raw(info).map(|i| i.label), Some(vm::FAILURE_LABEL));
    assert_eq!(VmxFailure::from_words([w0, w1, w2, w3]), Some(failure));
    assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive);
}

#[test]
fn an_exit_reaches_the_vmm_and_a_valid_batch_is_queued() {
    let (mut t, v, msg) = started();
    exit_with_cpuid(&mut t, v);
    let [rax, badge, info, reason, _, rip, len] = t.regs(ROOT_TCB);
    assert_eq!((rax, badge), (0, 0));
    assert_eq!(MsgInfo::from_raw(info).map(|i| i.label), Some(vm::EXIT_LABEL));
    assert_eq!((reason, rip, len), (ExitReason::Cpuid as u64, 0x1000, 2));
    let page = *t.k.store.frame(msg);
    let words: Vec<u64> =
        page.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let decoded = ExitMessage::from_words(&words[..ExitMessage::BASE_WORDS]).unwrap();
    assert_eq!(decoded.basic_reason(), Some(ExitReason::Cpuid));

    let mut reply = ExitReply::new();
    reply.flags = ReplyFlags::ADVANCE_RIP;
    reply.set_gpr(Gprs::RAX, 0x1234).unwrap();
    write_reply(&mut t, msg, &reply);
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "refused: {:?}", t.regs(ROOT_TCB));
    let data = t.k.store.vcpu(v);
    assert_eq!(data.gprs.get(Gprs::RAX), Some(0x1234));
    assert!(data.pending().contains(&(Field::GuestRip, 0x1002)), "{:?}", data.pending());
    assert_eq!(t.k.store.sched(v).state, ThreadState::Ready);
}

#[test]
fn interrupt_window_exiting_is_one_shot() {
    use protocols::vmcs::ctl::proc::INTERRUPT_WINDOW_EXITING as WINDOW;
    let (mut t, v, msg) = started();
    exit_with_cpuid(&mut t, v);
    let mut reply = ExitReply::new();
    reply.flags = ReplyFlags::ADVANCE_RIP | ReplyFlags::REQUEST_INTERRUPT_WINDOW;
    write_reply(&mut t, msg, &reply);
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "refused: {:?}", t.regs(ROOT_TCB));
    let asked = t.k.store.vcpu(v).cached.controls.proc;
    assert_ne!(asked & WINDOW, 0);
    assert!(t.k.store.vcpu(v).pending().contains(&(Field::ProcBasedControls, asked.into())));
    // The vCPU runs; an exit for another reason keeps the request.
    t.k.current = v;
    assert_eq!(t.k.proc_controls_after_exit(ExitReason::Hlt as u32), None);
    // The window exit clears it, once.
    assert_eq!(
        t.k.proc_controls_after_exit(ExitReason::InterruptWindow as u32),
        Some(asked & !WINDOW)
    );
    assert_eq!(t.k.store.vcpu(v).cached.controls.proc, asked & !WINDOW);
    assert_eq!(t.k.proc_controls_after_exit(ExitReason::InterruptWindow as u32), None);
}

#[test]
fn hostile_batches_are_refused_whole_and_the_vcpu_stays_stopped() {
    for field in [
        Field::HostRip,
        Field::HostCr3,
        Field::EptPointer,
        Field::IoBitmapA,
        Field::VmcsLinkPointer,
    ] {
        let (mut t, v, msg) = started();
        exit_with_cpuid(&mut t, v);
        let mut reply = ExitReply::new();
        reply.set_gpr(Gprs::RBX, 7).unwrap();
        reply.write(Field::GuestRip, 0x2000).unwrap();
        reply.write(field, 0x4141_4000).unwrap();
        write_reply(&mut t, msg, &reply);
        t.sys(Syscall::Reply as u64, [0; 6]);
        let [rax, _, _, code, field_out, ..] = t.regs(ROOT_TCB);
        assert_eq!(rax, Error::BatchRejected as u64, "{field:?}");
        assert_eq!(code, u64::from(BatchError::FieldNotWritable { field: field as u32 }.code()));
        assert_eq!(field_out, field as u64, "the refusal names the field");
        let data = t.k.store.vcpu(v);
        assert_eq!(data.gprs.get(Gprs::RBX), Some(0), "nothing was applied");
        assert!(data.pending().is_empty());
        assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive);
    }
}

#[test]
fn clearing_external_interrupt_exiting_is_refused() {
    let (mut t, v, msg) = started();
    exit_with_cpuid(&mut t, v);
    let mut reply = ExitReply::new();
    reply.write(Field::PinBasedControls, 0).unwrap();
    write_reply(&mut t, msg, &reply);
    t.sys(Syscall::Reply as u64, [0; 6]);
    let [rax, _, _, _, field, ..] = t.regs(ROOT_TCB);
    assert_eq!((rax, field), (Error::BatchRejected as u64, Field::PinBasedControls as u64));
    assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive);
}

/// A VM entry that fails the CPU's guest-state checks comes back as an exit with reason
/// bit 31 set: the VMM receives it like any other (reason, qualification, CPL), may only
/// stop the vCPU (resuming would fail the same way), and can start it afresh.
#[test]
fn an_entry_failure_for_invalid_guest_state_reaches_the_vmm_as_an_exit() {
    use protocols::vmexit::EXIT_REASON_ENTRY_FAILURE;
    let (mut t, v, msg) = started();
    let reason = ExitReason::EntryFailGuestState as u32 | EXIT_REASON_ENTRY_FAILURE;
    let failure = ExitMessage { reason, qualification: 0, cpl: 0, ..exit() };
    exit_with(&mut t, v, failure);
    let [rax, _, info, reason_word, qualification, ..] = t.regs(ROOT_TCB);
    assert_eq!(rax, 0);
    assert_eq!(MsgInfo::from_raw(info).map(|i| i.label), Some(vm::EXIT_LABEL));
    assert_eq!((reason_word, qualification), (u64::from(reason), 0));
    let page = *t.k.store.frame(msg);
    let words: Vec<u64> =
        page.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let decoded = ExitMessage::from_words(&words[..ExitMessage::BASE_WORDS]).unwrap();
    assert!(decoded.is_entry_failure());
    assert_eq!(decoded.basic_reason(), Some(ExitReason::EntryFailGuestState));
    // The VMM stops the vCPU: accepted, nothing else happens, and it stays stopped.
    let mut reply = ExitReply::new();
    reply.flags = ReplyFlags::STOP_VCPU;
    write_reply(&mut t, msg, &reply);
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "refused: {:?}", t.regs(ROOT_TCB));
    assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive);
    assert_eq!(t.k.store.sched(ROOT_TCB).caller, 0, "no reply is owed any more");
    // VCpuStart runs it again, and the next exit is an ordinary one.
    let (status, refusal) = start(&mut t, [vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0]);
    assert_eq!((status, refusal), (0, None));
    exit_with_cpuid(&mut t, v);
    assert_eq!(t.regs(ROOT_TCB)[3], ExitReason::Cpuid as u64);
}

#[test]
fn a_garbage_reply_area_is_an_error_not_a_crash() {
    let (mut t, v, msg) = started();
    exit_with_cpuid(&mut t, v);
    t.k.store.frame(msg)[vm::REPLY_OFFSET..].fill(0xa5);
    t.sys(Syscall::ReplyRecv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::BatchRejected as u64);
    assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive);
    assert_eq!(t.k.current, ROOT_TCB, "a failed ReplyRecv does not block");
}

#[test]
fn deleting_a_running_vcpu_is_clean() {
    let (mut t, v, _) = started();
    exit_with_cpuid(&mut t, v);
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[VCPU]), 0);
    assert!(t.k.vmcs_released);
    assert_eq!(t.k.store.sched(ROOT_TCB).caller, 0, "the VMM no longer owes a reply");
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[GUEST]), 0);
    assert!(t.k.ept_stale);
}

#[test]
fn passing_ports_clears_exactly_their_bits() {
    let (mut t, v, _) = started();
    let (post, wide) = (slot::FREE + 60, slot::FREE + 61);
    // 0x80 from the root range 0x44-0x9f, and 0x7ffe-0x8001 across the two bitmaps.
    let root = |i: u64| slot::FIRST_IO_PORTS + i;
    assert_eq!(invoke(&mut t, root(2), Invocation::IoPortsCarve, &[0x80, 0x80, post]), 0);
    assert_eq!(invoke(&mut t, root(3), Invocation::IoPortsCarve, &[0x7ffe, 0x8001, wide]), 0);
    for ports in [post, wide] {
        assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuPassPorts, &[ports]), 0);
    }
    let a = *t.k.store.frame(v + crate::vcpu::IO_BITMAP_OFFSET);
    let b = *t.k.store.frame(v + crate::vcpu::IO_BITMAP_OFFSET + 0x1000);
    let cleared = |map: &[u8; 4096]| map.iter().map(|b| b.count_zeros()).sum::<u32>();
    assert_eq!((a[0x10], a[0xfff], b[0]), (0xfe, 0x3f, 0xfc));
    assert_eq!((cleared(&a), cleared(&b)), (3, 2), "no other port passes");
    assert_eq!(
        invoke(&mut t, VCPU, Invocation::VCpuPassPorts, &[RAM]),
        Error::WrongType as u64,
        "only an IoPorts capability grants ports"
    );
    assert_eq!(
        invoke(&mut t, VCPU, Invocation::VCpuPassPorts, &[slot::FREE + 62]),
        Error::InvalidCapability as u64
    );
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuPassPorts, &[]), Error::InvalidArgument as u64);
}

#[test]
fn revoking_a_passed_capability_makes_its_ports_exit_again() {
    let (mut t, v, _) = started();
    let (post, wide) = (slot::FREE + 60, slot::FREE + 61);
    let root = |i: u64| slot::FIRST_IO_PORTS + i;
    assert_eq!(invoke(&mut t, root(2), Invocation::IoPortsCarve, &[0x80, 0x80, post]), 0);
    assert_eq!(invoke(&mut t, root(2), Invocation::IoPortsCarve, &[0x80, 0x83, wide]), 0);
    for ports in [post, wide] {
        assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuPassPorts, &[ports]), 0);
    }
    let a = |t: &mut Testbed| t.k.store.frame(v + crate::vcpu::IO_BITMAP_OFFSET)[0x10];
    assert_eq!(a(&mut t), 0xf0, "0x80-0x83 pass");
    // The VCpu's copies are derived from the capabilities passed: revoking `wide` takes
    // its copy, and before the guest runs again those ports exit.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[wide]), 0);
    t.k.refresh_pass_through(v);
    assert_eq!(a(&mut t), 0xfe, "0x81-0x83 exit again; 0x80 is still passed by `post`");
    // Deleting `post` itself is no revoke: the VCpu's copy stays, and so does 0x80.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[post]), 0);
    t.k.refresh_pass_through(v);
    assert_eq!(a(&mut t), 0xfe);
    // Revoking the root range the VMM carved them from withdraws everything.
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[root(2)]), 0);
    t.k.refresh_pass_through(v);
    assert_eq!(a(&mut t), 0xff, "nothing passes");
    // At most VCPU_PASS_SLOTS ranges at a time.
    for i in 0..crate::store::VCPU_PASS_SLOTS as u64 {
        let s = slot::FREE + 70 + i;
        assert_eq!(invoke(&mut t, root(2), Invocation::IoPortsCarve, &[0x90 + i, 0x90 + i, s]), 0);
        assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuPassPorts, &[s]), 0);
    }
    let s = slot::FREE + 80;
    assert_eq!(invoke(&mut t, root(2), Invocation::IoPortsCarve, &[0x9f, 0x9f, s]), 0);
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuPassPorts, &[s]), Error::InUse as u64);
}

const LSTAR: u64 = 0xc000_0082;
const STAR: u64 = 0xc000_0081;
const TSC_AUX: u64 = 0xc000_0103;

/// MSR-area entry `i` of the area at physical `area`: (index, value).
fn msr_entry(t: &mut Testbed, area: u64, i: usize) -> (u64, u64) {
    let page = t.k.store.frame(area & !0xfff);
    let at = (area & 0xfff) as usize + 16 * i;
    let word = |at: usize| u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
    (word(at) & 0xffff_ffff, word(at + 8))
}

#[test]
fn switched_msrs_fill_both_areas_and_open_the_bitmap() {
    use crate::vcpu_passthrough::{GUEST_MSR_AREA_OFFSET, HOST_MSR_AREA_OFFSET};
    let mut t = configured();
    let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
    let switch = |t: &mut Testbed, msr: u64, value: u64| {
        invoke(t, VCPU, Invocation::VCpuSwitchMsr, &[msr, value])
    };
    assert_eq!(switch(&mut t, LSTAR, 0xffff_8000_0000_1000), 0);
    assert_eq!(switch(&mut t, STAR, 0x23_0010_0000_0000), 0);
    assert_eq!(switch(&mut t, LSTAR, 0x40_1000), 0, "a second switch sets the guest value");
    let host = crate::vmx::samples::host_msrs().values;
    let guest_area = v + GUEST_MSR_AREA_OFFSET;
    let host_area = v + HOST_MSR_AREA_OFFSET;
    assert_eq!(msr_entry(&mut t, guest_area, 0), (LSTAR, 0x40_1000));
    assert_eq!(msr_entry(&mut t, guest_area, 1), (STAR, 0x23_0010_0000_0000));
    assert_eq!(msr_entry(&mut t, host_area, 0), (LSTAR, host[1]));
    assert_eq!(msr_entry(&mut t, host_area, 1), (STAR, host[0]));
    assert_eq!(t.k.store.vcpu(v).msr_count, 2);
    // Reads and writes of MSR 0xc000_0082 no longer exit; 0xc000_0080 (EFER) still does.
    let bitmap = *t.k.store.frame(v + crate::vcpu::MSR_BITMAP_OFFSET);
    assert_eq!((bitmap[0x410], bitmap[0xc10]), (0xf9, 0xf9));
    assert_eq!(bitmap.iter().map(|b| b.count_zeros()).sum::<u32>(), 4);

    let refused = [
        (0xc000_0080, 0, Error::NotSupported),
        (0x10, 0, Error::NotSupported),
        (1 << 32 | LSTAR, 0, Error::NotSupported),
        (LSTAR, 0x8000_0000_0000_0000, Error::InvalidArgument),
        (0xc000_0084, 1 << 32, Error::InvalidArgument),
    ];
    for (msr, value, e) in refused {
        assert_eq!(switch(&mut t, msr, value), e as u64, "{msr:#x} = {value:#x}");
    }
    assert_eq!(t.k.store.vcpu(v).msr_count, 2, "refusals change nothing");
    // A CPU without RDTSCP or RDPID has no TSC_AUX.
    t.k.vmx.as_mut().unwrap().host_msrs.present &= !(1 << 5);
    assert_eq!(switch(&mut t, TSC_AUX, 0), Error::NotSupported as u64);

    // The VMCS names the kernel's areas, with the count at start.
    assert_eq!(
        invoke(&mut t, VCPU, Invocation::VCpuStart, &[vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0]),
        0
    );
    let data = t.k.store.vcpu(v);
    assert!(!data.msr_areas_changed, "the initial VMCS carries the counts");
    let init = data.init.expect("initial VMCS");
    for (field, value) in [
        (Field::EntryMsrLoadAddress, guest_area),
        (Field::ExitMsrStoreAddress, guest_area),
        (Field::ExitMsrLoadAddress, host_area),
        (Field::EntryMsrLoadCount, 2),
        (Field::ExitMsrStoreCount, 2),
        (Field::ExitMsrLoadCount, 2),
    ] {
        assert_eq!(init.get(field), Some(value), "{field:?}");
    }
    // Switching one more while it runs has the counts rewritten before the next entry.
    assert_eq!(switch(&mut t, 0xc000_0102, 0), 0);
    assert!(t.k.store.vcpu(v).msr_areas_changed);
    assert_eq!(t.k.store.vcpu(v).msr_count, 3);
}

#[test]
fn reflecting_an_intercepted_page_fault_gives_the_guest_its_address() {
    let mut t = configured();
    let long = [vcpu_mode::LONG64 | 50 << 8, 0x1000, 0x8000, 0x2000];
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &long), 0);
    let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
    let Cap::Frame { addr: msg, .. } = t.cap(MSG) else { panic!() };
    let page_fault = ExitMessage {
        reason: ExitReason::ExceptionOrNmi as u32,
        exit_intr_info: EventInjection::exception(14).raw(),
        exit_intr_error: 2,
        qualification: 0x4000_0000,
        ..exit()
    };
    let mut reflect = ExitReply::new();
    reflect.inject(EventInjection::exception(14), 2, 0);

    // A #PF that is not reflected (here: resumed to retry) leaves CR2 alone.
    exit_with(&mut t, v, page_fault);
    write_reply(&mut t, msg, &ExitReply::new());
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
    assert_eq!(t.k.store.vcpu(v).cr2, 0);
    // Injecting #PF after another exit (the VMM's own emulation) leaves it alone too.
    exit_with_cpuid(&mut t, v);
    write_reply(&mut t, msg, &reflect);
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "{:?}", t.regs(ROOT_TCB));
    assert_eq!(t.k.store.vcpu(v).cr2, 0);
    // Reflected: the guest's handler finds the address in CR2.
    exit_with(&mut t, v, page_fault);
    write_reply(&mut t, msg, &reflect);
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0);
    assert_eq!(t.k.store.vcpu(v).cr2, 0x4000_0000);
    // A #PF the VMM raised (emulating an access) names its own address; the flag with
    // no #PF to go with it is refused, and CR2 stays.
    let mut raised = reflect;
    raised.flags = raised.flags.union(ReplyFlags::PAGE_FAULT_ADDRESS);
    raised.fault_address = 0x7000_1234;
    let mut lone = ExitReply::new();
    lone.flags = ReplyFlags::PAGE_FAULT_ADDRESS;
    lone.fault_address = 0x5000;
    for (reply, accepted) in [(raised, true), (lone, false)] {
        exit_with_cpuid(&mut t, v);
        write_reply(&mut t, msg, &reply);
        t.sys(Syscall::Reply as u64, [0; 6]);
        assert_eq!(t.regs(ROOT_TCB)[0] == 0, accepted);
        assert_eq!(t.k.store.vcpu(v).cr2, 0x7000_1234);
    }
}

/// One reply to a CPUID exit by `ReplyRecv` on the exit endpoint, through the fastpath
/// when `fast` (as the kernel entry tries it first) or the slow path only: whether the
/// fastpath took it, and everything the round trip decides.
fn reply_recv_round_trip(fast: bool, reply: &ExitReply) -> (bool, Vec<u64>, Vec<ThreadState>) {
    reply_recv_round_trip_after(fast, reply, |_| {})
}

/// [`reply_recv_round_trip`], with `meanwhile` run by the VMM between the exit and its
/// reply.
fn reply_recv_round_trip_after(
    fast: bool,
    reply: &ExitReply,
    meanwhile: impl FnOnce(&mut Testbed),
) -> (bool, Vec<u64>, Vec<ThreadState>) {
    let (mut t, v, msg) = started();
    exit_with_cpuid(&mut t, v);
    meanwhile(&mut t);
    assert_eq!(t.k.current, ROOT_TCB);
    write_reply(&mut t, msg, reply);
    let c = &mut t.k.store.tcb(ROOT_TCB).context;
    (c.rax, c.rdi, c.rsi) = (Syscall::ReplyRecv as u64, EXIT_EP, 0);
    let took = fast && t.k.fastpath() == crate::fastpath::FastPath::Guest;
    if !took {
        t.k.syscall(&mut t.out);
    }
    let data = t.k.store.vcpu(v);
    let mut seen = vec![t.k.current, data.pending().len() as u64, data.cached.rip];
    seen.extend(data.pending().iter().map(|&(f, value)| f as u64 ^ value));
    seen.extend(data.gprs.regs);
    seen.push(t.regs(ROOT_TCB)[0]);
    let states = vec![t.k.store.sched(ROOT_TCB).state, t.k.store.sched(v).state];
    (took, seen, states)
}

#[test]
fn the_reply_fastpath_gives_what_the_slow_path_gives() {
    let mut reply = ExitReply::new();
    reply.flags = ReplyFlags::ADVANCE_RIP;
    reply.set_gpr(Gprs::RAX, 0x1234).unwrap();
    reply.write(Field::GuestRflags, 0x202).unwrap();
    let (took, fast, fast_states) = reply_recv_round_trip(true, &reply);
    assert!(took, "a valid batch that does not stop the vCPU takes the fastpath");
    let (_, slow, slow_states) = reply_recv_round_trip(false, &reply);
    assert_eq!(fast, slow);
    assert_eq!(fast_states, slow_states);
    assert_eq!(fast_states[1], ThreadState::Ready, "the vCPU runs on");
    // A refused batch, and one that stops the vCPU, are left to the slow path, which
    // reports the refusal to the VMM.
    let mut bad = ExitReply::new();
    bad.write(Field::HostRip, 0).unwrap();
    let (took, seen, states) = reply_recv_round_trip(true, &bad);
    assert!(!took);
    assert_eq!(*seen.last().unwrap(), Error::BatchRejected as u64);
    assert_eq!(states[1], ThreadState::Inactive);
    let mut stop = ExitReply::new();
    stop.flags = ReplyFlags::STOP_VCPU;
    let (took, _, states) = reply_recv_round_trip(true, &stop);
    assert!(!took);
    assert_eq!(states[1], ThreadState::Inactive);
}

/// What the reply fastpath must leave to the slow path, which decides otherwise than a
/// direct switch to the vCPU would: a ready thread of the vCPU's priority has its turn
/// first; a sender already waiting on the exit endpoint is received; a vCPU whose guest
/// space was revoked cannot run.
#[test]
fn the_reply_fastpath_declines_what_the_slow_path_decides_otherwise() {
    let mut reply = ExitReply::new();
    reply.flags = ReplyFlags::ADVANCE_RIP;
    let a_ready_equal = |t: &mut Testbed| {
        assert_eq!(retype(t, ObjectType::Tcb, 0, 46), 0);
        invoke(t, 46, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, u64::MAX]);
        invoke(t, 46, Invocation::TcbSetPriority, &[50]);
        invoke(t, 46, Invocation::TcbResume, &[]);
    };
    let a_waiting_sender = |t: &mut Testbed| {
        assert_eq!(retype(t, ObjectType::Tcb, 0, 46), 0);
        invoke(t, 46, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, u64::MAX]);
        invoke(t, 46, Invocation::TcbSetPriority, &[100]);
        invoke(t, 46, Invocation::TcbResume, &[]);
        t.sys(Syscall::Yield as u64, [0; 6]);
        assert_ne!(t.k.current, ROOT_TCB);
        t.sys(Syscall::Send as u64, [EXIT_EP, MsgInfo::new(9, 0).to_raw(), 0, 0, 0, 0]);
    };
    let a_revoked_guest_space = |t: &mut Testbed| {
        assert_eq!(invoke(t, slot::CNODE, Invocation::CNodeRevoke, &[GUEST]), 0);
    };
    for (what, meanwhile) in [
        ("a ready thread of its priority", &a_ready_equal as &dyn Fn(&mut Testbed)),
        ("a sender waiting on the exit endpoint", &a_waiting_sender),
        ("its guest space revoked", &a_revoked_guest_space),
    ] {
        let (took, fast, fast_states) = reply_recv_round_trip_after(true, &reply, meanwhile);
        assert!(!took, "the fastpath took a reply with {what}");
        let (_, slow, slow_states) = reply_recv_round_trip_after(false, &reply, meanwhile);
        assert_eq!((fast, fast_states), (slow, slow_states), "{what}");
    }
}

/// An exit while the VMM waits elsewhere queues on the exit endpoint (the slow path) and
/// reaches the VMM with the same words once it receives there.
#[test]
fn an_exit_waits_for_a_vmm_that_is_not_receiving() {
    let (mut t, v, frame) = started();
    const NTFN: u64 = 45;
    assert_eq!(retype(&mut t, ObjectType::Notification, 0, NTFN), 0);
    t.sys(Syscall::Recv as u64, [NTFN, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, v);
    let msg = ExitMessage { reason: ExitReason::Cpuid as u32, instruction_len: 2, ..exit() };
    assert_eq!(t.k.vcpu_exit(&msg), Next::Idle);
    assert!(matches!(t.k.store.sched(v).state, ThreadState::BlockedSend { call: true, .. }));
    let Cap::Notification { addr: ntfn, .. } = t.cap(NTFN) else { panic!() };
    t.k.signal(ntfn, 1);
    assert_eq!((t.k.schedule(), t.k.current), (Next::Run, ROOT_TCB));
    t.sys(Syscall::Recv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    let [rax, _, info, reason, _, rip, len] = t.regs(ROOT_TCB);
    assert_eq!(rax, 0);
    assert_eq!(MsgInfo::from_raw(info).map(|i| i.label), Some(vm::EXIT_LABEL));
    assert_eq!((reason, rip, len), (ExitReason::Cpuid as u64, 0x1000, 2));
    assert_eq!(t.k.store.sched(v).state, ThreadState::BlockedReply { server: ROOT_TCB });
    // The exit travelled as the kernel's message for the vCPU (it has no registers to
    // carry one); the reply answers it and the vCPU runs on.
    assert!(t.k.store.sched(v).message.is_some());
    let mut reply = ExitReply::new();
    reply.flags = ReplyFlags::ADVANCE_RIP;
    write_reply(&mut t, frame, &reply);
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "refused: {:?}", t.regs(ROOT_TCB));
    assert_eq!(t.k.store.sched(v).message, None);
    assert_eq!(t.k.store.sched(v).state, ThreadState::Ready);
    assert!(t.k.store.vcpu(v).pending().contains(&(Field::GuestRip, 0x1002)));
}

/// A vCPU waiting for its VMM's reply when the VMM's thread is suspended runs again (and
/// meets its exit again) rather than being given a status: it has no registers for one.
#[test]
fn a_vcpu_whose_vmm_goes_away_runs_on_as_it_was() {
    let (mut t, v, _) = started();
    const VMM_TCB: u64 = 46;
    assert_eq!(retype(&mut t, ObjectType::Tcb, 0, VMM_TCB), 0);
    let Cap::Tcb { addr: vmm } = t.cap(VMM_TCB) else { panic!() };
    exit_with_cpuid(&mut t, v);
    // The exit went by the fastpath: no kernel message is pending for it.
    assert_eq!(t.k.store.sched(v).message, None);
    assert_eq!(t.k.store.sched(ROOT_TCB).caller, v);
    // The root task hands the reply it owes to another thread, which is then suspended.
    t.k.store.sched(ROOT_TCB).caller = 0;
    t.k.store.sched(vmm).caller = v;
    t.k.store.sched(v).state = ThreadState::BlockedReply { server: vmm };
    t.k.suspend(vmm);
    assert_eq!(t.k.store.sched(v).state, ThreadState::Ready);
    assert!(!t.k.store.tcbs.contains_key(&v), "a VCpu never gets a TCB's registers");
}

/// `VCpuStart` with `WITH_BATCH` applies the reply area's batch before the first entry
/// (what a boot protocol needs: RSI, a descriptor table); a refused batch leaves the vCPU
/// unstarted, the reason in the result registers.
#[test]
fn a_start_batch_sets_registers_and_state_before_the_first_entry() {
    let long = [vcpu_mode::LONG64 | vcpu_mode::WITH_BATCH | 50 << 8, 0x1000, 0x8000, 0x2000];
    let mut t = configured();
    let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
    let Cap::Frame { addr: msg, .. } = t.cap(MSG) else { panic!() };
    let mut batch = ExitReply::new();
    batch.set_gpr(Gprs::RSI, 0x7000).unwrap();
    batch.write(Field::GuestGdtrBase, 0x1000).unwrap();
    write_reply(&mut t, msg, &batch);
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &long), 0);
    let data = t.k.store.vcpu(v);
    assert_eq!(data.gprs.get(Gprs::RSI), Some(0x7000));
    assert!(data.pending().contains(&(Field::GuestGdtrBase, 0x1000)));
    assert!(data.started && t.k.runnable(v));

    let mut t = configured();
    let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
    let mut bad = ExitReply::new();
    bad.write(Field::HostRip, 0).unwrap();
    write_reply(&mut t, msg, &bad);
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &long), Error::BatchRejected as u64);
    let refused = BatchError::FieldNotWritable { field: Field::HostRip as u32 };
    assert_eq!(t.regs(ROOT_TCB)[3..5], [u64::from(refused.code()), Field::HostRip as u64]);
    assert!(!t.k.store.vcpu(v).started && !t.k.runnable(v));
    assert_eq!(t.k.store.sched(v).state, ThreadState::Inactive);
    // Without the flag the reply area is not looked at.
    let plain = [vcpu_mode::LONG64 | 50 << 8, 0x1000, 0x8000, 0x2000];
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &plain), 0);
}

/// A VM torn down by revoking the untyped memory it came from: its VCpu, guest space,
/// guest RAM, exit endpoint and message frame go, whatever the vCPU was doing (here:
/// waiting for the VMM's reply to an exit), the memory is whole again, and the next VM is
/// built from the same bytes. A hundred times, each VM running an exit round trip first.
#[test]
fn a_vm_is_built_and_torn_down_a_hundred_times_from_the_same_untyped() {
    let mut t = Testbed::with_vmx();
    let untyped = |t: &mut Testbed| t.cap(slot::UNTYPED);
    let fresh = untyped(&mut t);
    let idle = t.k.sched.on(0).highest();
    let mut first = None;
    for round in 0..100 {
        assert_eq!(retype(&mut t, ObjectType::VCpu, 0, VCPU), 0, "round {round}");
        assert_eq!(retype(&mut t, ObjectType::GuestSpace, 14, GUEST), 0);
        assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, EXIT_EP), 0);
        assert_eq!(retype(&mut t, ObjectType::Frame, 0, MSG), 0);
        assert_eq!(retype(&mut t, ObjectType::Frame, 0, RAM), 0);
        let flags = map::WRITE | map::EXECUTE;
        assert_eq!(invoke(&mut t, RAM, Invocation::FrameMapGuest, &[GUEST, 0x1000, flags]), 0);
        assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuConfigure, &[GUEST, EXIT_EP, MSG, 0]), 0);
        let start = [vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0];
        assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &start), 0);
        let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!("round {round}: no VCpu") };
        // The same memory every time: the objects land where they did in the first round.
        assert_eq!(*first.get_or_insert(v), v, "round {round}: the VCpu moved");
        // One exit reaches the VMM and is answered; the next leaves the vCPU waiting.
        let Cap::Frame { addr: msg, .. } = t.cap(MSG) else { panic!() };
        exit_with_cpuid(&mut t, v);
        write_reply(&mut t, msg, &ExitReply::new());
        t.sys(Syscall::Reply as u64, [0; 6]);
        assert_eq!(t.regs(ROOT_TCB)[0], 0, "round {round}: reply refused");
        exit_with_cpuid(&mut t, v);
        // Tear down: every object made from the untyped goes, and its memory is free.
        assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[slot::UNTYPED]), 0);
        for s in [VCPU, GUEST, EXIT_EP, MSG, RAM] {
            assert_eq!(t.cap(s), Cap::Null, "round {round}: slot {s} survived the revoke");
        }
        assert_eq!(untyped(&mut t), fresh, "round {round}: the untyped is not whole again");
        assert_eq!(t.k.current, ROOT_TCB, "round {round}: the root task runs on");
        // Nothing of the VM is left to schedule.
        assert_eq!(t.k.sched.on(0).highest(), idle, "round {round}: a thread is left queued");
    }
}

/// A whole VM, its VMM process included (thread, CNode, address space), made from one
/// untyped and torn down by revoking it while the VMM holds an exit it has not answered,
/// a hundred times: nothing survives, the memory is whole again, and the rest runs on.
#[test]
fn a_vm_and_its_vmm_are_torn_down_mid_exit_a_hundred_times() {
    const VMM: u64 = 50;
    const VMM_CNODE: u64 = 51;
    const VMM_VSPACE: u64 = 52;
    const WAKE: u64 = 53;
    let mut t = Testbed::with_vmx();
    let fresh = t.cap(slot::UNTYPED);
    let idle = t.k.sched.on(0).highest();
    for round in 0..100 {
        for (ty, bits, at) in [
            (ObjectType::VCpu, 0, VCPU),
            (ObjectType::GuestSpace, 14, GUEST),
            (ObjectType::Endpoint, 0, EXIT_EP),
            (ObjectType::Frame, 0, MSG),
            (ObjectType::Frame, 0, RAM),
            (ObjectType::Tcb, 0, VMM),
            (ObjectType::CNode, 4, VMM_CNODE),
            (ObjectType::VSpace, 14, VMM_VSPACE),
            (ObjectType::Notification, 0, WAKE),
        ] {
            assert_eq!(retype(&mut t, ty, bits, at), 0, "round {round}: {ty:?}");
        }
        let flags = map::WRITE | map::EXECUTE;
        assert_eq!(invoke(&mut t, RAM, Invocation::FrameMapGuest, &[GUEST, 0x1000, flags]), 0);
        assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuConfigure, &[GUEST, EXIT_EP, MSG, 0]), 0);
        // The VMM: its exit endpoint in slot 1 and the root task's wake-up in slot 2.
        let all = u64::from(protocols::rights::Rights::ALL.bits());
        assert_eq!(invoke(&mut t, VMM_CNODE, Invocation::CNodeCopy, &[EXIT_EP, 1, all]), 0);
        assert_eq!(invoke(&mut t, VMM_CNODE, Invocation::CNodeCopy, &[WAKE, 2, all]), 0);
        let vmm_caps = [VMM_CNODE, VMM_VSPACE, u64::MAX];
        assert_eq!(invoke(&mut t, VMM, Invocation::TcbConfigure, &vmm_caps), 0);
        invoke(&mut t, VMM, Invocation::TcbSetPriority, &[100]);
        invoke(&mut t, VMM, Invocation::TcbResume, &[]);
        let Cap::Tcb { addr: vmm } = t.cap(VMM) else { panic!() };
        t.sys(Syscall::Yield as u64, [0; 6]);
        assert_eq!(t.k.current, vmm, "round {round}: the VMM runs");
        t.sys(Syscall::Recv as u64, [1, 0, 0, 0, 0, 0]);
        assert_eq!(t.k.current, ROOT_TCB);
        let start = [vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0];
        assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &start), 0);
        let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
        // The root task waits; the vCPU runs and exits to its VMM, which keeps the exit,
        // wakes the root task and yields to it.
        t.sys(Syscall::Recv as u64, [WAKE, 0, 0, 0, 0, 0]);
        assert_eq!(t.k.current, v);
        let msg = ExitMessage { reason: ExitReason::Cpuid as u32, instruction_len: 2, ..exit() };
        t.k.vcpu_exit(&msg);
        assert_eq!(t.k.current, vmm);
        assert_eq!(t.k.store.sched(v).state, ThreadState::BlockedReply { server: vmm });
        t.sys(Syscall::Send as u64, [2, 0, 0, 0, 0, 0]);
        t.sys(Syscall::Yield as u64, [0; 6]);
        assert_eq!(t.k.current, ROOT_TCB, "round {round}: the root task runs again");
        // Tear it all down.
        assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeRevoke, &[slot::UNTYPED]), 0);
        for s in [VCPU, GUEST, EXIT_EP, MSG, RAM, VMM, VMM_CNODE, VMM_VSPACE, WAKE] {
            assert_eq!(t.cap(s), Cap::Null, "round {round}: slot {s} survived the revoke");
        }
        assert_eq!(t.cap(slot::UNTYPED), fresh, "round {round}: the untyped is not whole again");
        assert_eq!((t.k.current, t.k.sched.on(0).highest()), (ROOT_TCB, idle), "round {round}");
        assert!(t.k.vmcs_released, "round {round}: the VMCS is let go");
        t.k.vmcs_released = false;
    }
}

/// Only a hardware #PF that the exception bitmap intercepted is a page fault whose
/// address a reflected #PF hands the guest; other exceptions, a software INT 14 and
/// information without its valid bit are not.
#[test]
fn only_an_intercepted_hardware_page_fault_is_one() {
    use protocols::vmexit::EventType;
    let (mut t, v, _) = started();
    let exception = |info: u32| ExitMessage {
        reason: ExitReason::ExceptionOrNmi as u32,
        exit_intr_info: info,
        qualification: 0x4000_0000,
        ..exit()
    };
    let page_fault = EventInjection::exception(14).raw();
    for (info, is_one) in [
        (page_fault, true),
        (EventInjection::exception(13).raw(), false),
        (EventInjection::new(14, EventType::SoftwareException, false).raw(), false),
        (page_fault & !EventInjection::VALID, false),
    ] {
        exit_with(&mut t, v, exception(info));
        let seen = t.k.store.vcpu(v).page_fault;
        assert_eq!(seen, is_one.then_some(0x4000_0000), "{info:#x}");
        t.sys(Syscall::Reply as u64, [0; 6]);
    }
}

/// `VCpuConfigure` needs an exit endpoint it may call and a frame it may read and write;
/// configuring again replaces the bindings.
#[test]
fn configure_checks_its_rights_and_rebinds() {
    let mut t = configured();
    let copy = |t: &mut Testbed, src, dst, r: Rights| {
        invoke(t, slot::CNODE, Invocation::CNodeCopy, &[src, dst, r.bits().into()])
    };
    assert_eq!(copy(&mut t, EXIT_EP, 46, Rights::WRITE.union(Rights::READ)), 0);
    assert_eq!(copy(&mut t, MSG, 47, Rights::READ), 0);
    let configure = |t: &mut Testbed, ep, frame| {
        invoke(t, VCPU, Invocation::VCpuConfigure, &[GUEST, ep, frame, 0])
    };
    let denied = Error::InsufficientRights as u64;
    assert_eq!(configure(&mut t, 46, MSG), denied, "an exit endpoint without CALL");
    assert_eq!(configure(&mut t, EXIT_EP, 47), denied, "a read-only message frame");
    // A second exit endpoint replaces the first: the next exit goes there.
    assert_eq!(retype(&mut t, ObjectType::Endpoint, 0, 48), 0);
    assert_eq!(configure(&mut t, 48, MSG), 0);
    let start = [vcpu_mode::PROTECTED32 | 40 << 8, 0x1000, 0x8000, 0];
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuStart, &start), 0, "a 32-bit start");
    let Cap::VCpu { addr: v } = t.cap(VCPU) else { panic!() };
    assert_eq!(t.k.store.sched(v).priority, 40, "the priority it was started with");
    t.sys(Syscall::Recv as u64, [48, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, v);
    let msg = ExitMessage { reason: ExitReason::Cpuid as u32, instruction_len: 2, ..exit() };
    t.k.vcpu_exit(&msg);
    assert_eq!(t.k.current, ROOT_TCB, "the exit reached the new endpoint");
    assert_eq!(t.k.store.sched(v).state, ThreadState::BlockedReply { server: ROOT_TCB });
}

/// `VCpuKick`: a vCPU ready to enter its guest is marked for an exit at its next entry;
/// running on another CPU, that CPU is asked to reschedule (an IPI, never a stall);
/// waiting for its VMM, nothing changes and the result says so; a stopped one likewise.
#[test]
fn a_kick_marks_a_ready_vcpu_and_reaches_the_cpu_that_runs_it() {
    use crate::vcpu::Kick;
    let (mut t, v, _) = started();
    assert_eq!(t.k.store.sched(v).state, ThreadState::Ready);
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuKick, &[]), 0);
    assert_eq!(t.regs(ROOT_TCB)[3], 1, "kicked");
    assert_eq!(t.k.store.vcpu(v).kick, Kick::Asked);
    assert_eq!(t.k.reschedule, 0, "it runs on no other CPU");
    // Kicked twice before it ran: still one exit to come.
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuKick, &[]), 0);
    assert_eq!(t.k.store.vcpu(v).kick, Kick::Asked);

    // Running on CPU 1 (the kicker on CPU 0): CPU 1 gets a reschedule, and no stall.
    t.k.cpus = 2;
    t.k.stall = |_| panic!("a kick stalled a CPU");
    t.k.store.vcpu(v).kick = Kick::None;
    t.k.elsewhere[1] = v;
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuKick, &[]), 0);
    assert_eq!((t.k.reschedule, t.k.store.vcpu(v).kick), (1 << 1, Kick::Asked));
    assert_eq!(t.k.elsewhere[1], v, "the vCPU runs on there");
    t.k.elsewhere[1] = 0;
    t.k.reschedule = 0;

    // Waiting for its VMM: its exit reaches the VMM anyway.
    let (mut t, v, _) = started();
    exit_with_cpuid(&mut t, v);
    assert!(matches!(t.k.store.sched(v).state, ThreadState::BlockedReply { .. }));
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuKick, &[]), 0);
    assert_eq!((t.regs(ROOT_TCB)[3], t.k.store.vcpu(v).kick), (0, Kick::None));

    // Never started: nothing to leave.
    let mut t = configured();
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuKick, &[]), 0);
    assert_eq!(t.regs(ROOT_TCB)[3], 0);
    // A TCB is no VCpu.
    assert_eq!(invoke(&mut t, slot::TCB, Invocation::VCpuKick, &[]), Error::WrongType as u64);
}

/// Without a VMX-preemption timer there is no kick.
#[test]
fn without_a_preemption_timer_a_kick_is_not_supported() {
    let (mut t, _, _) = started();
    if let Some(vmx) = &mut t.k.vmx {
        vmx.caps.pinbased.may_be_one &= !protocols::vmcs::ctl::pin::PREEMPTION_TIMER;
    }
    assert_eq!(invoke(&mut t, VCPU, Invocation::VCpuKick, &[]), Error::NotSupported as u64);
}

/// An exit the kernel keeps (a host interrupt) that cut an event's delivery short gives
/// the event to deliver again, bit 12 (NMI unblocking, undefined here) dropped; without
/// a delivery under way there is nothing to inject.
#[test]
fn an_event_cut_short_by_a_host_interrupt_is_delivered_again() {
    use crate::vcpu::reinjection;
    // External interrupt 0xfd (a Linux reschedule IPI the VMM injected).
    assert_eq!(reinjection(0x8000_00fd), Some(0x8000_00fd));
    // A #PF with its error code, bit 12 set by the CPU.
    assert_eq!(reinjection(0x8000_1b0e), Some(0x8000_0b0e));
    assert_eq!(reinjection(0x0000_00fd), None, "not valid");
    assert_eq!(reinjection(0), None);
}

/// The backstop timer (`VcpuData::backstop`) spans one scheduling tick: the TSC ticks of
/// a tick in preemption-timer units, each rounded up; none without the timer or a tick.
#[test]
fn the_backstop_timer_spans_one_tick() {
    use crate::vcpu::VmxInfo;
    let t = Testbed::with_vmx();
    let Some(vmx) = t.k.vmx else { panic!("no VT-x in the testbed") };
    // The Skylake model's timer counts at the TSC rate (shift 0).
    assert_eq!(vmx.backstop, 21_120_000);
    let at = |msrs: &VmxMsrs, tsc_hz, tick_hz| {
        let caps = VmxCaps::from_all(msrs);
        VmxInfo { caps, backstop: 7, ..vmx }.with_clock(tsc_hz, tick_hz)
    };
    // Shift 5: 21,120,001 ticks are 660,000.03 units, so 660,001.
    let slow = VmxMsrs { misc: SKYLAKE.misc | 5, ..SKYLAKE };
    assert_eq!(at(&slow, 2_112_000_001, 100).backstop, 660_001);
    assert_eq!(at(&slow, 2_112_000_001, 100).tsc_hz, 2_112_000_001);
    // A tick longer than the field holds: the field's largest value.
    assert_eq!(at(&SKYLAKE, u64::MAX, 1).backstop, u32::MAX);
    // A slow TSC still gets a timer that expires: at least one unit.
    assert_eq!(at(&slow, 1, 100).backstop, 1);
    // Without the timer (allowed-1 bit 6 clear), or before the TSC is measured: none.
    let no_timer = VmxMsrs { pinbased: 0x0000_003f_0000_0016, ..SKYLAKE };
    assert_eq!(at(&no_timer, 2_112_000_000, 100).backstop, 0);
    assert_eq!(at(&SKYLAKE, 0, 100).backstop, 0);
    assert_eq!(at(&SKYLAKE, 2_112_000_000, 0).backstop, 0);
}

/// What an exit the kernel keeps leaves of the preemption timer's count: the units the
/// guest ran, at the timer's rate, come off (never below zero), so a halted guest's timer
/// still expires under host ticks that each end an entry.
#[test]
fn kept_exits_count_the_preemption_timer_down() {
    use crate::vcpu::TimerCount;
    let count = TimerCount { loaded: 1000, over: 0, vmm: 1000, reduced: false };
    assert_eq!(count.left(5_000, 5_300, 0), 700);
    // Shift 5: 320 TSC ticks are 10 units.
    assert_eq!(count.left(5_000, 5_320, 5), 990);
    // The span includes the entry and exit: it may end the count early, never late.
    assert_eq!(count.left(0, 1_000_000, 0), 0);
    assert_eq!(count.left(0, u64::MAX, 0), 0);
    // A TSC that wrapped between entry and exit still counts the ticks between.
    assert_eq!(count.left(u64::MAX - 99, 100, 0), 800);
    // Ten host ticks of a 100-unit tick each leave a count of 1000 at zero: the timer
    // expires, where entries that started it afresh would never let it.
    let mut c = count;
    for i in 0..10u64 {
        c.loaded = c.left(i * 100, (i + 1) * 100, 0);
    }
    assert_eq!(c.loaded, 0);
}

/// The vCPU exits with CPUID and the VMM replies with `writes` (and ADVANCE_RIP); the
/// batch the kernel then holds for the next entry.
fn reply_to_cpuid(t: &mut Testbed, v: u64, msg: u64, writes: &[(Field, u64)]) -> Vec<(Field, u64)> {
    exit_with_cpuid(t, v);
    let mut reply = ExitReply::new();
    reply.flags = ReplyFlags::ADVANCE_RIP;
    for &(f, value) in writes {
        reply.write(f, value).unwrap();
    }
    write_reply(t, msg, &reply);
    t.sys(Syscall::Reply as u64, [0; 6]);
    assert_eq!(t.regs(ROOT_TCB)[0], 0, "refused: {:?}", t.regs(ROOT_TCB));
    t.k.store.vcpu(v).pending().to_vec()
}

/// The VMM's writes to the preemption timer replace the kernel's backstop (the next
/// entry arms it again while the VMM's timer is off) and become the count the kernel
/// follows; after kept exits counted the VMM's timer down, a reply that leaves its value
/// alone gets it written back, so the VMM's count starts afresh as it always did.
#[test]
fn timer_writes_replace_the_backstop_and_a_reply_restarts_a_counted_down_timer() {
    use crate::vcpu::TimerCount;
    use protocols::vmcs::ctl::pin;
    let (mut t, v, msg) = started();
    let reply_with = |t: &mut Testbed, writes: &[(Field, u64)]| reply_to_cpuid(t, v, msg, writes);
    // The backstop armed (as an entry arms it): a reply without timer writes keeps it.
    t.k.store.vcpu(v).backstop = true;
    let pending = reply_with(&mut t, &[]);
    assert!(t.k.store.vcpu(v).backstop);
    assert!(!pending.iter().any(|&(f, _)| f == Field::PreemptionTimerValue));
    // The VMM turns its timer on with a value: the backstop is gone, the value followed.
    let on = t.k.store.vcpu(v).cached.controls.pin | pin::PREEMPTION_TIMER;
    reply_with(&mut t, &[(Field::PinBasedControls, on.into()), (Field::PreemptionTimerValue, 900)]);
    let data = t.k.store.vcpu(v);
    assert!(!data.backstop);
    assert_eq!(data.timer, TimerCount { loaded: 900, over: 0, vmm: 900, reduced: false });
    // Kept exits counted it down to 300; the VMM's next reply leaves the value alone: the
    // kernel writes 900 back.
    data.timer = TimerCount { loaded: 300, over: 0, vmm: 900, reduced: true };
    let pending = reply_with(&mut t, &[]);
    assert!(pending.contains(&(Field::PreemptionTimerValue, 900)), "{pending:?}");
    assert_eq!(
        t.k.store.vcpu(v).timer,
        TimerCount { loaded: 900, over: 0, vmm: 900, reduced: false }
    );
    // A reply that writes its own value: that one, once.
    t.k.store.vcpu(v).timer = TimerCount { loaded: 300, over: 0, vmm: 900, reduced: true };
    let pending = reply_with(&mut t, &[(Field::PreemptionTimerValue, 50)]);
    let written: Vec<_> =
        pending.iter().filter(|&&(f, _)| f == Field::PreemptionTimerValue).collect();
    assert_eq!(written, [&(Field::PreemptionTimerValue, 50)]);
    assert_eq!(
        t.k.store.vcpu(v).timer,
        TimerCount { loaded: 50, over: 0, vmm: 50, reduced: false }
    );
    // The VMM turns its timer off: the backstop may come back, and nothing is restored.
    t.k.store.vcpu(v).timer.reduced = true;
    let off = on & !pin::PREEMPTION_TIMER;
    let pending = reply_with(&mut t, &[(Field::PinBasedControls, off.into())]);
    assert!(!pending.iter().any(|&(f, _)| f == Field::PreemptionTimerValue));
    assert!(!t.k.store.vcpu(v).timer.reduced);
}

/// An NMI that ends the guest's run is the host's (NMI exiting is always on): the kernel
/// keeps the exit, the VMM never sees it, and the vCPU enters its guest again. A page
/// fault the exception bitmap intercepted still reaches the VMM, its address noted.
#[test]
fn a_host_nmi_exit_stays_in_the_kernel() {
    let (mut t, v, _) = started();
    t.sys(Syscall::Recv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, v, "the vCPU runs once the VMM blocks");
    let nmi = ExitMessage {
        reason: ExitReason::ExceptionOrNmi as u32,
        exit_intr_info: 0x8000_0202,
        ..exit()
    };
    assert_eq!(t.k.vcpu_exit(&nmi), Next::Run);
    assert_eq!(t.k.current, v, "the vCPU runs on");
    assert_eq!(t.k.store.sched(v).state, ThreadState::Ready);
    assert!(matches!(t.k.store.sched(ROOT_TCB).state, ThreadState::BlockedRecv { .. }));
    // A #PF (hardware exception 14 with an error code) goes to the VMM.
    let fault = ExitMessage {
        reason: ExitReason::ExceptionOrNmi as u32,
        exit_intr_info: 0x8000_0b0e,
        qualification: 0xdead_b000,
        ..exit()
    };
    assert_eq!(t.k.vcpu_exit(&fault), Next::Run);
    assert_eq!(t.k.current, ROOT_TCB, "the exit reached the VMM");
    assert_eq!(t.k.store.vcpu(v).page_fault, Some(0xdead_b000));
}

/// A VMM's timer value longer than the backstop's tick goes into the field as one tick,
/// the rest held back (`TimerCount::over`), and its expiry is then the kernel's: no value
/// keeps the kernel from its CPU. With the VMM's "save" exit control the CPU keeps the
/// count, and the field gets the value whole.
#[test]
fn a_timer_longer_than_a_tick_is_counted_a_tick_at_a_time() {
    use crate::vcpu::TimerCount;
    use protocols::vmcs::ctl::{exit, pin};
    let mut c = TimerCount::default();
    c.count(100, 0);
    assert_eq!((c.loaded, c.over), (100, 0), "no cap");
    c.count(100, 30);
    assert_eq!((c.loaded, c.over), (30, 70));
    c.count(20, 30);
    assert_eq!((c.loaded, c.over), (20, 0));

    let (mut t, v, msg) = started();
    let Some(vmx) = t.k.vmx else { panic!("no VT-x in the testbed") };
    let cap = vmx.backstop;
    let on = t.k.store.vcpu(v).cached.controls.pin | pin::PREEMPTION_TIMER;
    let long = u64::from(u32::MAX);
    let pending = reply_to_cpuid(
        &mut t,
        v,
        msg,
        &[(Field::PinBasedControls, on.into()), (Field::PreemptionTimerValue, long)],
    );
    assert!(pending.contains(&(Field::PreemptionTimerValue, cap.into())), "{pending:?}");
    assert!(!pending.contains(&(Field::PreemptionTimerValue, long)));
    let data = t.k.store.vcpu(v);
    assert_eq!(
        data.timer,
        TimerCount { loaded: cap, over: u32::MAX - cap, vmm: u32::MAX, reduced: false }
    );
    assert!(data.timer_counted() && data.kernel_timer(), "its expiry is the kernel's");
    // A value within the tick: whole, and its expiry the VMM's.
    let pending = reply_to_cpuid(&mut t, v, msg, &[(Field::PreemptionTimerValue, 5_000)]);
    assert!(pending.contains(&(Field::PreemptionTimerValue, 5_000)));
    assert!(!t.k.store.vcpu(v).kernel_timer());
    // The save control: the CPU counts, the kernel neither caps nor claims the expiry.
    let saving = t.k.store.vcpu(v).cached.controls.exit | exit::SAVE_PREEMPTION_TIMER;
    let pending = reply_to_cpuid(
        &mut t,
        v,
        msg,
        &[(Field::ExitControls, saving.into()), (Field::PreemptionTimerValue, long)],
    );
    assert!(pending.contains(&(Field::PreemptionTimerValue, long)), "{pending:?}");
    let data = t.k.store.vcpu(v);
    assert_eq!((data.timer.over, data.timer_counted(), data.kernel_timer()), (0, false, false));
}
