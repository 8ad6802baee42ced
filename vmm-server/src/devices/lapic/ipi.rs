//! Interprocessor interrupts with one vCPU: what reaches this APIC is raised here, the
//! rest (other destinations; INIT, SIPI and SMI, which a lone vCPU has no use for) is
//! counted and dropped. Delivery is instant, so the ICR never reads busy.

use super::registers::{MODE_FIXED, MODE_LOWEST, MODE_NMI};
use super::{ApicMode, Lapic, Trigger, ESR_SEND_ILLEGAL_VECTOR};

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

    /// Send the IPI the ICR holds.
    pub(super) fn send_ipi(&mut self) {
        let low = self.icr_low;
        let dest = if self.mode == ApicMode::X2Apic { self.icr_high } else { self.icr_high >> 24 };
        let to_self = match (low >> 18) & 3 {
            0 => self.is_destination(dest, low & (1 << 11) != 0),
            1 | 2 => true,
            _ => false,
        };
        if to_self {
            self.deliver_ipi((low >> 8) & 7, low as u8);
        } else {
            self.dropped_ipis = self.dropped_ipis.wrapping_add(1);
        }
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
