//! Guest time on the exit path: a clock from the kernel's TSC rate turns exit stamps into
//! PIT time, IRQ 0 arrives while the guest computes, the preemption timer is armed once
//! per PIT programming, and a halted guest's TSC jumps with the time it skips.

use protocols::vcpu_page::Clock;
use protocols::vmcs::ctl::{pin, proc};
use protocols::vmcs::Field;
use protocols::vmexit::{ExitMessage, ExitReason, ExitReply, Gprs, ReplyFlags, TransferMask};

use super::{exit, gpr, with_gprs, written, TestVm};
use crate::dispatch::{RunState, Vm, VmConfig};
use crate::testing::{assert_well_formed, host_cpuid, Ram};

/// TSC ticks per second of the tests' host.
pub(super) const TSC_HZ: u64 = 2_000_000_000;
/// A 250 Hz PIT period in PIT clocks.
const PERIOD: u16 = 4772;
/// The preemption-timer value of that period at TSC / 32: 7,998,780 TSC ticks / 32,
/// rounded up.
const PERIOD_UNITS: u64 = 249_962;
/// The guest TSC of the first 250 Hz edge after the anchor at 0: ceil(4772 × TSC_HZ /
/// 1,193,182).
const FIRST_EDGE: u64 = 7_998_780;

fn clock(flags: u8) -> Clock {
    Clock { tsc_hz: TSC_HZ, preemption_timer_shift: 5, flags, ..Clock::default() }
}

pub(super) fn clocked(flags: u8) -> TestVm {
    let config = VmConfig { clock: clock(flags), ..VmConfig::default() };
    Vm::new(&config, host_cpuid, Ram(vec![0; 0x10000]), Vec::new()).unwrap()
}

/// The vCPU's controls as the kernel keeps them: each reply's writes change them, and
/// each exit carries them (this VMM asks for `CONTROLS` on every exit).
pub(super) struct Cpu {
    pub(super) pin: u32,
    pub(super) proc: u32,
    pub(super) tsc_offset: u64,
}

impl Cpu {
    pub(super) fn new() -> Self {
        Self {
            pin: pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
            proc: proc::HLT_EXITING,
            tsc_offset: 0,
        }
    }

    /// `m` as taken at host TSC `tsc`.
    fn at(&self, mut m: ExitMessage, tsc: u64) -> ExitMessage {
        m.exit_tsc = tsc;
        m.transfer |= TransferMask::CONTROLS;
        m.controls.pin = self.pin;
        m.controls.proc = self.proc;
        m
    }

    fn apply(&mut self, r: &ExitReply) {
        if let Some(v) = written(r, Field::PinBasedControls) {
            self.pin = v as u32;
        }
        if let Some(v) = written(r, Field::ProcBasedControls) {
            self.proc = v as u32;
        }
        if let Some(v) = written(r, Field::TscOffset) {
            self.tsc_offset = v;
        }
    }

    pub(super) fn run(&mut self, v: &mut TestVm, m: ExitMessage, tsc: u64) -> ExitReply {
        let m = self.at(m, tsc);
        let r = crate::serve::answer(v, &m, false);
        assert_well_formed(&m, &r);
        self.apply(&r);
        r
    }

    fn out(&mut self, v: &mut TestVm, port: u16, value: u8, tsc: u64) -> ExitReply {
        self.run(v, super::out_byte(port, value), tsc)
    }
}

/// The PICs as Linux sets them up (vectors 0x30/0x38), then PIT channel 0 in mode 2 at
/// `period`, all at host TSC `tsc`; the reply to the last write.
fn boot(v: &mut TestVm, cpu: &mut Cpu, period: u16, tsc: u64) -> ExitReply {
    let pics = [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01)];
    let slaves = [(0xa0, 0x11), (0xa1, 0x38), (0xa1, 0x02), (0xa1, 0x01)];
    for (port, value) in pics.into_iter().chain(slaves) {
        cpu.out(v, port, value, tsc);
    }
    cpu.out(v, 0x43, 0x34, tsc);
    cpu.out(v, 0x40, period as u8, tsc);
    cpu.out(v, 0x40, (period >> 8) as u8, tsc)
}

pub(super) fn timer_writes(r: &ExitReply) -> (Option<u64>, Option<u64>) {
    (written(r, Field::PinBasedControls), written(r, Field::PreemptionTimerValue))
}

#[test]
fn a_250_hz_pit_interrupts_a_guest_that_computes() {
    let mut v = clocked(Clock::PREEMPTION_TIMER | Clock::TSC_OFFSETTING);
    let mut cpu = Cpu::new();
    let base_pin = cpu.pin;
    let r = boot(&mut v, &mut cpu, PERIOD, 0);
    // Programming channel 0 arms the preemption timer with the period.
    let armed = u64::from(base_pin | pin::PREEMPTION_TIMER);
    assert_eq!(timer_writes(&r), (Some(armed), Some(PERIOD_UNITS)));
    assert_eq!(v.time().preemption_timer(), Some(PERIOD_UNITS as u32));
    // Before the first edge nothing happens and nothing is written.
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0)]);
    let r = cpu.run(&mut v, cpuid, FIRST_EDGE - 1);
    assert_eq!((r.flags, r.count), (ReplyFlags::ADVANCE_RIP, 0));
    // A second of exits, each a preemption-timer exit one period in (the guest computes):
    // every one injects IRQ 0, and the timer is never written again.
    let timer_exit = exit(ExitReason::PreemptionTimer, 0);
    for k in 1..=250u64 {
        let r = cpu.run(&mut v, timer_exit, k * 8_000_000);
        assert!(r.flags.contains(ReplyFlags::INJECT_EVENT), "exit {k}");
        assert_eq!(r.injection.raw(), 0x8000_0030);
        assert_eq!(timer_writes(&r), (None, None), "exit {k}");
        cpu.out(&mut v, 0x20, 0x20, k * 8_000_000 + 1000); // EOI
    }
    assert_eq!(v.stats().interrupts_injected, 250);
    // Two seconds of guest time, exactly: the PIT counted them.
    assert_eq!(v.platform().pit.now(), 2_000_000_000u128 as u64 * 1_193_182 / TSC_HZ);
    assert_eq!(v.platform().coalesced_ticks, 0);
    // A control word stops the channel (the timer goes off); a one-shot count re-arms
    // it with its length, and once it fired the timer goes off.
    let t = 2_000_002_000; // before the 251st edge
    let r = cpu.out(&mut v, 0x43, 0x30, t);
    assert_eq!(timer_writes(&r), (Some(u64::from(base_pin)), None));
    cpu.out(&mut v, 0x40, 100, t);
    let r = cpu.out(&mut v, 0x40, 0, t);
    assert_eq!(timer_writes(&r), (Some(armed), Some(5239)), "100 clocks in units of 32 ticks");
    let r = cpu.run(&mut v, timer_exit, t + 200_000);
    assert!(r.flags.contains(ReplyFlags::INJECT_EVENT));
    assert_eq!(timer_writes(&r), (Some(u64::from(base_pin)), None));
    assert_eq!(v.time().preemption_timer(), None);
}

#[test]
fn a_halted_guest_skips_to_the_edge_and_its_tsc_jumps() {
    let mut v = clocked(Clock::PREEMPTION_TIMER | Clock::TSC_OFFSETTING);
    let mut cpu = Cpu::new();
    boot(&mut v, &mut cpu, PERIOD, 0);
    let hlt = exit(ExitReason::Hlt, 0);
    let r = cpu.run(&mut v, hlt, 1_000_000);
    // Woken at once with the edge's interrupt, the TSC now as far on as the edge.
    assert_eq!(r.flags, ReplyFlags::ADVANCE_RIP | ReplyFlags::INJECT_EVENT);
    assert_eq!(r.injection.raw(), 0x8000_0030);
    assert_eq!(written(&r, Field::TscOffset), Some(FIRST_EDGE - 1_000_000));
    assert_ne!(cpu.proc & proc::USE_TSC_OFFSETTING, 0);
    assert_eq!(v.run_state(), RunState::Running);
    assert_eq!(v.time().clock().unwrap().guest_tsc(1_000_000), FIRST_EDGE);
    cpu.out(&mut v, 0x20, 0x20, 1_000_100); // EOI
                                            // The next edge is one period of guest time later: host TSC 1,000,000 + a period.
    let second_edge = 15_997_560; // ceil(2 × 4772 × TSC_HZ / 1,193,182)
    let host = second_edge - cpu.tsc_offset;
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0)]);
    let r = cpu.run(&mut v, cpuid, host - 1);
    assert!(!r.flags.contains(ReplyFlags::INJECT_EVENT));
    let r = cpu.run(&mut v, cpuid, host);
    assert!(r.flags.contains(ReplyFlags::INJECT_EVENT));
    assert_eq!(v.platform().pit.now(), 2 * u64::from(PERIOD));
}

#[test]
fn a_test_hypercalls_tsc_offset_is_no_passage_of_time() {
    let mut v = clocked(Clock::PREEMPTION_TIMER | Clock::TSC_OFFSETTING);
    let mut cpu = Cpu::new();
    boot(&mut v, &mut cpu, PERIOD, 0);
    let call = super::vmcall(crate::hypercall::TSC_OFFSET, &[1 << 40]);
    let r = cpu.run(&mut v, call, 1000);
    assert_eq!(written(&r, Field::TscOffset), Some(1 << 40));
    assert!(!r.flags.contains(ReplyFlags::INJECT_EVENT), "no edges from the jump");
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0)]);
    assert!(!cpu.run(&mut v, cpuid, FIRST_EDGE - 1).flags.contains(ReplyFlags::INJECT_EVENT));
    assert!(cpu.run(&mut v, cpuid, FIRST_EDGE).flags.contains(ReplyFlags::INJECT_EVENT));
}

#[test]
fn without_the_timer_flag_or_a_rate_nothing_is_armed() {
    let mut v = clocked(Clock::TSC_OFFSETTING);
    let mut cpu = Cpu::new();
    let r = boot(&mut v, &mut cpu, PERIOD, 0);
    assert_eq!(timer_writes(&r), (None, None));
    // Time still passes with the exits.
    let cpuid = with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, 0)]);
    assert!(cpu.run(&mut v, cpuid, FIRST_EDGE).flags.contains(ReplyFlags::INJECT_EVENT));
    // No clock at all: exits stamped hours apart move no time.
    let mut v = super::vm();
    let r = boot(&mut v, &mut cpu, PERIOD, 0);
    assert_eq!(timer_writes(&r), (None, None));
    assert!(v.time().clock().is_none());
    let r = cpu.run(&mut v, cpuid, 1 << 50);
    assert!(!r.flags.contains(ReplyFlags::INJECT_EVENT));
    assert_eq!(v.platform().pit.now(), 0);
}

#[test]
fn cpuid_offers_the_clocks_rate() {
    let mut v = clocked(0);
    let leaf = |v: &mut TestVm, n: u64| {
        let r = v.handle(&with_gprs(exit(ExitReason::Cpuid, 0), &[(Gprs::RAX, n)]));
        [Gprs::RAX, Gprs::RBX, Gprs::RCX].map(|g| gpr(&r, g).unwrap())
    };
    assert_eq!(leaf(&mut v, 0x15), [1, 1, TSC_HZ]);
    assert_eq!(leaf(&mut v, 0x16), [2000, 2000, 0]);
    assert_eq!(leaf(&mut v, 0x4000_0010), [2_000_000, 2_000_000, 0], "TSC and APIC bus kHz");
    assert_eq!(leaf(&mut v, 0)[0], 0x16);
    let mut plain = super::vm();
    assert_eq!(leaf(&mut plain, 0x4000_0010), [0, 0, 0]);
}
