//! The dispatcher with its UART out of process, against the fake device of
//! `devices::remote::tests`: accesses are forwarded, the line comes with the replies,
//! string I/O goes a batch per call, and a device that fails stops the VM by name.

use super::{boot, exit, gpr, in_byte, out_byte, with_gprs, TestVm};
use crate::devices::remote::tests::{calls, link, printed, start, DEVICE};
use crate::devices::remote::LinkError;
use crate::dispatch::{RunState, StopReason, Vm, VmConfig};
use crate::guest_memory::GuestMemory;
use crate::testing::{assert_well_formed, host_cpuid, Ram};
use protocols::devices::Kind;
use protocols::error::Error;
use protocols::vmexit::{ExitReason, Gprs, ReplyFlags};

fn remote_vm() -> TestVm {
    start();
    let config = VmConfig { uart_model: Some(link), ..VmConfig::default() };
    Vm::new(&config, host_cpuid, Ram(vec![0; 0x10000]), Vec::new()).unwrap()
}

#[test]
fn port_accesses_reach_the_device_process() {
    let mut v = remote_vm();
    let m = out_byte(0x3ff, 0x5a);
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP);
    let r = v.handle(&in_byte(0x3ff));
    assert_eq!(gpr(&r, Gprs::RAX), Some(0x5a), "the scratch register, read back");
    for b in *b"ok\n" {
        v.handle(&out_byte(0x3f8, b));
    }
    assert_eq!(printed(), b"ok\n");
    assert!(v.platform().uart.sink().is_empty(), "the VMM's own model is unused");
    assert_eq!(calls(), 5, "one call per access");
}

#[test]
fn the_devices_line_reaches_the_pic_with_the_reply() {
    let mut v = remote_vm();
    boot(&mut v, 0xffff);
    // IER: THR empty; the line rises with that write's reply and is injected at once.
    let r = v.handle(&out_byte(0x3f9, 0x02));
    assert_eq!(r.injection.raw() & 0xff, 0x34, "IRQ 4, the UART's line");
    assert_eq!(v.platform().pic.pending_vector(), None);
}

#[test]
fn string_io_goes_a_batch_per_call() {
    let mut v = remote_vm();
    v.memory_mut().write(0x500, b"hello").unwrap();
    let mut m = with_gprs(
        exit(ExitReason::IoInstruction, 0x03f8_0030),
        &[(Gprs::RSI, 0x500), (Gprs::RCX, 5)],
    );
    m.instruction_info = 1 << 7 | 3 << 15;
    m.guest_linear = 0x500;
    let before = calls();
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    assert_eq!(printed(), b"hello");
    assert_eq!(calls() - before, 1, "five bytes, one call");
    assert_eq!((gpr(&r, Gprs::RCX), gpr(&r, Gprs::RSI)), (Some(0), Some(0x505)));
    assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    // rep insb from the scratch register into 0x600.
    v.handle(&out_byte(0x3ff, 0x77));
    let mut m = with_gprs(
        exit(ExitReason::IoInstruction, 0x03ff_0038),
        &[(Gprs::RDI, 0x600), (Gprs::RCX, 3)],
    );
    m.instruction_info = 1 << 7; // 32-bit addressing, ES
    m.guest_linear = 0x600;
    let r = v.handle(&m);
    let mut got = [0u8; 3];
    v.memory().read(0x600, &mut got).unwrap();
    assert_eq!(got, [0x77; 3]);
    assert_eq!(gpr(&r, Gprs::RDI), Some(0x603));
}

#[test]
fn putchar_and_input_go_through_the_device() {
    let mut v = remote_vm();
    for b in *b"hi" {
        let m = with_gprs(
            exit(ExitReason::Vmcall, 0),
            &[(Gprs::RAX, u64::from(hypercall_putchar())), (Gprs::RBX, u64::from(b))],
        );
        v.handle(&m);
    }
    v.handle(&out_byte(0x3f8, b'!'));
    assert_eq!(printed(), b"hi!", "one console stream, in order");
    assert!(v.console_input(b'k'));
    let r = v.handle(&in_byte(0x3f8));
    assert_eq!(gpr(&r, Gprs::RAX), Some(u64::from(b'k')));
}

fn hypercall_putchar() -> u8 {
    crate::hypercall::PUTCHAR as u8
}

#[test]
fn a_device_that_is_gone_stops_the_vm_naming_it() {
    let mut v = remote_vm();
    DEVICE.with(|d| *d.borrow_mut() = None);
    let r = v.handle(&out_byte(0x3f8, b'x'));
    assert_eq!(r.flags, ReplyFlags::STOP_VCPU);
    let error = LinkError::Ipc(Error::ObjectDeleted);
    let why = StopReason::DeviceModel { kind: Kind::Uart16550, error };
    assert_eq!(v.run_state(), RunState::Stopped(why));
    assert_eq!(
        why.to_string(),
        "device uart16550 (out of process): its process does not answer (object deleted)"
    );
    // Between exits too: input to a gone device stops the VM.
    let mut v = remote_vm();
    DEVICE.with(|d| *d.borrow_mut() = None);
    assert!(!v.console_input(b'k'));
    assert_eq!(v.run_state(), RunState::Stopped(why));
}
