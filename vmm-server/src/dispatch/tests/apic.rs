//! The local APIC through the dispatcher: its page by MMIO, its MSRs, its timer on the
//! guest's time (a computing guest is interrupted, a halted one skips ahead), CR8 as its
//! TPR, and the 8259 reaching the vCPU only through LINT0's virtual wire.

use protocols::vmcs::ctl::pin;
use protocols::vmcs::Field;
use protocols::vmexit::{ExitMessage, ExitReason, ExitReply, Gprs, ReplyFlags, TransferMask};

use super::time::{clocked, timer_writes, Cpu};
use super::{advanced, ept_exit, exit, gpr, vm, with_gprs, written, TestVm};
use crate::dispatch::RunState;
use crate::guest_memory::GuestMemory;
use protocols::vcpu_page::Clock;

const APIC: u64 = crate::devices::lapic::DEFAULT_BASE;
/// Where each test instruction is placed.
const RIP: u64 = 0x1000;

/// `mov dword [APIC + offset], value` (32-bit code), as an EPT-violation exit.
fn store(v: &mut TestVm, offset: u32, value: u32) -> ExitMessage {
    store_at(v, APIC as u32 + offset, value)
}

/// `mov dword [addr], value` (32-bit code), as an EPT-violation exit.
fn store_at(v: &mut TestVm, addr: u32, value: u32) -> ExitMessage {
    let mut code = vec![0xc7, 0x05];
    code.extend_from_slice(&addr.to_le_bytes());
    code.extend_from_slice(&value.to_le_bytes());
    v.memory_mut().write(RIP, &code).unwrap();
    ept_exit(u64::from(addr), true, RIP)
}

/// Program I/O APIC pin `pin`'s redirection entry (low half; destination APIC 0).
fn redirect(v: &mut TestVm, pin: u32, low: u32) {
    let m = store_at(v, 0xfec0_0000, 0x10 + 2 * pin);
    v.handle(&m);
    let m = store_at(v, 0xfec0_0010, low);
    v.handle(&m);
}

/// `mov eax, [APIC + offset]`, as an EPT-violation exit.
fn load(v: &mut TestVm, offset: u32) -> ExitMessage {
    let mut code = vec![0xa1];
    code.extend_from_slice(&(APIC as u32 + offset).to_le_bytes());
    v.memory_mut().write(RIP, &code).unwrap();
    ept_exit(APIC + u64::from(offset), false, RIP)
}

fn read_reg(v: &mut TestVm, offset: u32) -> u64 {
    let m = load(v, offset);
    let r = v.handle(&m);
    assert_eq!(advanced(&r), Some(5));
    gpr(&r, Gprs::RAX).unwrap()
}

fn msr(index: u32, value: Option<u64>) -> ExitMessage {
    let reason = if value.is_some() { ExitReason::Wrmsr } else { ExitReason::Rdmsr };
    let v = value.unwrap_or(0);
    with_gprs(
        exit(reason, 0),
        &[(Gprs::RCX, u64::from(index)), (Gprs::RAX, v & 0xffff_ffff), (Gprs::RDX, v >> 32)],
    )
}

fn injected(r: &ExitReply) -> Option<u8> {
    r.flags.contains(ReplyFlags::INJECT_EVENT).then_some(r.injection.raw() as u8)
}

#[test]
fn the_apic_page_answers_by_mmio_as_firmware_left_it() {
    let mut v = vm();
    assert_eq!(read_reg(&mut v, 0x30), 0x0006_0014, "version");
    assert_eq!(read_reg(&mut v, 0x20), 0, "ID 0");
    assert_eq!(read_reg(&mut v, 0xf0) & 0x100, 0x100, "software-enabled");
    assert_eq!(read_reg(&mut v, 0x350), 0x8700, "LINT0: ExtINT, level");
    assert_eq!(read_reg(&mut v, 0x360), 0x8400, "LINT1: NMI, level");
    let m = store(&mut v, 0x80, 0x30);
    v.handle(&m);
    assert_eq!(read_reg(&mut v, 0x80), 0x30, "TPR");
    assert_eq!(v.mmio_bus().unclaimed_reads(), 0);
    // IA32_APIC_BASE: the default page, enabled, bootstrap processor.
    let r = v.handle(&msr(0x1b, None));
    assert_eq!(gpr(&r, Gprs::RAX), Some(0xfee0_0900));
    assert_eq!(gpr(&r, Gprs::RDX), Some(0));
}

#[test]
fn x2apic_mode_moves_the_registers_to_msrs_and_unmaps_the_page() {
    let mut v = vm();
    // x2APIC registers fault before x2APIC mode.
    let r = v.handle(&msr(0x803, None));
    assert_eq!(injected(&r), Some(13));
    let r = v.handle(&msr(0x1b, Some(0xfee0_0c00)));
    assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    let r = v.handle(&msr(0x803, None));
    assert_eq!(gpr(&r, Gprs::RAX), Some(0x0006_0014));
    // The page is the APIC's no more: an unbacked address.
    let m = load(&mut v, 0x30);
    let r = v.handle(&m);
    assert_eq!(gpr(&r, Gprs::RAX), Some(0xffff_ffff));
    assert_eq!(v.mmio_bus().unclaimed_reads(), 1);
    // Back to xAPIC from x2APIC is illegal; through disabled it is legal and maps the page.
    assert_eq!(injected(&v.handle(&msr(0x1b, Some(0xfee0_0800)))), Some(13));
    v.handle(&msr(0x1b, Some(0xfee0_0000)));
    v.handle(&msr(0x1b, Some(0xfed0_0800)));
    let mut m = load(&mut v, 0x30);
    m.guest_physical = 0xfed0_0030;
    v.memory_mut().write(RIP, &[0xa1, 0x30, 0, 0xd0, 0xfe]).unwrap();
    assert_eq!(gpr(&v.handle(&m), Gprs::RAX), Some(0x0006_0014), "moved page");
}

#[test]
fn a_one_shot_timer_interrupts_a_computing_guest_and_wakes_a_halted_one() {
    let mut v = clocked(Clock::PREEMPTION_TIMER | Clock::TSC_OFFSETTING);
    let mut cpu = Cpu::new();
    let armed = u64::from(cpu.pin | pin::PREEMPTION_TIMER);
    for (offset, value) in [(0x320, 0x40), (0x3e0, 0xb)] {
        let m = store(&mut v, offset, value);
        cpu.run(&mut v, m, 0);
    }
    // The bus clock is the crystal of CPUID leaf 0x15, here the TSC's 2 GHz: a count of
    // 1,000,000 with divide-by-1 is 1,000,000 TSC ticks, 31,250 timer units of 32.
    let m = store(&mut v, 0x380, 1_000_000);
    let r = cpu.run(&mut v, m, 1000);
    assert_eq!(timer_writes(&r), (Some(armed), Some(31_250)));
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0)]);
    let r = cpu.run(&mut v, cpuid, 1000 + 999_999);
    assert_eq!(injected(&r), None);
    let m = load(&mut v, 0x390);
    let r = cpu.run(&mut v, m, 1000 + 999_000);
    assert_eq!(gpr(&r, Gprs::RAX), Some(1000), "the current count");
    // The preemption-timer exit at the expiry injects the vector; nothing is armed after.
    let r = cpu.run(&mut v, exit(ExitReason::PreemptionTimer, 0), 1000 + 1_000_000);
    assert_eq!(injected(&r), Some(0x40));
    assert_eq!(timer_writes(&r), (Some(u64::from(cpu.pin & !pin::PREEMPTION_TIMER)), None));
    assert_eq!(read_reg(&mut v, 0x100 + 0x40 / 32 * 0x10), 1, "in service");
    let m = store(&mut v, 0xb0, 0);
    cpu.run(&mut v, m, 1_002_000);
    assert_eq!(read_reg(&mut v, 0x100 + 0x40 / 32 * 0x10), 0, "EOI'd");
    // A halted guest skips to the next expiry; its TSC jumps with it.
    let m = store(&mut v, 0x380, 4_000_000);
    cpu.run(&mut v, m, 2_000_000);
    let r = cpu.run(&mut v, exit(ExitReason::Hlt, 0), 2_500_000);
    assert_eq!(injected(&r), Some(0x40));
    assert_eq!(written(&r, Field::TscOffset), Some(3_500_000));
    assert_eq!(v.run_state(), RunState::Running);
}

#[test]
fn the_tsc_deadline_timer_by_msr() {
    let mut v = clocked(Clock::PREEMPTION_TIMER | Clock::TSC_OFFSETTING);
    let mut cpu = Cpu::new();
    let m = store(&mut v, 0x320, 0x41 | 2 << 17);
    cpu.run(&mut v, m, 0);
    let r = cpu.run(&mut v, msr(0x6e0, Some(64_000)), 32_000);
    assert_eq!(timer_writes(&r).1, Some(1000), "32,000 ticks left");
    let r = cpu.run(&mut v, msr(0x6e0, None), 40_000);
    assert_eq!(gpr(&r, Gprs::RAX), Some(64_000));
    let r = cpu.run(&mut v, exit(ExitReason::PreemptionTimer, 0), 64_000);
    assert_eq!(injected(&r), Some(0x41));
    let r = cpu.run(&mut v, msr(0x6e0, None), 65_000);
    assert_eq!(gpr(&r, Gprs::RAX), Some(0), "a deadline that fired reads 0");
}

#[test]
fn cr8_is_the_tpr_and_masks_by_priority_class() {
    let mut v = vm();
    // A self-IPI (fixed, vector 0x45) while the guest is in 64-bit mode with TPR class 4.
    let mut long = exit(ExitReason::CrAccess, 8); // MOV to CR8 from RAX
    long.transfer |= TransferMask::EFER_PAT | TransferMask::SEGMENTS;
    long.efer = 0x500;
    long.segments.regs[1].access_rights = 0xa09b;
    let r = v.handle(&with_gprs(long, &[(Gprs::RAX, 4)]));
    assert!(r.flags.contains(ReplyFlags::ADVANCE_RIP));
    assert_eq!(read_reg(&mut v, 0x80), 0x40, "TPR = CR8 << 4");
    let m = store(&mut v, 0x300, 0x4045);
    let r = v.handle(&m);
    assert_eq!(injected(&r), None, "class 4 does not beat TPR class 4");
    let r = v.handle(&with_gprs(long, &[(Gprs::RAX, 3)]));
    assert_eq!(injected(&r), Some(0x45));
    let mut read = long;
    read.qualification = 8 | 1 << 4 | 5 << 8; // MOV RBP, CR8
    assert_eq!(gpr(&v.handle(&read), Gprs::RBP), Some(3));
}

#[test]
fn the_8259_reaches_the_vcpu_only_through_lint0() {
    let mut v = vm();
    super::boot(&mut v, 100);
    v.advance_time(100);
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0)]);
    assert_eq!(injected(&v.handle(&cpuid)), Some(0x30), "virtual wire");
    v.handle(&out_eoi());
    // Masking LINT0 cuts the wire: the 8259's request waits.
    let m = store(&mut v, 0x350, 0x1_0700);
    v.handle(&m);
    v.advance_time(100);
    assert_eq!(injected(&v.handle(&cpuid)), None);
    let m = store(&mut v, 0x350, 0x0700);
    assert_eq!(injected(&v.handle(&m)), Some(0x30));
}

/// As Linux runs a PC: the 8259 masked, LINT0 masked, the PIT on I/O APIC pin 2 (edge)
/// and COM1 on pin 4 (level), EOI'd at the local APIC, which broadcasts it to the I/O
/// APIC for the level-triggered one.
#[test]
fn device_lines_reach_the_vcpu_through_the_ioapic() {
    let mut v = vm();
    super::boot(&mut v, 100);
    v.handle(&super::out_byte(0x21, 0xff));
    v.handle(&super::out_byte(0xa1, 0xff));
    let m = store(&mut v, 0x350, 0x1_0700);
    v.handle(&m);
    redirect(&mut v, 2, 0x30);
    redirect(&mut v, 4, 0x34 | 1 << 15);
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0)]);
    v.advance_time(100);
    assert_eq!(injected(&v.handle(&cpuid)), Some(0x30), "the PIT by pin 2");
    let m = store(&mut v, 0xb0, 0);
    assert_eq!(injected(&v.handle(&m)), None);
    // COM1's receive interrupt, level-triggered: one message until the EOI, then again
    // while the line stays high.
    v.handle(&super::out_byte(0x3f9, 0x01));
    assert!(v.console_input(b'a'));
    assert_eq!(injected(&v.handle(&cpuid)), Some(0x34));
    assert_eq!(injected(&v.handle(&cpuid)), None, "remote IRR holds it");
    let m = store(&mut v, 0xb0, 0);
    assert_eq!(injected(&v.handle(&m)), Some(0x34), "EOI with the line still high");
    let r = v.handle(&super::in_byte(0x3f8));
    assert_eq!(gpr(&r, Gprs::RAX).map(|a| a as u8), Some(b'a'));
    let m = store(&mut v, 0xb0, 0);
    assert_eq!(injected(&v.handle(&m)), None, "the line dropped");
    assert_eq!(v.platform().dropped_messages, 0);
}

fn out_eoi() -> ExitMessage {
    super::out_byte(0x20, 0x20)
}

/// Two vCPUs: vCPU 0 starts vCPU 1 with INIT and STARTUP written to its ICR (the start
/// batch enters real mode at the STARTUP page), each vCPU reads its own APIC ID by CPUID
/// and in its APIC page, and a fixed IPI from one raises the vector in the other's APIC,
/// marks that vCPU to be kicked, and is injected at its next exit.
#[test]
fn two_vcpus_start_and_interrupt_each_other() {
    use crate::dispatch::VmConfig;
    use crate::guest_memory::GuestMemory;
    let config = VmConfig { vcpus: 2, ..VmConfig::default() };
    let mut v = crate::dispatch::Vm::new(
        &config,
        super::host_cpuid,
        super::Ram(vec![0; 0x10000]),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(v.vcpus(), 2);
    assert!(!v.serve_vcpu(1), "vCPU 1 waits for INIT and STARTUP");
    assert!(!v.serve_vcpu(2), "no vCPU 2");
    // INIT level assert, its de-assert, then STARTUP at page 0x9a, to APIC ID 1.
    for low in [0xc500, 0x8500, 0x069a] {
        let m = store(&mut v, 0x310, 1 << 24);
        v.handle(&m);
        let m = store(&mut v, 0x300, low);
        v.handle(&m);
    }
    assert_eq!(v.take_start(), Some((1, 0x9a)));
    assert_eq!(v.take_start(), None);
    let batch = v.start_batch(1, 0x9a).unwrap();
    for w in [(Field::GuestCsSelector, 0x9a00), (Field::GuestCsBase, 0x9a000), (Field::GuestRip, 0)]
    {
        assert!(batch.writes().iter().any(|x| (x.field, x.value) == (w.0 as u32, w.1)), "{w:?}");
    }
    assert!(batch.writes().iter().any(|x| x.field == Field::Cr0ReadShadow as u32));
    // Each vCPU's own APIC ID.
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 1)]);
    assert_eq!(gpr(&v.handle(&cpuid), Gprs::RBX).map(|b| b >> 24), Some(0));
    assert!(v.serve_vcpu(1));
    assert_eq!(v.served_vcpu(), 1);
    assert_eq!(gpr(&v.handle(&cpuid), Gprs::RBX).map(|b| b >> 24), Some(1));
    assert_eq!(read_reg(&mut v, 0x20), 1 << 24, "APIC ID register");
    assert_eq!(read_reg(&mut v, 0xf0) & 0x100, 0, "software-disabled after RESET");
    let m = store(&mut v, 0xf0, 0x1ff);
    v.handle(&m);
    // vCPU 1 sends vector 0x40 to APIC 0 (physical): vCPU 0 is to be kicked.
    let m = store(&mut v, 0x310, 0);
    v.handle(&m);
    let m = store(&mut v, 0x300, 0x40);
    let r = v.handle(&m);
    assert_eq!(injected(&r), None, "not to itself");
    assert_eq!(v.take_kicks(), 1 << 0);
    assert_eq!(v.take_kicks(), 0);
    assert!(v.serve_vcpu(0));
    let r = v.handle(&exit(ExitReason::PreemptionTimer, 0));
    assert_eq!(injected(&r), Some(0x40), "the kick's exit injects it");
    // A broadcast to all but self reaches vCPU 1.
    let m = store(&mut v, 0x300, 3 << 18 | 0x41);
    v.handle(&m);
    assert_eq!(v.take_kicks(), 1 << 1);
    assert!(v.serve_vcpu(1));
    let r = v.handle(&exit(ExitReason::PreemptionTimer, 0));
    assert_eq!(injected(&r), Some(0x41));
    // A second STARTUP to a running vCPU changes nothing.
    let m = store(&mut v, 0x310, 0);
    v.handle(&m);
    let m = store(&mut v, 0x300, 0x069a);
    v.handle(&m);
    assert!(v.serve_vcpu(0));
    assert_eq!(v.take_start(), None);
    let _ = v.memory_mut().write(0, &[0]);
}
