//! The VCpu life cycle on the host: creation, guest memory, start, an exit delivered to
//! the VMM as IPC, a valid reply batch applied, and hostile batches refused whole.

use crate::cap::Cap;
use crate::paging::PhysMemory;
use crate::state::Next;
use crate::store::Store;
use crate::tcb::ThreadState;
use crate::testbed::{slot, Testbed, ROOT_TCB};
use crate::vmx::ept::{Ept, EptVpidCaps};
use protocols::error::Error;
use protocols::ipc::MsgInfo;
use protocols::object::{map, vcpu_mode, vm, Invocation, ObjectType};
use protocols::syscall::Syscall;
use protocols::vmcs::Field;
use protocols::vmexit::{BatchError, ExitMessage, ExitReason, ExitReply, Gprs, ReplyFlags};

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
    assert_eq!(
        invoke(&mut t, VCPU, Invocation::VCpuStart, &[vcpu_mode::REAL | 50 << 8, 0x1000, 0, 0]),
        0
    );
    let Cap::VCpu { addr } = t.cap(VCPU) else { panic!() };
    let Cap::Frame { addr: msg, .. } = t.cap(MSG) else { panic!() };
    (t, addr, msg)
}

fn write_reply(t: &mut Testbed, msg: u64, reply: &ExitReply) {
    let mut words = [0u64; ExitReply::SIZE];
    let n = reply.to_words(&mut words);
    let page = t.k.store.frame(msg);
    for (i, w) in words.iter().take(n).enumerate() {
        let at = vm::REPLY_OFFSET + 8 * i;
        page[at..at + 8].copy_from_slice(&w.to_le_bytes());
    }
}

/// The root task waits on the exit endpoint; the vCPU runs and exits with CPUID.
fn exit_with_cpuid(t: &mut Testbed, v: u64) {
    t.sys(Syscall::Recv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, v, "the vCPU runs once the VMM blocks");
    // What the hardware reports: the guest's real CR0/CR4/RFLAGS, as the VMCS holds them.
    let now = t.k.store.vcpu(v).cached;
    let msg = ExitMessage {
        reason: ExitReason::Cpuid as u32,
        instruction_len: 2,
        rip: 0x1000,
        cr0: now.cr0,
        cr4: now.cr4,
        rflags: now.rflags,
        ..Default::default()
    };
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
fn start_prepares_the_vmcs_and_guest_memory() {
    let (mut t, v, _) = started();
    let data = t.k.store.vcpu(v);
    assert!(data.started && !data.launched);
    let init = data.init.expect("initial VMCS queued");
    assert_eq!(init.get(Field::GuestRip), Some(0x1000));
    assert_eq!(init.get(Field::VmcsLinkPointer), Some(u64::MAX));
    assert_eq!(t.k.store.tcb(v).state, ThreadState::Ready);
    let Cap::GuestSpace { addr: root, .. } = t.cap(GUEST) else { panic!() };
    let Cap::Frame { addr: ram, .. } = t.cap(RAM) else { panic!() };
    let tr = Ept::from_root(root, EptVpidCaps::from_raw(0)).translate(&mut t.k.store, 0x1234);
    assert_eq!(tr.map(|x| x.host), Some(ram + 0x234));
    // The VMCS page carries the revision identifier; every port and MSR exits.
    assert_eq!(t.k.store.frame(v + crate::vcpu::VMCS_OFFSET)[..4], 0x2bu32.to_le_bytes());
    assert!(t.k.store.frame(v + crate::vcpu::IO_BITMAP_OFFSET).iter().all(|b| *b == 0xff));
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
    assert_eq!(t.k.store.tcb(v).state, ThreadState::Ready);
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
        assert_eq!(data.pending_len, 0);
        assert_eq!(t.k.store.tcb(v).state, ThreadState::Inactive);
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
    assert_eq!(t.k.store.tcb(v).state, ThreadState::Inactive);
}

#[test]
fn a_garbage_reply_area_is_an_error_not_a_crash() {
    let (mut t, v, msg) = started();
    exit_with_cpuid(&mut t, v);
    t.k.store.frame(msg)[vm::REPLY_OFFSET..].fill(0xa5);
    t.sys(Syscall::ReplyRecv as u64, [EXIT_EP, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[0], Error::BatchRejected as u64);
    assert_eq!(t.k.store.tcb(v).state, ThreadState::Inactive);
    assert_eq!(t.k.current, ROOT_TCB, "a failed ReplyRecv does not block");
}

#[test]
fn deleting_a_running_vcpu_is_clean() {
    let (mut t, v, _) = started();
    exit_with_cpuid(&mut t, v);
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[VCPU]), 0);
    assert!(t.k.vmcs_released);
    assert_eq!(t.k.store.tcb(ROOT_TCB).caller, 0, "the VMM no longer owes a reply");
    assert_eq!(invoke(&mut t, slot::CNODE, Invocation::CNodeDelete, &[GUEST]), 0);
    assert!(t.k.ept_stale);
}
