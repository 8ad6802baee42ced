//! Interprocessor interrupts. What the ICR names of this APIC is raised here at once; an
//! IPI that may name others is kept as [`Ipi`] for the platform, which holds every
//! vCPU's APIC ([`Lapic::take_outgoing`], [`Lapic::receive`]). Delivery is instant, so
//! the ICR never reads busy. INIT and STARTUP are latched for the VMM, which starts the
//! vCPU ([`Lapic::take_start_signal`]); to this APIC itself they are dropped and counted.

use super::registers::{MODE_FIXED, MODE_LOWEST, MODE_NMI};
use super::{ApicMode, Lapic, Trigger, ESR_SEND_ILLEGAL_VECTOR};

/// ICR delivery mode INIT.
const MODE_INIT: u32 = 5;
/// ICR delivery mode STARTUP.
const MODE_STARTUP: u32 = 6;

/// An IPI as the ICR sent it, for the APICs other than the sender's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// Delivery mode (ICR bits 10:8).
    pub mode: u32,
    /// The vector (a STARTUP's page number).
    pub vector: u8,
    /// The destination field (8 bits in xAPIC mode, 32 in x2APIC mode).
    pub dest: u32,
    /// Logical destination mode.
    pub logical: bool,
    /// A shorthand names every other APIC (all, or all excluding self).
    pub broadcast: bool,
    /// Level assert (bit 14): an INIT with it clear and a level trigger is the
    /// de-assert, which only synchronises arbitration IDs and changes no CPU.
    pub assert: bool,
    /// Level-triggered (bit 15).
    pub level: bool,
}

impl Ipi {
    /// An INIT level de-assert: no effect on any processor (SDM 11.6.1).
    fn is_init_deassert(&self) -> bool {
        self.mode == MODE_INIT && self.level && !self.assert
    }
}

/// What an INIT or STARTUP asks of a vCPU; [`Lapic::take_start_signal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartSignal {
    /// INIT: the processor resets and waits for a STARTUP.
    Init,
    /// STARTUP: the processor starts in real mode at `vector << 12`.
    Startup(u8),
}

impl Lapic {
    /// Whether ICR destination `dest` in physical or logical mode names this APIC.
    fn is_destination(&self, dest: u32, logical: bool) -> bool {
        let x2 = self.mode == ApicMode::X2Apic;
        let broadcast = if x2 { u32::MAX } else { 0xff };
        if dest == broadcast {
            return true;
        }
        let ldr = self.ldr();
        match (logical, x2) {
            (false, true) => dest == self.config.apic_id,
            (false, false) => dest == self.config.apic_id & 0xff,
            (true, true) => dest >> 16 == ldr >> 16 && dest & ldr & 0xffff != 0,
            // Flat model (DFR 1111b): a bit mask of up to 8 APICs.
            (true, false) if self.dfr >> 28 == 0xf => dest & (ldr >> 24) != 0,
            // Cluster model: cluster in bits 7:4, a mask of 4 in bits 3:0.
            (true, false) => dest >> 4 == ldr >> 28 && dest & (ldr >> 24) & 0xf != 0,
        }
    }

    /// Whether an I/O APIC message's 8-bit destination names this APIC (0xFF: all).
    pub fn accepts(&self, destination: u8, logical: bool) -> bool {
        destination == 0xff || self.is_destination(u32::from(destination), logical)
    }

    /// An NMI message (from the I/O APIC or LINT1) for [`Lapic::take_nmi`].
    pub fn raise_nmi(&mut self) {
        self.nmi_pending = true;
    }

    /// Send the IPI the ICR holds: to this APIC at once where it is named, and kept for
    /// the others ([`Lapic::take_outgoing`]) where they may be.
    pub(super) fn send_ipi(&mut self) {
        let low = self.icr_low;
        let x2 = self.mode == ApicMode::X2Apic;
        let dest = if x2 { self.icr_high } else { self.icr_high >> 24 };
        let logical = low & (1 << 11) != 0;
        let ipi = Ipi {
            mode: (low >> 8) & 7,
            vector: low as u8,
            dest,
            logical,
            broadcast: (low >> 18) & 3 >= 2,
            assert: low & (1 << 14) != 0,
            level: low & (1 << 15) != 0,
        };
        let (to_self, to_others) = match (low >> 18) & 3 {
            0 => {
                let own =
                    !logical && dest == self.config.apic_id & if x2 { u32::MAX } else { 0xff };
                (self.is_destination(dest, logical), !own)
            }
            1 => (true, false),
            2 => (true, true),
            _ => (false, true),
        };
        if to_self {
            self.deliver_ipi(ipi.mode, ipi.vector);
        }
        if to_others && !ipi.is_init_deassert() {
            self.outgoing = Some(ipi);
        }
    }

    /// The IPI the last ICR write sent that may name other APICs, once.
    pub fn take_outgoing(&mut self) -> Option<Ipi> {
        self.outgoing.take()
    }

    /// Whether `ipi`, sent by another APIC, names this one.
    pub fn is_named_by(&self, ipi: &Ipi) -> bool {
        ipi.broadcast || self.is_destination(ipi.dest, ipi.logical)
    }

    /// Take `ipi` from another APIC: a vector or NMI is raised, INIT and STARTUP latched
    /// for the VMM. Whether the vCPU has something new to inject.
    pub fn receive(&mut self, ipi: &Ipi) -> bool {
        match ipi.mode {
            MODE_INIT => {
                // An INIT resets the processor: a STARTUP before it no longer counts.
                self.start_signals = (true, None);
                false
            }
            MODE_STARTUP => {
                self.start_signals.1 = Some(ipi.vector);
                false
            }
            mode => {
                let before = self.highest_deliverable();
                self.deliver_ipi(mode, ipi.vector);
                self.nmi_pending || self.highest_deliverable() != before
            }
        }
    }

    /// The INIT and then the STARTUP received since last asked, each once (the VMM acts
    /// on them in that order).
    pub fn take_start_signal(&mut self) -> Option<StartSignal> {
        if core::mem::take(&mut self.start_signals.0) {
            return Some(StartSignal::Init);
        }
        self.start_signals.1.take().map(StartSignal::Startup)
    }

    /// Deliver an IPI to this APIC.
    pub(super) fn deliver_ipi(&mut self, mode: u32, vector: u8) {
        match mode {
            MODE_FIXED | MODE_LOWEST => {
                if vector < 16 {
                    self.esr_pending |= ESR_SEND_ILLEGAL_VECTOR;
                }
                let _ = self.raise(vector, Trigger::Edge);
            }
            MODE_NMI => self.nmi_pending = true,
            _ => self.dropped_ipis = self.dropped_ipis.wrapping_add(1),
        }
    }
}
