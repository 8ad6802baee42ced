//! The APIC's MSRs: IA32_APIC_BASE, IA32_TSC_DEADLINE and, in x2APIC mode, the
//! registers at 0x800 + offset / 16. x2APIC is stricter than the MMIO page: a register
//! that is not there, a read of a write-only one, a write of a read-only one and a set
//! reserved bit all fault (SDM 11.12.1.2-3), where MMIO reads 0 and ignores.

use super::registers::{Reg, ICR_LOW_MASK, SVR_MASK, X2APIC_ICR_RESERVED};
use super::timer::DCR_MASK;
use super::{ApicMode, Lapic, MsrError, IA32_TSC_DEADLINE, X2APIC_MSR_BASE};
use crate::msr::IA32_APIC_BASE;

impl Lapic {
    /// Whether `index` is an MSR this model answers: IA32_APIC_BASE, IA32_TSC_DEADLINE
    /// and the x2APIC range 0x800-0x8FF.
    pub fn handles_msr(index: u32) -> bool {
        index == IA32_APIC_BASE
            || index == IA32_TSC_DEADLINE
            || (X2APIC_MSR_BASE..=0x8ff).contains(&index)
    }

    /// An RDMSR. Any error but [`MsrError::NotApic`] is a #GP for the guest.
    pub fn msr_read(&self, index: u32) -> Result<u64, MsrError> {
        match index {
            IA32_APIC_BASE => return Ok(self.apic_base()),
            IA32_TSC_DEADLINE => return Ok(self.timer.deadline(self.timer_mode())),
            _ => {}
        }
        let reg = self.x2apic_reg(index)?;
        match reg {
            Reg::Eoi | Reg::SelfIpi => Err(MsrError::WriteOnly),
            Reg::IcrLow => Ok(u64::from(self.icr_high) << 32 | u64::from(self.icr_low)),
            _ => Ok(u64::from(self.read_reg(reg))),
        }
    }

    /// A WRMSR. Any error but [`MsrError::NotApic`] is a #GP for the guest. In x2APIC
    /// mode a set reserved bit faults rather than being ignored (SDM 11.12.1.3): bits
    /// 63:32 everywhere but the ICR, and each register's own.
    pub fn msr_write(&mut self, index: u32, value: u64) -> Result<(), MsrError> {
        match index {
            IA32_APIC_BASE => return self.set_apic_base(value),
            IA32_TSC_DEADLINE => {
                self.timer.set_deadline(self.timer_mode(), value);
                self.settle_timer();
                return Ok(());
            }
            _ => {}
        }
        let reg = self.x2apic_reg(index)?;
        if reg == Reg::IcrLow {
            let low = value as u32;
            if low & X2APIC_ICR_RESERVED != 0 {
                return Err(MsrError::ReservedBits);
            }
            self.icr_high = (value >> 32) as u32;
            self.icr_low = low & ICR_LOW_MASK;
            self.send_ipi();
            return Ok(());
        }
        let low = u32::try_from(value).map_err(|_| MsrError::ReservedBits)?;
        let writable = match reg {
            Reg::Tpr | Reg::SelfIpi => 0xff,
            Reg::Svr => SVR_MASK,
            // EOI and ESR take only 0.
            Reg::Eoi | Reg::Esr => 0,
            Reg::Lvt(lvt) => lvt.writable() | lvt.read_only(),
            Reg::InitialCount => u32::MAX,
            Reg::DivideConfig => DCR_MASK,
            _ => return Err(MsrError::ReadOnly),
        };
        if low & !writable != 0 {
            return Err(MsrError::ReservedBits);
        }
        self.write_reg(reg, low);
        Ok(())
    }

    /// The register behind x2APIC MSR `index`, in x2APIC mode; the ones x2APIC lacks
    /// (APR, DFR, ICR high) are reserved there.
    fn x2apic_reg(&self, index: u32) -> Result<Reg, MsrError> {
        let Some(i) = index.checked_sub(X2APIC_MSR_BASE).filter(|&i| i <= 0xff) else {
            return Err(MsrError::NotApic);
        };
        if self.mode != ApicMode::X2Apic {
            return Err(MsrError::NotX2Apic);
        }
        match Reg::from_index(i) {
            None | Some(Reg::Apr | Reg::Dfr | Reg::IcrHigh) => Err(MsrError::Reserved),
            Some(reg) => Ok(reg),
        }
    }
}
