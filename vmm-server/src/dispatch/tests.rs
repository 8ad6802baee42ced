//! Host tests of the dispatcher: one per exit kind, and a sweep over every exit reason
//! with pseudo-random exit information asserting that each reply is well-formed.

use protocols::vmcs::{ctl, Field};
use protocols::vmexit::{
    EventType, ExitMessage, ExitReason, ExitReply, Gprs, ReplyFlags, TransferMask,
    EXIT_REASON_ENTRY_FAILURE,
};

use super::{Notice, RunState, StopReason, Vm, VmConfig};
use crate::guest_memory::GuestMemory;
use crate::hypercall;
use crate::mmio::MmioError;
use crate::platform::MmioKey;
use crate::testing::{assert_well_formed, host_cpuid, Ram};

type TestVm = Vm<Ram, Vec<u8>>;

fn vm() -> TestVm {
    Vm::new(&VmConfig::default(), host_cpuid, Ram(vec![0; 0x10000]), Vec::new()).unwrap()
}

/// An exit message for `reason` in flat 32-bit protected mode with interrupts enabled.
fn exit(reason: ExitReason, qualification: u64) -> ExitMessage {
    ExitMessage {
        reason: reason as u32,
        instruction_len: 2,
        qualification,
        rip: 0x1000,
        rflags: 0x202,
        cr0: 0x31,
        ..ExitMessage::default()
    }
}

fn with_gprs(mut m: ExitMessage, regs: &[(u8, u64)]) -> ExitMessage {
    for &(r, v) in regs {
        m.gprs.set(r, v);
    }
    m
}

fn out_byte(port: u16, value: u8) -> ExitMessage {
    with_gprs(
        exit(ExitReason::IoInstruction, u64::from(port) << 16),
        &[(Gprs::RAX, u64::from(value))],
    )
}

/// IN AL, DX from `port` (qualification bit 3: IN).
fn in_byte(port: u16) -> ExitMessage {
    exit(ExitReason::IoInstruction, u64::from(port) << 16 | 1 << 3)
}

fn gpr(r: &ExitReply, reg: u8) -> Option<u64> {
    (r.gpr_mask & (1 << reg) != 0).then(|| r.gprs.regs[usize::from(reg)])
}

/// How far the reply moves RIP past the instruction (ADVANCE_RIP with its length).
fn advanced(r: &ExitReply) -> Option<u16> {
    r.flags.contains(ReplyFlags::ADVANCE_RIP).then_some(r.advance_len)
}

fn written(r: &ExitReply, f: Field) -> Option<u64> {
    r.writes().iter().find(|w| w.field == f as u32).map(|w| w.value)
}

/// Initialise the PICs like Linux (vectors 0x30/0x38) and start PIT channel 0 in mode 2
/// with `period` ticks, all through emulated OUT instructions.
fn boot(vm: &mut TestVm, period: u16) {
    let writes = [
        (0x20, 0x11),
        (0x21, 0x30),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x38),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x43, 0x34),
        (0x40, period as u8),
        (0x40, (period >> 8) as u8),
    ];
    for (port, value) in writes {
        let r = vm.handle(&out_byte(port, value));
        assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    }
}

/// The structural rules every reply obeys, whatever the exit said.
#[test]
fn cpuid_fills_four_registers_and_advances() {
    let mut v = vm();
    let m = with_gprs(
        exit(ExitReason::Cpuid, 0),
        &[(Gprs::RAX, 0xffff_ffff_0000_0001), (Gprs::RBX, u64::MAX)],
    );
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP);
    assert_eq!(r.gpr_mask, 0b1111);
    let ecx = gpr(&r, Gprs::RCX).unwrap();
    assert_eq!(ecx & (1 << 5), 0, "VMX hidden");
    assert_ne!(ecx & (1 << 31), 0, "hypervisor present");
    assert_eq!(gpr(&r, Gprs::RBX).unwrap() >> 32, 0, "zero-extended");
    let m = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0x4000_0000)]);
    let r = v.handle(&m);
    assert_eq!(gpr(&r, Gprs::RAX), Some(0x4000_0010));
    assert_eq!(v.stats().exits(ExitReason::Cpuid), 2);
}

#[test]
fn port_io_reaches_the_uart_and_unclaimed_ports_read_ones() {
    let mut v = vm();
    for b in *b"hi" {
        let m = out_byte(0x3f8, b);
        let r = v.handle(&m);
        assert_well_formed(&m, &r);
        assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP);
    }
    assert_eq!(v.platform().uart.sink(), b"hi");
    // in al, 0x2f8 (no COM2).
    let m = with_gprs(exit(ExitReason::IoInstruction, 0x02f8_0008), &[(Gprs::RAX, 0x1234_5600)]);
    let r = v.handle(&m);
    assert_eq!(gpr(&r, Gprs::RAX), Some(0x1234_56ff));
    assert_eq!(v.port_bus().unclaimed_reads(), 1);
    // LSR of COM1: transmitter empty.
    let m = with_gprs(exit(ExitReason::IoInstruction, 0x03fd_0008), &[]);
    assert_eq!(gpr(&v.handle(&m), Gprs::RAX), Some(0x60));
}

#[test]
fn rep_outsb_prints_a_string_from_guest_memory() {
    let mut v = vm();
    v.memory_mut().write(0x500, b"hello").unwrap();
    // rep outsb to 0x3f8, 32-bit addressing, DS.
    let mut m = with_gprs(
        exit(ExitReason::IoInstruction, 0x03f8_0030),
        &[(Gprs::RSI, 0x500), (Gprs::RCX, 5)],
    );
    m.instruction_info = 1 << 7 | 3 << 15;
    m.guest_linear = 0x500;
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(v.platform().uart.sink(), b"hello");
    assert_eq!(gpr(&r, Gprs::RCX), Some(0));
    assert_eq!(gpr(&r, Gprs::RSI), Some(0x505));
    assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    // The same from unmapped memory stops the VM with the address.
    m.guest_linear = 0xf_0000;
    m.gprs.set(Gprs::RSI, 0xf_0000);
    let r = v.handle(&m);
    assert_eq!(r.flags, ReplyFlags::STOP_VCPU);
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::GuestMemory { gpa: 0xf_0000 }));
}

#[test]
fn msr_exits() {
    let mut v = vm();
    // rdmsr IA32_MISC_ENABLE.
    let m = with_gprs(exit(ExitReason::Rdmsr, 0), &[(Gprs::RCX, 0x1a0)]);
    let r = v.handle(&m);
    assert_eq!((gpr(&r, Gprs::RAX), gpr(&r, Gprs::RDX)), (Some(0x1801), Some(0)));
    assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    // An unknown MSR: #GP(0), RIP stays.
    let m = with_gprs(exit(ExitReason::Rdmsr, 0), &[(Gprs::RCX, 0x1234)]);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.flags, ReplyFlags::INJECT_EVENT);
    assert_eq!(r.injection.raw(), 0x8000_0b0d);
    // wrmsr EFER = LME | SCE goes to the VMCS and is remembered.
    let m = with_gprs(
        exit(ExitReason::Wrmsr, 0),
        &[(Gprs::RCX, 0xc000_0080), (Gprs::RAX, 0x101), (Gprs::RDX, 0)],
    );
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(written(&r, Field::GuestIa32Efer), Some(0x101));
    let m = with_gprs(exit(ExitReason::Rdmsr, 0), &[(Gprs::RCX, 0xc000_0080)]);
    assert_eq!(gpr(&v.handle(&m), Gprs::RAX), Some(0x101));
    // SYSENTER_EIP without the SYSENTER group cannot be read.
    let m = with_gprs(exit(ExitReason::Rdmsr, 0), &[(Gprs::RCX, 0x176)]);
    v.handle(&m);
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::NeedsTransfer(TransferMask::SYSENTER)));
    // LSTAR is live state: a clear stop.
    let mut v = vm();
    let m = with_gprs(exit(ExitReason::Wrmsr, 0), &[(Gprs::RCX, 0xc000_0082)]);
    assert_eq!(v.handle(&m).flags, ReplyFlags::STOP_VCPU);
    let RunState::Stopped(reason) = v.run_state() else { panic!() };
    assert_eq!(reason, StopReason::UnsupportedMsr { index: 0xc000_0082, write: true });
    assert!(reason.to_string().contains("pass-through"));
}

#[test]
fn entering_long_mode_through_an_emulated_mov_to_cr0() {
    let mut v = vm();
    // EFER.LME via WRMSR, then CR0 = PE|MP|ET|NE|WP|AM|PG with PAE on.
    let m = with_gprs(exit(ExitReason::Wrmsr, 0), &[(Gprs::RCX, 0xc000_0080), (Gprs::RAX, 0x100)]);
    v.handle(&m);
    let mut m = with_gprs(exit(ExitReason::CrAccess, 0x000), &[(Gprs::RAX, 0x8005_0033)]);
    m.cr4 = 0x2020;
    m.transfer = TransferMask::CONTROLS;
    m.controls.entry = 0x11ff;
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(written(&r, Field::GuestCr0), Some(0x8005_0033));
    assert_eq!(written(&r, Field::GuestIa32Efer), Some(0x500));
    assert_eq!(
        written(&r, Field::EntryControls),
        Some(u64::from(0x11ff | ctl::entry::IA32E_MODE_GUEST))
    );
    assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    // MOV to CR4 setting VMXE: #GP.
    let m = with_gprs(exit(ExitReason::CrAccess, 0x004), &[(Gprs::RAX, 0x2020)]);
    let r = v.handle(&m);
    assert_eq!(r.injection.raw(), 0x8000_0b0d);
}

#[test]
fn cr_exit_without_the_controls_group_stops_clearly() {
    let mut v = vm();
    let m = with_gprs(exit(ExitReason::Wrmsr, 0), &[(Gprs::RCX, 0xc000_0080), (Gprs::RAX, 0x100)]);
    v.handle(&m);
    let mut m = with_gprs(exit(ExitReason::CrAccess, 0x000), &[(Gprs::RAX, 0x8000_0011)]);
    m.cr4 = 0x20;
    v.handle(&m);
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::NeedsTransfer(TransferMask::CONTROLS)));
}

#[test]
fn hlt_halts_until_the_timer_fires_then_wake_injects() {
    let mut v = vm();
    boot(&mut v, 1000);
    let m = exit(ExitReason::Hlt, 0);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP | ReplyFlags::STOP_VCPU);
    assert_eq!(v.run_state(), RunState::Halted);
    assert_eq!(v.wake(), None, "nothing pending yet");
    v.advance_time(1000);
    let w = v.wake().unwrap();
    assert_eq!(w.flags, ReplyFlags::INJECT_EVENT);
    assert_eq!(w.injection.raw(), 0x8000_0030);
    assert_eq!(v.run_state(), RunState::Running);
    assert_eq!(v.wake(), None);
    // HLT with the timer already pending completes at once with the interrupt.
    v.handle(&out_byte(0x20, 0x20)); // EOI
    v.advance_time(1000);
    let m = exit(ExitReason::Hlt, 0);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP | ReplyFlags::INJECT_EVENT);
    assert_eq!(v.stats().interrupts_injected, 2);
}

#[test]
fn hlt_with_interrupts_disabled_stops() {
    let mut v = vm();
    let mut m = exit(ExitReason::Hlt, 0);
    m.rflags = 0x2;
    assert_eq!(v.handle(&m).flags, ReplyFlags::STOP_VCPU);
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::HaltedForever));
    // Once stopped, every exit gets a stop.
    assert_eq!(v.handle(&exit(ExitReason::Cpuid, 0)).flags, ReplyFlags::STOP_VCPU);
}

#[test]
fn interrupt_window_and_shadows() {
    let mut v = vm();
    boot(&mut v, 100);
    v.advance_time(100);
    // CLI'd guest: the interrupt waits for a window.
    let mut m = exit(ExitReason::Cpuid, 0);
    m.rflags = 0x2;
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert!(r.flags.contains(ReplyFlags::REQUEST_INTERRUPT_WINDOW));
    assert!(!r.flags.contains(ReplyFlags::INJECT_EVENT));
    // An STI shadow on an exit that does not retire an instruction blocks too.
    let mut m = exit(ExitReason::InterruptWindow, 0);
    m.interruptibility = 1;
    let r = v.handle(&m);
    assert_eq!(r.flags, ReplyFlags::REQUEST_INTERRUPT_WINDOW);
    // The window opens.
    let m = exit(ExitReason::InterruptWindow, 0);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.flags, ReplyFlags::INJECT_EVENT);
    assert_eq!(r.injection.raw(), 0x8000_0030);
    // Nothing pending: a bare resume.
    assert_eq!(v.handle(&exit(ExitReason::InterruptWindow, 0)).flags, ReplyFlags::NONE);
}

#[test]
fn an_interrupted_event_is_reinjected_first() {
    let mut v = vm();
    boot(&mut v, 100);
    v.advance_time(100);
    let mut m = exit(ExitReason::ExternalInterrupt, 0);
    m.idt_vectoring_info = 0x8000_0b0e; // #PF with error code
    m.idt_vectoring_error = 2;
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.injection.raw(), 0x8000_0b0e);
    assert_eq!(r.injection_error, 2);
    assert!(r.flags.contains(ReplyFlags::REQUEST_INTERRUPT_WINDOW));
    // A software interrupt carries its instruction length.
    let mut m = exit(ExitReason::ExternalInterrupt, 0);
    m.idt_vectoring_info = 0x8000_0480;
    m.instruction_len = 2;
    let r = v.handle(&m);
    assert_eq!((r.injection.raw(), r.injection_len), (0x8000_0480, 2));
    // An external interrupt that could not have been delivered: inconsistent.
    let mut v = vm();
    let mut m = exit(ExitReason::EptViolation, 0);
    m.reason = ExitReason::ExternalInterrupt as u32;
    m.rflags = 2;
    m.idt_vectoring_info = 0x8000_0030;
    v.handle(&m);
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::BadVectoring { info: 0x8000_0030 }));
    // Only hardware exceptions carry error codes: an interrupt or NMI claiming one is
    // inconsistent too, never re-injected (found by the vmm_dispatch fuzz target).
    for info in [0x8000_0830, 0x8000_0a02] {
        let mut v = vm();
        let mut m = exit(ExitReason::ExternalInterrupt, 0);
        m.idt_vectoring_info = info;
        let r = v.handle(&m);
        assert_well_formed(&m, &r);
        assert_eq!(v.run_state(), RunState::Stopped(StopReason::BadVectoring { info }));
    }
}

#[test]
fn hypercalls() {
    let mut v = vm();
    for (i, b) in b"ok".iter().enumerate() {
        let m = with_gprs(
            exit(ExitReason::Vmcall, 0),
            &[(Gprs::RAX, hypercall::PUTCHAR), (Gprs::RBX, u64::from(*b))],
        );
        let r = v.handle(&m);
        assert_well_formed(&m, &r);
        assert_eq!(gpr(&r, Gprs::RAX), Some(hypercall::STATUS_OK), "{i}");
        assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    }
    assert_eq!(v.platform().uart.sink(), b"ok");
    for (test, status) in [(1, 0), (2, 0), (3, 7), (4, 9)] {
        let m = with_gprs(
            exit(ExitReason::Vmcall, 0),
            &[(Gprs::RAX, hypercall::REPORT), (Gprs::RBX, test), (Gprs::RCX, status)],
        );
        v.handle(&m);
    }
    let report = v.test_report();
    assert_eq!((report.passed, report.failed, report.first_failure), (2, 2, Some((3, 7))));
    let m = with_gprs(exit(ExitReason::Vmcall, 0), &[(Gprs::RAX, 99)]);
    assert_eq!(gpr(&v.handle(&m), Gprs::RAX), Some(hypercall::STATUS_UNKNOWN));
    // From CPL 1, 2 or 3, with or without segments in the message: denied, RIP advanced,
    // nothing printed, and not even EXIT is obeyed.
    for cpl in 1..=3 {
        for (rax, rbx) in [(hypercall::PUTCHAR, 0x41), (hypercall::EXIT, 7)] {
            let mut m =
                with_gprs(exit(ExitReason::Vmcall, 0), &[(Gprs::RAX, rax), (Gprs::RBX, rbx)]);
            m.cpl = cpl;
            let r = v.handle(&m);
            assert_eq!(gpr(&r, Gprs::RAX), Some(hypercall::STATUS_DENIED));
            assert!(
                r.flags.contains(ReplyFlags::ADVANCE_RIP)
                    && !r.flags.contains(ReplyFlags::STOP_VCPU)
            );
        }
    }
    assert_eq!(v.platform().uart.sink(), b"ok");
    assert_eq!(v.run_state(), RunState::Running);
    let m = with_gprs(exit(ExitReason::Vmcall, 0), &[(Gprs::RAX, hypercall::EXIT), (Gprs::RBX, 3)]);
    assert_eq!(v.handle(&m).flags, ReplyFlags::STOP_VCPU);
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::GuestExit(3)));
}

#[test]
fn guest_requested_stops() {
    let mut v = vm();
    v.handle(&out_byte(0x64, 0xfe));
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::Reset));
    let mut v = vm();
    v.handle(&out_byte(0xf4, 0x21));
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::DebugExit(0x21)));
    let mut v = vm();
    v.handle(&exit(ExitReason::TripleFault, 0));
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::TripleFault));
}

#[test]
fn unknown_failed_and_undecodable_exits_stop_with_a_reason() {
    let mut v = vm();
    v.handle(&exit(ExitReason::Rdtsc, 0));
    let RunState::Stopped(reason) = v.run_state() else { panic!() };
    assert_eq!(reason, StopReason::Unhandled { reason: 16 });
    assert_eq!(reason.to_string(), "unhandled exit Rdtsc (0x10)");
    let mut v = vm();
    let mut m = exit(ExitReason::EntryFailGuestState, 3);
    m.reason |= EXIT_REASON_ENTRY_FAILURE;
    v.handle(&m);
    assert_eq!(
        v.run_state(),
        RunState::Stopped(StopReason::EntryFailure { reason: 33, qualification: 3 })
    );
    let mut v = vm();
    let mut m = exit(ExitReason::Cpuid, 0);
    m.reason = 35;
    v.handle(&m);
    assert_eq!(v.run_state(), RunState::Stopped(StopReason::Unhandled { reason: 35 }));
    let mut v = vm();
    v.handle(&exit(ExitReason::IoInstruction, 0x2));
    assert!(matches!(
        v.run_state(),
        RunState::Stopped(StopReason::BadQualification { reason: 30, .. })
    ));
}

#[test]
fn hidden_instructions_fault_inside_the_guest() {
    let mut v = vm();
    for (reason, vector) in
        [(ExitReason::Vmxon, 6), (ExitReason::Xsetbv, 6), (ExitReason::Rdpmc, 13)]
    {
        let m = exit(reason, 0);
        let r = v.handle(&m);
        assert_well_formed(&m, &r);
        assert_eq!(r.injection.vector(), vector);
        assert!(!r.flags.contains(ReplyFlags::ADVANCE_RIP));
    }
    let r = v.handle(&exit(ExitReason::Pause, 0));
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP);
    // A reflected #GP or #PF keeps its error code (the kernel supplies #PF's CR2).
    let mut m = exit(ExitReason::ExceptionOrNmi, 0);
    m.exit_intr_info = 0x8000_0b0d;
    m.exit_intr_error = 0x18;
    let r = v.handle(&m);
    assert_eq!((r.injection.raw(), r.injection_error), (0x8000_0b0d, 0x18));
    m.exit_intr_info = 0x8000_0b0e;
    m.exit_intr_error = 0x2;
    let r = v.handle(&m);
    assert_eq!((r.injection.raw(), r.injection_error), (0x8000_0b0e, 0x2));
    assert!(!r.flags.contains(ReplyFlags::ADVANCE_RIP), "a fault retries the instruction");
    assert_eq!(v.stats().exits(ExitReason::ExceptionOrNmi), 2);
}

/// #DB and #AC are always intercepted (the kernel forces them): both reach the guest as
/// the CPU would have delivered them, and DR6 says what the #DB was.
#[test]
fn intercepted_debug_and_alignment_exceptions_are_reflected() {
    let mut v = vm();
    // Single step: hardware #DB (type 3, vector 1), qualification BS.
    let mut m = exit(ExitReason::ExceptionOrNmi, 1 << 14);
    m.exit_intr_info = 0x8000_0301;
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.injection.raw(), 0x8000_0301);
    assert!(!r.flags.contains(ReplyFlags::ADVANCE_RIP), "a trap's RIP is already past it");
    // The guest's MOV from DR6 into RAX (DR6, read, GPR 0) sees BS.
    let r = v.handle(&exit(ExitReason::DrAccess, 6 | 1 << 4));
    assert_eq!(gpr(&r, Gprs::RAX), Some(0xffff_4ff0));
    assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    // ICEBP: privileged software exception, re-injected with its length.
    let mut m = exit(ExitReason::ExceptionOrNmi, 0);
    (m.exit_intr_info, m.instruction_len) = (0x8000_0501, 1);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!((r.injection.raw(), r.injection_len), (0x8000_0501, 1));
    // #AC with its error code 0.
    let mut m = exit(ExitReason::ExceptionOrNmi, 0);
    (m.exit_intr_info, m.exit_intr_error) = (0x8000_0b11, 0);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!((r.injection.raw(), r.injection_error), (0x8000_0b11, 0));
    assert_eq!(v.run_state(), RunState::Running);
}

#[test]
fn debug_register_moves_use_the_vmms_copy() {
    let mut v = vm();
    // MOV DR2, RBX then MOV RCX, DR2.
    let m = with_gprs(exit(ExitReason::DrAccess, 2 | 3 << 8), &[(Gprs::RBX, 0x1234)]);
    let r = v.handle(&m);
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP);
    let r = v.handle(&exit(ExitReason::DrAccess, 2 | 1 << 4 | 1 << 8));
    assert_eq!(gpr(&r, Gprs::RCX), Some(0x1234));
    // A reserved DR7 bit: #GP, RIP stays.
    let m = with_gprs(exit(ExitReason::DrAccess, 7 | 3 << 8), &[(Gprs::RBX, 1 << 12)]);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.injection.vector(), 13);
    assert!(!r.flags.contains(ReplyFlags::ADVANCE_RIP));
}

/// A VMCALL of `function` with `args` in RBX, RCX, RDX, from CPL 0, with the controls.
fn vmcall(function: u64, args: &[u64]) -> ExitMessage {
    let regs = [Gprs::RBX, Gprs::RCX, Gprs::RDX];
    let mut m = with_gprs(exit(ExitReason::Vmcall, 0), &[(Gprs::RAX, function)]);
    for (r, a) in regs.iter().zip(args) {
        m.gprs.set(*r, *a);
    }
    m.transfer = TransferMask::CONTROLS;
    m.controls.proc = ctl::proc::HLT_EXITING;
    m
}

#[test]
fn control_hypercalls_drive_the_vmcs_and_report_what_the_vmm_saw() {
    let mut v = vm();
    v.handle(&out_byte(0x80, 1));
    v.handle(&out_byte(0x80, 2));
    let m = vmcall(hypercall::EXIT_COUNT, &[ExitReason::IoInstruction as u64]);
    assert_eq!(gpr(&v.handle(&m), Gprs::RAX), Some(2));
    let m = vmcall(hypercall::EXIT_COUNT, &[1 << 40]);
    assert_eq!(gpr(&v.handle(&m), Gprs::RAX), Some(0), "a reason out of range counts none");

    // RDTSC exiting: the VMM's values, one more each time, until it is off again.
    let m = vmcall(hypercall::RDTSC_EXITING, &[1, 0x1_0000_0005]);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    let on = ctl::proc::HLT_EXITING | ctl::proc::RDTSC_EXITING;
    assert_eq!(written(&r, Field::ProcBasedControls), Some(on.into()));
    for tsc in [0x1_0000_0005u64, 0x1_0000_0006] {
        let r = v.handle(&exit(ExitReason::Rdtsc, 0));
        assert_eq!((gpr(&r, Gprs::RAX), gpr(&r, Gprs::RDX)), (Some(tsc & 0xffff_ffff), Some(1)));
        assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    }
    let r = v.handle(&vmcall(hypercall::RDTSC_EXITING, &[0]));
    assert_eq!(written(&r, Field::ProcBasedControls), Some(ctl::proc::HLT_EXITING.into()));
    let r = v.handle(&vmcall(hypercall::TSC_OFFSET, &[1 << 40]));
    assert_eq!(written(&r, Field::TscOffset), Some(1 << 40));

    let r = v.handle(&vmcall(hypercall::CR3_TARGETS, &[1, 1, 0x10_0000]));
    assert_eq!(written(&r, Field::Cr3TargetCount), Some(1));
    assert_eq!(written(&r, Field::Cr3Target0), Some(0x10_0000));
    let r = v.handle(&vmcall(hypercall::CR3_TARGETS, &[1, 5]));
    assert_eq!(gpr(&r, Gprs::RAX), Some(hypercall::STATUS_INVALID));
    assert_eq!(r.count, 0, "nothing written for a refused call");
    let r = v.handle(&vmcall(hypercall::EXCEPTION_BITMAP, &[1 << 14, 2, 2]));
    assert_eq!(written(&r, Field::ExceptionBitmap), Some(1 << 17 | 1 << 14 | 1 << 1));
    assert_eq!(written(&r, Field::PageFaultErrorCodeMatch), Some(2));

    // An NMI goes in as the call returns.
    let m = vmcall(hypercall::INJECT_NMI, &[]);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.injection.event_type(), Some(EventType::Nmi));
    assert_eq!(v.stats().nmis_injected, 1);

    // Without the controls group the VMM cannot know the other control bits.
    let mut m = vmcall(hypercall::RDTSC_EXITING, &[1, 0]);
    m.transfer = TransferMask::NONE;
    v.handle(&m);
    let want = StopReason::NeedsTransfer(TransferMask::CONTROLS);
    assert_eq!(v.run_state(), RunState::Stopped(want));
}

#[test]
fn setup_reply_programs_the_cr_policy() {
    let v = vm();
    let r = v.setup_reply();
    assert_well_formed(&ExitMessage::default(), &r);
    assert_eq!(written(&r, Field::GuestCr0), Some(0x6000_0030));
    assert_eq!(written(&r, Field::Cr0ReadShadow), Some(0x6000_0010));
    assert_eq!(TestVm::TRANSFER_MASK, TransferMask::EFER_PAT | TransferMask::CONTROLS);
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True one time in `n`.
    fn chance(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    /// Mostly small or structured values, sometimes anything.
    fn value(&mut self) -> u64 {
        match self.next() % 4 {
            0 => self.next(),
            1 => self.next() & 0xffff,
            2 => self.next() & 0xff_ffff,
            _ => self.next() % 8,
        }
    }
}

#[test]
fn every_reply_is_well_formed_over_a_sweep_of_exits() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut v = vm();
    boot(&mut v, 500);
    let (mut stops, mut injected, mut advanced, mut with_writes) = (0u32, 0u32, 0u32, 0u32);
    for round in 0..400u32 {
        for reason in 0..=80u32 {
            let mut m = ExitMessage {
                reason: if rng.chance(16) { reason | EXIT_REASON_ENTRY_FAILURE } else { reason },
                instruction_len: (rng.next() % 16) as u32,
                qualification: rng.value(),
                instruction_info: rng.next() as u32,
                interruptibility: (rng.next() % 32) as u32,
                guest_linear: rng.value(),
                guest_physical: rng.value(),
                rip: rng.next(),
                rflags: 0x2 | (rng.next() & 0x4_0600),
                cr0: [0x31, 0x8000_0031, 0x6000_0010, rng.next()][(rng.next() % 4) as usize],
                cr3: rng.value() & !0xfff,
                cr4: [0, 0x20, 0x2020, rng.next()][(rng.next() % 4) as usize],
                idt_vectoring_info: if rng.chance(4) { rng.next() as u32 } else { 0 },
                idt_vectoring_error: rng.next() as u32,
                exit_intr_info: rng.next() as u32 | if rng.chance(2) { 1 << 31 } else { 0 },
                exit_intr_error: rng.next() as u32,
                transfer: TransferMask::from_bits(rng.next() & TransferMask::ALL.bits()).unwrap(),
                efer: [0, 0x100, 0x500, 0xd01][(rng.next() % 4) as usize],
                ..ExitMessage::default()
            };
            m.controls.entry = rng.next() as u32;
            for seg in &mut m.segments.regs {
                seg.access_rights = rng.next() as u32;
                seg.base = rng.value();
            }
            for reg in &mut m.gprs.regs {
                *reg = rng.value();
            }
            // Port I/O at real devices half the time, with a valid size.
            if reason == ExitReason::IoInstruction as u32 && rng.chance(2) {
                let ports = [
                    0x20u64, 0x21, 0xa0, 0xa1, 0x40, 0x43, 0x60, 0x61, 0x64, 0x70, 0x71, 0x80,
                    0x3f8, 0x3fd,
                ];
                let port = ports[(rng.next() % ports.len() as u64) as usize];
                let size = [0u64, 1, 3][(rng.next() % 3) as usize];
                m.qualification = port << 16 | (rng.next() & 0x78) | size;
            }
            // Plausible CR accesses and known MSRs half the time, to reach the write paths.
            if reason == ExitReason::CrAccess as u32 && rng.chance(2) {
                let cr = [0u64, 3, 4, 8][(rng.next() % 4) as usize];
                m.qualification = cr
                    | (rng.next() % 4) << 4
                    | (rng.next() % 16) << 8
                    | (rng.next() & 0xffff) << 16;
                let values =
                    [0x31u64, 0x8005_0033, 0x8000_0011, 0x20, 0x6b0, 0x1000, 9, rng.next()];
                let value = values[(rng.next() % values.len() as u64) as usize];
                let gpr = ((m.qualification >> 8) & 0xf) as u8;
                m.gprs.set(gpr, value);
            }
            if matches!(reason, 31 | 32) && rng.chance(2) {
                let msrs = [
                    0x1a0u64,
                    0x3a,
                    0x8b,
                    0x174,
                    0x176,
                    0x1d9,
                    0x277,
                    0xc000_0080,
                    0xc000_0100,
                    0x179,
                ];
                m.gprs.set(Gprs::RCX, msrs[(rng.next() % msrs.len() as u64) as usize]);
            }
            // Keep the VM alive for most rounds: resets and exits end the guest.
            if matches!(m.qualification >> 16, 0x64 | 0xf4) {
                m.qualification &= 0xffff;
            }
            if rng.chance(8) {
                v.advance_time(rng.next() % 2000);
            }
            if rng.chance(16) {
                v.console_input(rng.next() as u8);
            }
            let r = v.handle(&m);
            assert_well_formed(&m, &r);
            if r.flags.contains(ReplyFlags::INJECT_EVENT) {
                injected += 1;
            }
            if r.flags.contains(ReplyFlags::ADVANCE_RIP) {
                advanced += 1;
            }
            if r.count > 0 {
                with_writes += 1;
            }
            if let Some(w) = (rng.chance(4)).then(|| v.wake()).flatten() {
                assert_well_formed(&ExitMessage { rflags: 0x202, ..ExitMessage::default() }, &w);
            }
            if let RunState::Stopped(reason) = v.run_state() {
                assert!(!reason.to_string().is_empty());
                stops += 1;
                v = vm();
                if round % 2 == 0 {
                    boot(&mut v, 500);
                }
            }
        }
    }
    // The sweep reaches the interesting paths, not only stops.
    assert!(stops > 0 && injected > 100 && advanced > 1000 && with_writes > 10);
}

#[test]
fn every_exit_is_counted_once_whatever_its_reason() {
    let mut v = vm();
    v.handle(&exit(ExitReason::Cpuid, 0));
    v.handle(&exit(ExitReason::Pause, 0));
    v.handle(&exit(ExitReason::Pause, 0));
    // A reason past the per-reason table still counts towards the total.
    let mut m = exit(ExitReason::Pause, 0);
    m.reason = 0xffff;
    v.handle(&m);
    assert_eq!(v.stats().exits(ExitReason::Pause), 2);
    assert_eq!(v.stats().exits(ExitReason::Cpuid), 1);
    assert_eq!(v.stats().total_exits(), 4);
}

mod apic;
mod remote;
mod time;

#[test]
fn exits_are_listed_by_reason_most_frequent_first() {
    let mut v = vm();
    assert_eq!(v.stats().by_reason().to_string(), "");
    for _ in 0..3 {
        v.handle(&out_byte(0x80, 1));
    }
    v.handle(&exit(ExitReason::Cpuid, 0));
    assert_eq!(v.stats().by_reason().to_string(), "IoInstruction 3, Cpuid 1");
}

#[test]
fn console_input_wakes_a_vcpu_halted_without_a_timer_edge() {
    use crate::pending_input::PendingInput;
    use crate::serve::{offer_input, wake_parked};
    let mut v = vm();
    boot(&mut v, 1000);
    v.handle(&out_byte(0x21, 0x01)); // the timer's line masked: no edge will wake it
    v.handle(&out_byte(0x3fc, 0x08)); // OUT2: the UART's interrupt reaches the PIC
    v.handle(&out_byte(0x3f9, 0x01)); // receive interrupt on
    let m = exit(ExitReason::Hlt, 0);
    let mut r = v.handle(&m);
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP | ReplyFlags::STOP_VCPU);
    assert!(!wake_parked(&mut v, &mut r), "nothing pending: the reply stays unsent");
    let mut pending = PendingInput::new();
    pending.push(b"uname -r\nand more than a FIFO holds");
    offer_input(&mut v, &mut pending);
    assert!(!pending.is_empty(), "the FIFO refused the rest, which waits");
    assert!(wake_parked(&mut v, &mut r));
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP | ReplyFlags::INJECT_EVENT);
    assert_eq!(r.injection.raw(), 0x8000_0034, "IRQ 4");
    assert_eq!(v.run_state(), RunState::Running);
}

/// An EPT violation at `gpa` (a write or a read), with the groups the VMM's transfer table
/// asks for, in flat 32-bit protected mode (CS.D) at RIP `rip`.
pub(super) fn ept_exit(gpa: u64, write: bool, rip: u64) -> ExitMessage {
    let mut m = exit(ExitReason::EptViolation, if write { 0x182 } else { 0x181 });
    m.guest_physical = gpa;
    m.rip = rip;
    m.transfer = crate::serve::transfer_table().by_reason[ExitReason::EptViolation as usize];
    m.segments.regs[1].access_rights = 0xc09b;
    m
}

#[test]
fn mmio_store_and_load_round_trip_through_a_device() {
    let mut v = vm();
    v.insert_mmio(0xfed0_0000, 0x100, MmioKey::Scratch).unwrap();
    // mov dword [0xfed00030], 0x12345678; then mov eax, [0xfed00030] with an STI shadow.
    v.memory_mut()
        .write(0x1000, &[0xc7, 0x05, 0x30, 0, 0xd0, 0xfe, 0x78, 0x56, 0x34, 0x12])
        .unwrap();
    v.memory_mut().write(0x100a, &[0xa1, 0x30, 0, 0xd0, 0xfe]).unwrap();
    let m = ept_exit(0xfed0_0030, true, 0x1000);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(v.run_state(), RunState::Running);
    assert_eq!(v.platform().scratch.bytes()[0x30..0x34], [0x78, 0x56, 0x34, 0x12]);
    assert_eq!(advanced(&r), Some(0x0a));
    assert_eq!(written(&r, Field::GuestRip), None, "the kernel moves RIP by the decoded length");
    let mut m = with_gprs(ept_exit(0xfed0_0030, false, 0x100a), &[(Gprs::RAX, u64::MAX)]);
    m.interruptibility = 1;
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(gpr(&r, Gprs::RAX), Some(0x1234_5678));
    assert_eq!(advanced(&r), Some(5));
    // ADVANCE_RIP makes the kernel drop the interrupt shadow, as retiring would.
    assert_eq!(v.mmio_bus().unclaimed_reads(), 0);
}

#[test]
fn mmio_refusals_stop_the_vm_with_a_reason() {
    // No device at the address: the load reads all ones, a store is dropped, as on an
    // undriven bus; the first such access is reported once.
    let mut v = vm();
    v.memory_mut().write(0x1000, &[0xa1, 0, 0, 0xb0, 0xfe]).unwrap(); // mov eax, [0xfeb00000]
    let m = with_gprs(ept_exit(0xfeb0_0000, false, 0x1000), &[(Gprs::RAX, 0)]);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(v.run_state(), RunState::Running);
    assert_eq!(gpr(&r, Gprs::RAX), Some(0xffff_ffff));
    assert_eq!(advanced(&r), Some(5));
    let notice = v.take_notice().expect("reported");
    assert_eq!(notice, Notice::UnclaimedMmio { gpa: 0xfeb0_0000, rip: 0x1000 });
    assert!(notice
        .to_string()
        .starts_with("access to unbacked guest-physical 0xfeb00000 from RIP 0x1000"));
    assert_eq!(v.take_notice(), None, "taken");
    v.memory_mut().write(0x1000, &[0xa3, 0, 0, 0xb0, 0xfe]).unwrap(); // mov [0xfeb00000], eax
    let r = v.handle(&ept_exit(0xfeb0_0000, true, 0x1000));
    assert_eq!((advanced(&r), v.run_state()), (Some(5), RunState::Running));
    assert_eq!(v.take_notice(), None, "reported once");
    assert_eq!((v.mmio_bus().unclaimed_reads(), v.mmio_bus().unclaimed_writes()), (1, 1));
    // An instruction the emulator does not handle is named.
    let mut v = vm();
    v.insert_mmio(0xfed0_0000, 0x100, MmioKey::Scratch).unwrap();
    v.memory_mut().write(0x1000, &[0x11, 0x05, 0x30, 0, 0xd0, 0xfe]).unwrap();
    let m = ept_exit(0xfed0_0030, true, 0x1000);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.flags, ReplyFlags::STOP_VCPU);
    let RunState::Stopped(
        reason @ StopReason::MmioEmulation { gpa: 0xfed0_0030, rip: 0x1000, error },
    ) = v.run_state()
    else {
        panic!("stopped with {:?}", v.run_state());
    };
    assert!(matches!(error, MmioError::Unsupported(_)));
    assert_eq!(
        reason.to_string(),
        "MMIO access at 0xfed00030 from RIP 0x1000: unsupported instruction ADC (11 05 30 00 d0 fe)"
    );
    // Without CS the VMM cannot tell the code size.
    let mut v = vm();
    v.insert_mmio(0xfed0_0000, 0x100, MmioKey::Scratch).unwrap();
    let mut m = ept_exit(0xfed0_0030, false, 0x1000);
    let segments = TransferMask::ANY_SEGMENTS.bits();
    m.transfer = TransferMask::from_bits(m.transfer.bits() & !segments).unwrap();
    v.handle(&m);
    let needs = StopReason::NeedsTransfer(TransferMask::CODE_SEGMENT);
    assert_eq!(v.run_state(), RunState::Stopped(needs));
}
