//! The local APIC against the numbers of Intel SDM Vol. 3 chapter 11.

use super::{
    ApicMode, Eoi, Lapic, LapicConfig, LintAction, LintPin, MsrError, RaiseError, StartSignal,
    TimerClock, Trigger, ESR_RECEIVE_ILLEGAL_VECTOR, ESR_SEND_ILLEGAL_VECTOR, IA32_TSC_DEADLINE,
};
use crate::bus::BusDevice;

/// xAPIC register offsets (SDM Table 11-1).
mod off {
    pub const ID: u64 = 0x20;
    pub const VERSION: u64 = 0x30;
    pub const TPR: u64 = 0x80;
    pub const APR: u64 = 0x90;
    pub const PPR: u64 = 0xa0;
    pub const EOI: u64 = 0xb0;
    pub const LDR: u64 = 0xd0;
    pub const DFR: u64 = 0xe0;
    pub const SVR: u64 = 0xf0;
    pub const ISR: u64 = 0x100;
    pub const TMR: u64 = 0x180;
    pub const IRR: u64 = 0x200;
    pub const ESR: u64 = 0x280;
    pub const CMCI: u64 = 0x2f0;
    pub const ICR_LO: u64 = 0x300;
    pub const ICR_HI: u64 = 0x310;
    pub const TIMER: u64 = 0x320;
    pub const THERMAL: u64 = 0x330;
    pub const PERF: u64 = 0x340;
    pub const LINT0: u64 = 0x350;
    pub const LINT1: u64 = 0x360;
    pub const ERROR: u64 = 0x370;
    pub const INITIAL: u64 = 0x380;
    pub const CURRENT: u64 = 0x390;
    pub const DCR: u64 = 0x3e0;
}

const MASKED: u32 = 1 << 16;
const PERIODIC: u32 = 1 << 17;
const TSC_DEADLINE: u32 = 2 << 17;

/// A 2 GHz TSC and a 100 MHz bus: 20 TSC ticks per bus clock.
fn config(apic_id: u32) -> LapicConfig {
    LapicConfig {
        apic_id,
        bsp: true,
        x2apic: true,
        phys_addr_bits: 39,
        clock: TimerClock::new(2_000_000_000, 100_000_000).unwrap(),
    }
}

fn rd(l: &mut Lapic, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    l.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn wr(l: &mut Lapic, offset: u64, value: u32) {
    l.write(offset, &value.to_le_bytes());
}

/// A software-enabled APIC with ID 3.
fn enabled() -> Lapic {
    let mut l = Lapic::new(config(3));
    wr(&mut l, off::SVR, 0x1ff);
    l
}

/// An APIC in x2APIC mode with `apic_id`, software-enabled.
fn x2(apic_id: u32) -> Lapic {
    let mut l = Lapic::new(config(apic_id));
    l.set_apic_base(0xfee0_0000 | 1 << 11 | 1 << 10).unwrap();
    l.msr_write(0x80f, 0x1ff).unwrap();
    l
}

/// The IRR bit of `vector`, read as the guest would.
fn irr(l: &mut Lapic, vector: u8) -> bool {
    let reg = rd(l, off::IRR + u64::from(vector >> 5) * 0x10);
    reg & 1 << (vector & 31) != 0
}

#[test]
fn reset_values_follow_the_sdm() {
    let mut l = Lapic::new(config(3));
    assert_eq!(l.mode(), ApicMode::XApic);
    assert_eq!(l.apic_base(), 0xfee0_0900, "base 0xFEE00000, EN, BSP");
    assert_eq!(l.mmio_base(), Some(0xfee0_0000));
    assert_eq!(rd(&mut l, off::ID), 0x0300_0000, "xAPIC ID in bits 31:24");
    assert_eq!(rd(&mut l, off::VERSION), 0x0006_0014, "version 0x14, max LVT entry 6");
    for (reg, value) in [
        (off::TPR, 0),
        (off::APR, 0),
        (off::PPR, 0),
        (off::LDR, 0),
        (off::DFR, 0xffff_ffff),
        (off::SVR, 0xff),
        (off::ESR, 0),
        (off::ICR_LO, 0),
        (off::ICR_HI, 0),
        (off::INITIAL, 0),
        (off::CURRENT, 0),
        (off::DCR, 0),
    ] {
        assert_eq!(rd(&mut l, reg), value, "{reg:#x}");
    }
    for i in 0..8 {
        assert_eq!(rd(&mut l, off::ISR + i * 0x10), 0);
        assert_eq!(rd(&mut l, off::TMR + i * 0x10), 0);
        assert_eq!(rd(&mut l, off::IRR + i * 0x10), 0);
    }
    for lvt in [off::CMCI, off::TIMER, off::THERMAL, off::PERF, off::LINT0, off::LINT1, off::ERROR]
    {
        assert_eq!(rd(&mut l, lvt), MASKED, "{lvt:#x}: only the mask bit");
    }
    assert!(!l.enabled(), "SVR bit 8 clear: software-disabled");
}

#[test]
fn writes_keep_only_the_writable_bits() {
    let mut l = enabled();
    for (reg, kept) in [
        (off::TPR, 0xff),
        (off::LDR, 0xff00_0000),
        (off::SVR, 0x3ff),
        (off::TIMER, 0x0007_00ff),
        (off::THERMAL, 0x0001_07ff),
        (off::PERF, 0x0001_07ff),
        (off::CMCI, 0x0001_07ff),
        (off::LINT0, 0x0001_a7ff),
        (off::LINT1, 0x0001_a7ff),
        (off::ERROR, 0x0001_00ff),
        (off::ICR_HI, 0xff00_0000),
        (off::DCR, 0xb),
    ] {
        wr(&mut l, reg, 0xffff_ffff);
        assert_eq!(rd(&mut l, reg), kept, "{reg:#x}");
    }
    // DFR: the model in bits 31:28, the rest reads as ones.
    wr(&mut l, off::DFR, 0);
    assert_eq!(rd(&mut l, off::DFR), 0x0fff_ffff);
    // ICR low: delivery status (bit 12) and bits 13, 16-17, 20-31 do not stick. All
    // excluding self: no one to send to.
    wr(&mut l, off::ICR_LO, 0xffff_ffff);
    assert_eq!(rd(&mut l, off::ICR_LO), 0x000c_cfff);
    // Read-only registers ignore writes.
    for reg in [off::ID, off::VERSION, off::PPR, off::APR, off::ISR, off::IRR, off::CURRENT] {
        let before = rd(&mut l, reg);
        wr(&mut l, reg, 0x5a5a_5a5a);
        assert_eq!(rd(&mut l, reg), before, "{reg:#x}");
    }
}

#[test]
fn narrow_reads_see_register_bytes_and_odd_writes_are_dropped() {
    let mut l = enabled();
    let mut b1 = [0u8; 1];
    l.read(off::ID + 3, &mut b1);
    assert_eq!(b1, [3]);
    let mut b2 = [0u8; 2];
    l.read(off::VERSION, &mut b2);
    assert_eq!(b2, [0x14, 0x00]);
    let mut b8 = [0u8; 8];
    l.read(off::VERSION, &mut b8);
    assert_eq!(b8, [0x14, 0, 6, 0, 0, 0, 0, 0], "bytes 4-15 of a slot read 0");
    // Reserved offsets (RRD 0xC0, 0x290, 0x3A0) and SELF IPI, which xAPIC lacks.
    for reg in [0x40, 0xc0, 0x290, 0x3a0, 0x3f0, 0xff0] {
        assert_eq!(rd(&mut l, reg), 0, "{reg:#x}");
    }
    l.write(off::TPR, &[0x20]);
    l.write(off::TPR, &[0x20, 0, 0, 0, 0, 0, 0, 0]);
    l.write(off::TPR + 4, &[0x20, 0, 0, 0]);
    assert_eq!(rd(&mut l, off::TPR), 0);
    assert_eq!(l.dropped_writes(), 3);
    wr(&mut l, 0x3f0, 0x40);
    assert!(!irr(&mut l, 0x40), "no SELF IPI by MMIO");
}

#[test]
fn irr_isr_and_tmr_registers_are_laid_out_by_vector() {
    let mut l = enabled();
    l.raise(0x45, Trigger::Level).unwrap();
    // Vector 0x45 is bit 5 of the third register.
    assert_eq!(rd(&mut l, off::IRR + 0x20), 1 << 5);
    assert_eq!(rd(&mut l, off::TMR + 0x20), 1 << 5);
    assert!(l.ack(0x45));
    assert!(!l.ack(0x45), "no longer pending");
    assert_eq!(rd(&mut l, off::IRR + 0x20), 0);
    assert_eq!(rd(&mut l, off::ISR + 0x20), 1 << 5);
    l.raise(0xff, Trigger::Edge).unwrap();
    assert_eq!(rd(&mut l, off::IRR + 0x70), 1 << 31);
}

#[test]
fn priority_classes_and_ppr() {
    let mut l = enabled();
    l.raise(0x31, Trigger::Edge).unwrap();
    l.raise(0x45, Trigger::Edge).unwrap();
    assert_eq!(l.highest_deliverable(), Some(0x45));
    l.ack(0x45);
    assert_eq!(rd(&mut l, off::PPR), 0x40, "ISRV class");
    assert_eq!(l.highest_deliverable(), None, "class 3 does not beat class 4");
    l.raise(0x42, Trigger::Edge).unwrap();
    assert_eq!(l.highest_deliverable(), None, "nor does the same class");
    l.raise(0x52, Trigger::Edge).unwrap();
    assert_eq!(l.highest_deliverable(), Some(0x52), "a higher class nests");
    l.ack(0x52);
    assert_eq!(l.ppr(), 0x50);
    // SDM 11.8.3.1: PPR = TPR when TPR[7:4] >= ISRV[7:4], else ISRV[7:4] with 0 below.
    wr(&mut l, off::TPR, 0x5a);
    assert_eq!(rd(&mut l, off::PPR), 0x5a);
    wr(&mut l, off::TPR, 0x3a);
    assert_eq!(rd(&mut l, off::PPR), 0x50);
    wr(&mut l, off::TPR, 0);
    assert_eq!(l.eoi(), Some(Eoi { vector: 0x52, level: false }));
    assert_eq!(l.ppr(), 0x40);
    assert_eq!(l.highest_deliverable(), None);
    wr(&mut l, off::EOI, 0);
    assert_eq!(l.ppr(), 0);
    assert_eq!(l.highest_deliverable(), Some(0x42));
}

#[test]
fn tpr_blocks_classes_at_or_below_it() {
    let mut l = enabled();
    l.set_cr8(4);
    assert_eq!(l.tpr(), 0x40);
    assert_eq!(l.cr8(), 4);
    l.raise(0x4f, Trigger::Edge).unwrap();
    assert_eq!(l.highest_deliverable(), None);
    wr(&mut l, off::TPR, 0x3f);
    assert_eq!(l.highest_deliverable(), Some(0x4f));
    wr(&mut l, off::TPR, 0xff);
    l.raise(0xfe, Trigger::Edge).unwrap();
    assert_eq!(l.highest_deliverable(), None, "TPR 0xFF blocks everything");
}

#[test]
fn eoi_clears_the_highest_in_service_and_reports_level_ones() {
    let mut l = enabled();
    l.raise(0x60, Trigger::Level).unwrap();
    l.ack(0x60);
    l.raise(0x70, Trigger::Edge).unwrap();
    l.ack(0x70);
    assert_eq!(l.eoi(), Some(Eoi { vector: 0x70, level: false }));
    assert_eq!(l.take_eoi_broadcast(), None);
    wr(&mut l, off::EOI, 0);
    assert_eq!(rd(&mut l, off::ISR + 0x30), 0);
    assert_eq!(l.take_eoi_broadcast(), Some(0x60));
    assert_eq!(l.take_eoi_broadcast(), None);
    assert_eq!(l.eoi(), None, "nothing in service");
}

#[test]
fn illegal_vectors_are_refused_and_latched_in_the_esr() {
    let mut l = enabled();
    assert_eq!(l.raise(15, Trigger::Edge), Err(RaiseError::IllegalVector));
    assert!(!irr(&mut l, 15));
    assert_eq!(rd(&mut l, off::ESR), 0, "the ESR shows errors after a write");
    wr(&mut l, off::ESR, 0);
    assert_eq!(rd(&mut l, off::ESR), 0x40, "bit 6: receive illegal vector");
    wr(&mut l, off::ESR, 0);
    assert_eq!(rd(&mut l, off::ESR), 0, "a write clears what the last showed");
    // An unmasked error LVT raises its vector.
    wr(&mut l, off::ERROR, 0xe0);
    assert_eq!(l.raise(3, Trigger::Edge), Err(RaiseError::IllegalVector));
    assert!(irr(&mut l, 0xe0));
}

#[test]
fn software_disable_masks_lvts_and_refuses_but_keeps_state() {
    let mut l = enabled();
    wr(&mut l, off::TIMER, 0x30);
    l.raise(0x40, Trigger::Edge).unwrap();
    wr(&mut l, off::SVR, 0xff);
    assert!(!l.enabled());
    assert_eq!(rd(&mut l, off::TIMER), MASKED | 0x30);
    wr(&mut l, off::LINT0, 0x700);
    assert_eq!(rd(&mut l, off::LINT0), MASKED | 0x700, "the mask cannot be cleared");
    assert_eq!(l.raise(0x50, Trigger::Edge), Err(RaiseError::Disabled));
    assert_eq!(l.highest_deliverable(), Some(0x40), "IRR is held");
    // Enabling again leaves the entries masked until software unmasks them.
    wr(&mut l, off::SVR, 0x1ff);
    assert_eq!(rd(&mut l, off::TIMER), MASKED | 0x30);
    wr(&mut l, off::TIMER, 0x30);
    assert_eq!(rd(&mut l, off::TIMER), 0x30);
}

#[test]
fn self_ipis_by_icr() {
    let mut l = enabled();
    // Shorthand self (bits 19:18 = 01b), fixed.
    wr(&mut l, off::ICR_LO, 1 << 18 | 0x55);
    assert!(irr(&mut l, 0x55));
    // Physical destination = own ID 3.
    wr(&mut l, off::ICR_HI, 3 << 24);
    wr(&mut l, off::ICR_LO, 0x66);
    assert!(irr(&mut l, 0x66));
    assert_eq!(rd(&mut l, off::ICR_LO) & 1 << 12, 0, "delivery status idle");
    assert_eq!(l.take_outgoing(), None, "to this APIC alone");
    // Another APIC: kept for the platform, not raised here.
    wr(&mut l, off::ICR_HI, 4 << 24);
    wr(&mut l, off::ICR_LO, 0x67);
    assert!(!irr(&mut l, 0x67));
    let out = l.take_outgoing().expect("an IPI for APIC 4");
    assert_eq!((out.dest, out.vector, out.logical, out.broadcast), (4, 0x67, false, false));
    assert_eq!(l.take_outgoing(), None, "taken once");
    // Physical broadcast 0xFF includes self.
    wr(&mut l, off::ICR_HI, 0xff << 24);
    wr(&mut l, off::ICR_LO, 0x68);
    assert!(irr(&mut l, 0x68));
    // Logical, flat model: LDR bit 1 matches destination mask 0x02.
    wr(&mut l, off::LDR, 0x02 << 24);
    wr(&mut l, off::ICR_HI, 0x02 << 24);
    wr(&mut l, off::ICR_LO, 1 << 11 | 0x69);
    assert!(irr(&mut l, 0x69));
    wr(&mut l, off::ICR_HI, 0x04 << 24);
    wr(&mut l, off::ICR_LO, 1 << 11 | 0x6a);
    assert!(!irr(&mut l, 0x6a));
    // Logical, cluster model: cluster 1, member bit 0.
    wr(&mut l, off::DFR, 0x0fff_ffff);
    wr(&mut l, off::LDR, 0x11 << 24);
    wr(&mut l, off::ICR_HI, 0x11 << 24);
    wr(&mut l, off::ICR_LO, 1 << 11 | 0x6b);
    assert!(irr(&mut l, 0x6b));
    wr(&mut l, off::ICR_HI, 0x21 << 24);
    wr(&mut l, off::ICR_LO, 1 << 11 | 0x6c);
    assert!(!irr(&mut l, 0x6c), "another cluster");
    // All excluding self goes to the others only; INIT to self is dropped.
    wr(&mut l, off::ICR_LO, 3 << 18 | 0x6d);
    assert!(!irr(&mut l, 0x6d));
    assert!(l.take_outgoing().is_some_and(|i| i.broadcast && i.vector == 0x6d));
    wr(&mut l, off::ICR_LO, 1 << 18 | 5 << 8);
    assert_eq!(l.take_outgoing(), None);
    assert_eq!(l.dropped_ipis(), 1, "INIT to self");
    // An INIT level de-assert changes nobody.
    wr(&mut l, off::ICR_LO, 1 << 15 | 5 << 8);
    assert_eq!(l.take_outgoing(), None);
    // NMI to self.
    wr(&mut l, off::ICR_LO, 1 << 18 | 4 << 8);
    assert!(l.take_nmi());
    assert!(!l.take_nmi());
}

#[test]
fn an_illegal_self_ipi_sets_both_esr_bits() {
    let mut l = enabled();
    wr(&mut l, off::ICR_LO, 1 << 18 | 0x0e);
    wr(&mut l, off::ESR, 0);
    assert_eq!(rd(&mut l, off::ESR), ESR_SEND_ILLEGAL_VECTOR | ESR_RECEIVE_ILLEGAL_VECTOR);
}

#[test]
fn x2apic_self_ipi_and_icr() {
    let mut l = x2(3);
    l.msr_write(0x83f, 0x77).unwrap();
    assert_eq!(l.highest_deliverable(), Some(0x77));
    assert_eq!(l.msr_write(0x83f, 0x177), Err(MsrError::ReservedBits));
    assert_eq!(l.msr_read(0x83f), Err(MsrError::WriteOnly));
    // The ICR is one 64-bit MSR; the destination is 32 bits.
    l.msr_write(0x830, 3 << 32 | 0x88).unwrap();
    assert_eq!(l.highest_deliverable(), Some(0x88));
    assert_eq!(l.msr_read(0x830), Ok(3 << 32 | 0x88));
    l.msr_write(0x830, 0xffff_ffff << 32 | 0x89).unwrap();
    assert_eq!(l.highest_deliverable(), Some(0x89), "broadcast");
    l.msr_write(0x830, 0x103 << 32 | 0x8a).unwrap();
    assert_eq!(l.highest_deliverable(), Some(0x89), "ID 0x103 is not 3");
    // Logical: cluster 0, member bit 3.
    l.msr_write(0x830, 1 << 3 << 32 | 1 << 11 | 0x8b).unwrap();
    assert_eq!(l.highest_deliverable(), Some(0x8b));
    for reserved in [1 << 13, 1 << 16, 1 << 20, 1 << 31] {
        assert_eq!(l.msr_write(0x830, 3 << 32 | reserved | 0x90), Err(MsrError::ReservedBits));
    }
}

#[test]
fn one_shot_timer_with_the_divider() {
    let mut l = enabled();
    l.advance(10_000);
    wr(&mut l, off::TIMER, 0x30);
    wr(&mut l, off::DCR, 0b0011); // divide by 16: a count every 320 TSC ticks
    wr(&mut l, off::INITIAL, 1000);
    assert_eq!(l.next_deadline(), Some(10_000 + 320_000));
    l.advance(10_000 + 3_200);
    assert_eq!(rd(&mut l, off::CURRENT), 990);
    assert!(!l.advance(329_999));
    assert_eq!(rd(&mut l, off::CURRENT), 1);
    assert!(!irr(&mut l, 0x30));
    assert!(l.advance(330_000));
    assert!(irr(&mut l, 0x30));
    assert_eq!(rd(&mut l, off::CURRENT), 0);
    assert_eq!(rd(&mut l, off::INITIAL), 1000, "the initial count stays");
    assert_eq!(l.next_deadline(), None);
    l.ack(0x30);
    assert!(!l.advance(10_000_000), "once only");
    assert!(!irr(&mut l, 0x30));
    // Writing 0 stops a running count.
    wr(&mut l, off::INITIAL, 5);
    wr(&mut l, off::INITIAL, 0);
    assert_eq!(l.next_deadline(), None);
    assert_eq!(rd(&mut l, off::CURRENT), 0);
}

#[test]
fn periodic_timer_reloads_and_coalesces_missed_periods() {
    let mut l = enabled();
    wr(&mut l, off::TIMER, PERIODIC | 0x31);
    wr(&mut l, off::DCR, 0b1011); // divide by 1: a count every 20 TSC ticks
    wr(&mut l, off::INITIAL, 100); // a period of 2000 TSC ticks
    assert!(!l.advance(1_999));
    assert_eq!(rd(&mut l, off::CURRENT), 1);
    assert!(l.advance(2_000));
    assert_eq!(rd(&mut l, off::CURRENT), 100, "reloaded");
    l.ack(0x31);
    l.eoi();
    l.advance(2_500);
    assert_eq!(rd(&mut l, off::CURRENT), 75);
    assert!(l.advance(4_000));
    l.ack(0x31);
    // Three periods missed at once raise one interrupt, and the count goes on in phase.
    assert!(l.advance(10_500));
    assert_eq!(rd(&mut l, off::CURRENT), 75);
    assert_eq!(l.next_deadline(), Some(12_000));
}

#[test]
fn a_masked_timer_counts_but_raises_nothing() {
    let mut l = enabled();
    wr(&mut l, off::TIMER, MASKED | PERIODIC | 0x32);
    wr(&mut l, off::DCR, 0b1011);
    wr(&mut l, off::INITIAL, 100);
    assert_eq!(l.next_deadline(), None, "no interrupt is coming");
    assert!(!l.advance(9_000));
    assert!(!irr(&mut l, 0x32));
    assert_eq!(rd(&mut l, off::CURRENT), 50);
    wr(&mut l, off::TIMER, PERIODIC | 0x32);
    assert_eq!(l.next_deadline(), Some(10_000));
    assert!(l.advance(10_000));
    assert!(irr(&mut l, 0x32));
    // A masked one-shot that ended while masked stays ended once unmasked.
    let mut l = enabled();
    wr(&mut l, off::TIMER, MASKED | 0x33);
    wr(&mut l, off::INITIAL, 10);
    l.advance(1_000);
    wr(&mut l, off::TIMER, 0x33);
    assert!(!l.advance(2_000));
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn tsc_deadline_fires_at_the_deadline_not_before() {
    let mut l = enabled();
    l.advance(10_000);
    wr(&mut l, off::TIMER, TSC_DEADLINE | 0x40);
    l.msr_write(IA32_TSC_DEADLINE, 50_000).unwrap();
    assert_eq!(l.msr_read(IA32_TSC_DEADLINE), Ok(50_000));
    assert_eq!(l.next_deadline(), Some(50_000));
    assert!(!l.advance(49_999));
    assert!(l.advance(50_000));
    assert!(irr(&mut l, 0x40));
    assert_eq!(l.msr_read(IA32_TSC_DEADLINE), Ok(0), "disarmed after firing");
    assert_eq!(l.next_deadline(), None);
    l.ack(0x40);
    // A deadline already past fires at once.
    l.msr_write(IA32_TSC_DEADLINE, 5_000).unwrap();
    assert!(irr(&mut l, 0x40));
    l.ack(0x40);
    // 0 disarms.
    l.msr_write(IA32_TSC_DEADLINE, 60_000).unwrap();
    l.msr_write(IA32_TSC_DEADLINE, 0).unwrap();
    assert!(!l.advance(70_000));
    // The initial count is ignored and the current count reads 0.
    wr(&mut l, off::INITIAL, 100);
    assert_eq!(rd(&mut l, off::INITIAL), 0);
    assert_eq!(rd(&mut l, off::CURRENT), 0);
}

#[test]
fn switching_into_or_out_of_tsc_deadline_mode_disarms() {
    let mut l = enabled();
    wr(&mut l, off::TIMER, TSC_DEADLINE | 0x40);
    l.msr_write(IA32_TSC_DEADLINE, 50_000).unwrap();
    wr(&mut l, off::TIMER, 0x40);
    assert_eq!(l.msr_read(IA32_TSC_DEADLINE), Ok(0), "reads 0 in one-shot mode");
    l.msr_write(IA32_TSC_DEADLINE, 60_000).unwrap();
    wr(&mut l, off::TIMER, TSC_DEADLINE | 0x40);
    assert_eq!(l.msr_read(IA32_TSC_DEADLINE), Ok(0), "disarmed, and the write was ignored");
    assert!(!l.advance(100_000));
    // One-shot to TSC deadline stops the count.
    wr(&mut l, off::TIMER, 0x40);
    wr(&mut l, off::INITIAL, 1000);
    wr(&mut l, off::TIMER, TSC_DEADLINE | 0x40);
    assert_eq!(rd(&mut l, off::INITIAL), 0);
    assert_eq!(l.next_deadline(), None);
    // One-shot to periodic keeps counting.
    wr(&mut l, off::TIMER, 0x40);
    wr(&mut l, off::INITIAL, 1000);
    wr(&mut l, off::TIMER, PERIODIC | 0x40);
    assert_eq!(rd(&mut l, off::INITIAL), 1000);
    assert!(l.next_deadline().is_some());
}

#[test]
fn apic_base_transitions() {
    let mut l = Lapic::new(config(3));
    let en = 1u64 << 11;
    let extd = 1u64 << 10;
    let bsp = 1u64 << 8;
    assert_eq!(l.set_apic_base(0xfee0_0000 | bsp | en | extd), Ok(()), "xAPIC -> x2APIC");
    assert_eq!(l.mode(), ApicMode::X2Apic);
    assert_eq!(l.mmio_base(), None);
    assert_eq!(rd(&mut l, off::VERSION), u32::MAX, "no MMIO in x2APIC mode");
    assert_eq!(l.set_apic_base(0xfee0_0000 | en), Err(MsrError::IllegalTransition));
    assert_eq!(l.set_apic_base(0xfee0_0000 | extd), Err(MsrError::IllegalTransition));
    assert_eq!(l.set_apic_base(0xfee0_0000), Ok(()), "x2APIC -> disabled");
    assert_eq!(l.mode(), ApicMode::Disabled);
    assert_eq!(l.apic_base(), 0xfee0_0000 | bsp);
    assert_eq!(l.set_apic_base(0xfee0_0000 | en | extd), Err(MsrError::IllegalTransition));
    assert_eq!(l.set_apic_base(0xfed0_0000 | en), Ok(()), "disabled -> xAPIC, relocated");
    assert_eq!(l.mmio_base(), Some(0xfed0_0000));
    // Reserved: bits 7:0, 9, and MAXPHYADDR (39) and up.
    for reserved in [1u64, 1 << 7, 1 << 9, 1 << 39, 1 << 63] {
        assert_eq!(l.set_apic_base(0xfee0_0000 | en | reserved), Err(MsrError::ReservedBits));
    }
    assert_eq!(l.msr_write(0x1b, 0xfee0_0000 | en), Ok(()));
    assert_eq!(l.msr_read(0x1b), Ok(0xfee0_0000 | en | bsp), "BSP is read-only");
    // Without x2APIC in CPUID, EXTD is reserved.
    let mut no_x2 = Lapic::new(LapicConfig { x2apic: false, ..config(0) });
    assert_eq!(no_x2.set_apic_base(0xfee0_0000 | en | extd), Err(MsrError::ReservedBits));
}

#[test]
fn disabling_resets_all_but_the_id() {
    let mut l = enabled();
    wr(&mut l, off::TPR, 0x20);
    l.raise(0x40, Trigger::Edge).unwrap();
    l.set_apic_base(0xfee0_0000).unwrap();
    assert_eq!(l.raise(0x41, Trigger::Edge), Err(RaiseError::Disabled));
    assert_eq!(l.highest_deliverable(), None);
    l.set_apic_base(0xfee0_0800).unwrap();
    assert_eq!(rd(&mut l, off::TPR), 0);
    assert_eq!(rd(&mut l, off::SVR), 0xff);
    assert_eq!(rd(&mut l, off::ID), 0x0300_0000);
    assert!(!irr(&mut l, 0x40));
}

#[test]
fn x2apic_registers_by_msr() {
    let mut l = Lapic::new(config(0x25));
    assert_eq!(l.msr_read(0x802), Err(MsrError::NotX2Apic), "xAPIC mode");
    l.set_apic_base(0xfee0_0c00).unwrap();
    assert_eq!(l.msr_read(0x802), Ok(0x25), "the 32-bit ID, not shifted");
    assert_eq!(l.msr_read(0x803), Ok(0x0006_0014));
    // SDM 11.12.10.2: logical ID = cluster (ID[19:4]) << 16 | 1 << ID[3:0].
    assert_eq!(l.msr_read(0x80d), Ok(0x0002_0020));
    assert_eq!(l.msr_read(0x80f), Ok(0xff));
    for ro in [0x802, 0x803, 0x80a, 0x80d, 0x810, 0x818, 0x820, 0x839] {
        assert_eq!(l.msr_write(ro, 0), Err(MsrError::ReadOnly), "{ro:#x}");
    }
    // APR, DFR and ICR high do not exist in x2APIC mode, nor do the gaps.
    for reserved in [0x800, 0x804, 0x809, 0x80e, 0x831, 0x83a, 0x840, 0x8ff] {
        assert_eq!(l.msr_read(reserved), Err(MsrError::Reserved), "{reserved:#x}");
        assert_eq!(l.msr_write(reserved, 0), Err(MsrError::Reserved), "{reserved:#x}");
    }
    assert_eq!(l.msr_read(0x80b), Err(MsrError::WriteOnly), "EOI");
    assert_eq!(l.msr_read(0x900), Err(MsrError::NotApic));
    assert!(!Lapic::handles_msr(0x900));
    assert!(Lapic::handles_msr(0x1b) && Lapic::handles_msr(0x6e0) && Lapic::handles_msr(0x8ff));
    // Reserved bits fault instead of being dropped.
    assert_eq!(l.msr_write(0x808, 0x100), Err(MsrError::ReservedBits), "TPR 31:8");
    assert_eq!(l.msr_write(0x808, 1 << 32), Err(MsrError::ReservedBits), "63:32");
    assert_eq!(l.msr_write(0x80b, 1), Err(MsrError::ReservedBits), "EOI takes 0");
    assert_eq!(l.msr_write(0x828, 1), Err(MsrError::ReservedBits), "ESR takes 0");
    assert_eq!(l.msr_write(0x832, 1 << 19), Err(MsrError::ReservedBits), "LVT timer");
    assert_eq!(l.msr_write(0x837, 0x700), Err(MsrError::ReservedBits), "error LVT mode");
    assert_eq!(l.msr_write(0x83e, 0x4), Err(MsrError::ReservedBits), "DCR bit 2");
    assert_eq!(l.msr_write(0x80f, 0x1000), Err(MsrError::ReservedBits), "SVR bit 12");
    // And the writable ones work.
    l.msr_write(0x80f, 0x1ff).unwrap();
    l.msr_write(0x808, 0x30).unwrap();
    assert_eq!(l.msr_read(0x80a), Ok(0x30), "PPR");
    l.msr_write(0x832, PERIODIC.into()).unwrap();
    l.msr_write(0x83e, 0xb).unwrap();
    l.msr_write(0x838, 7).unwrap();
    assert_eq!(l.msr_read(0x838), Ok(7));
    assert_eq!(l.msr_read(0x839), Ok(7));
    l.raise(0x50, Trigger::Level).unwrap();
    l.ack(0x50);
    assert_eq!(l.msr_read(0x812), Ok(1 << 16), "ISR register 2");
    assert_eq!(l.msr_read(0x81a), Ok(1 << 16), "TMR register 2");
    l.msr_write(0x80b, 0).unwrap();
    assert_eq!(l.msr_read(0x812), Ok(0));
    assert_eq!(l.take_eoi_broadcast(), Some(0x50));
}

#[test]
fn lint_pins_in_virtual_wire_mode() {
    let mut l = Lapic::new(config(0));
    assert!(!l.ext_int_enabled(), "LINT0 masked at reset");
    assert_eq!(l.lint(LintPin::Lint0, true), LintAction::Nothing);
    l.firmware_virtual_wire();
    assert!(l.enabled());
    assert_eq!(rd(&mut l, off::LINT0), 0x8700, "ExtINT, level");
    assert_eq!(rd(&mut l, off::LINT1), 0x8400, "NMI, level");
    assert!(l.ext_int_enabled());
    assert_eq!(l.lint(LintPin::Lint0, true), LintAction::ExtInt);
    assert_eq!(l.lint(LintPin::Lint1, true), LintAction::Nmi);
    assert_eq!(l.lint(LintPin::Lint1, true), LintAction::Nothing, "NMI is an edge");
    assert_eq!(l.lint(LintPin::Lint1, false), LintAction::Nothing);
    assert_eq!(l.lint(LintPin::Lint1, true), LintAction::Nmi);
    // Masking LINT0 cuts the 8259 off.
    wr(&mut l, off::LINT0, MASKED | 0x700);
    assert!(!l.ext_int_enabled());
    assert_eq!(l.lint(LintPin::Lint0, true), LintAction::Nothing);
}

#[test]
fn a_hardware_disabled_apic_passes_intr_and_nmi_through() {
    let mut l = Lapic::new(config(0));
    l.set_apic_base(0xfee0_0000).unwrap();
    assert!(l.ext_int_enabled());
    assert_eq!(l.lint(LintPin::Lint0, true), LintAction::ExtInt);
    assert_eq!(l.lint(LintPin::Lint0, false), LintAction::Nothing);
    assert_eq!(l.lint(LintPin::Lint1, true), LintAction::Nmi);
}

#[test]
fn lint_in_fixed_mode() {
    let mut l = enabled();
    wr(&mut l, off::LINT0, 0x41);
    assert_eq!(l.lint(LintPin::Lint0, true), LintAction::Fixed(0x41));
    assert_eq!(l.lint(LintPin::Lint0, true), LintAction::Nothing, "edge: once per rise");
    assert_eq!(rd(&mut l, off::TMR + 0x20), 0);
    // Level-triggered: remote IRR holds it until the EOI.
    wr(&mut l, off::LINT1, 1 << 15 | 0x52);
    assert_eq!(l.lint(LintPin::Lint1, true), LintAction::Fixed(0x52));
    assert_eq!(rd(&mut l, off::LINT1), 1 << 15 | 1 << 14 | 0x52);
    assert_eq!(l.lint(LintPin::Lint1, true), LintAction::Nothing);
    assert_eq!(l.highest_deliverable(), Some(0x52));
    l.ack(0x52);
    l.eoi();
    assert_eq!(rd(&mut l, off::LINT1), 1 << 15 | 0x52, "remote IRR cleared");
    assert_eq!(l.lint(LintPin::Lint1, true), LintAction::Fixed(0x52), "still high");
}

/// IPIs between two APICs: a fixed vector by physical and by logical (flat) destination,
/// INIT and STARTUP latched for the VMM, and an all-excluding-self broadcast.
#[test]
fn ipis_reach_the_apic_they_name() {
    let (mut a, mut b) = (Lapic::new(config(0)), Lapic::new(config(1)));
    for l in [&mut a, &mut b] {
        wr(l, off::SVR, 0x1ff);
    }
    wr(&mut b, off::LDR, 0x02 << 24);
    wr(&mut a, off::ICR_HI, 1 << 24);
    wr(&mut a, off::ICR_LO, 0x40);
    let ipi = a.take_outgoing().unwrap();
    assert!(b.is_named_by(&ipi) && b.receive(&ipi) && irr(&mut b, 0x40));
    wr(&mut a, off::ICR_HI, 0x02 << 24);
    wr(&mut a, off::ICR_LO, 1 << 11 | 0x41);
    let ipi = a.take_outgoing().unwrap();
    assert!(b.is_named_by(&ipi) && b.receive(&ipi) && irr(&mut b, 0x41));
    wr(&mut a, off::ICR_HI, 0x04 << 24);
    wr(&mut a, off::ICR_LO, 1 << 11 | 0x42);
    assert!(!b.is_named_by(&a.take_outgoing().unwrap()), "logical ID 2 is not 4");
    // INIT (assert), de-assert (nothing goes out), STARTUP at page 0x9a.
    wr(&mut a, off::ICR_HI, 1 << 24);
    wr(&mut a, off::ICR_LO, 1 << 15 | 1 << 14 | 5 << 8);
    assert!(!b.receive(&a.take_outgoing().unwrap()), "nothing to inject");
    assert_eq!(b.take_start_signal(), Some(StartSignal::Init));
    wr(&mut a, off::ICR_LO, 1 << 15 | 5 << 8);
    assert_eq!(a.take_outgoing(), None);
    wr(&mut a, off::ICR_LO, 6 << 8 | 0x9a);
    assert!(!b.receive(&a.take_outgoing().unwrap()));
    assert_eq!(b.take_start_signal(), Some(StartSignal::Startup(0x9a)));
    assert_eq!(b.take_start_signal(), None);
    wr(&mut a, off::ICR_LO, 3 << 18 | 0x43);
    let ipi = a.take_outgoing().unwrap();
    assert!(b.is_named_by(&ipi) && !irr(&mut a, 0x43));
}
