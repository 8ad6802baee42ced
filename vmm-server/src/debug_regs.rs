//! The guest's debug registers, kept by the VMM.
//!
//! MOV DR always exits (kernel policy: the kernel never switches the hardware debug
//! registers between VMs, so a guest that reached them would read or arm another VM's),
//! and DR0-DR3, DR6 and DR7 as the guest sees them live here. #DB is always intercepted;
//! reflecting one sets the DR6 bits the exit qualification names, as the CPU would have
//! had it been delivered directly. Hardware breakpoints are not offered: the guest's DR7
//! enables are kept and read back, but never reach the CPU (the VMCS DR7 keeps its reset
//! value), and general detect (DR7.GD) is not emulated. Single step and ICEBP work.

/// DR6 bits 3:0: which of DR0-DR3 matched.
const DR6_B0_3: u64 = 0xf;
/// DR6.BD: the #DB was a general-detect fault.
const DR6_BD: u64 = 1 << 13;
/// DR6.BS: the #DB was a single step.
const DR6_BS: u64 = 1 << 14;
/// DR6.BT: task switch.
const DR6_BT: u64 = 1 << 15;
/// DR6.RTM: clear while a #DB inside an RTM region is reported (active low).
const DR6_RTM: u64 = 1 << 16;
/// Bits of DR6 software may change; the others read as fixed.
const DR6_VOLATILE: u64 = DR6_B0_3 | DR6_BD | DR6_BS | DR6_BT | DR6_RTM;
/// DR6 after reset: every fixed bit set, no event recorded.
pub const DR6_RESET: u64 = 0xffff_0ff0;
/// DR7 after reset: only the always-one bit 10.
pub const DR7_RESET: u64 = 0x400;
/// DR7 bits that may be set: L0-G3, LE, GE, RTM, GD, and the R/W and LEN fields.
const DR7_DEFINED: u64 = 0xffff_2bff;
/// DR7.GD, which the CPU clears when it delivers a #DB.
const DR7_GD: u64 = 1 << 13;

/// What a guest MOV to or from a debug register does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrAccess {
    /// MOV from DR: the value the guest's register receives.
    Read(u64),
    /// MOV to DR: done.
    Written,
    /// The write sets bits the register reserves: #GP, as the CPU does.
    Fault,
}

/// DR0-DR3, DR6 and DR7 as one guest sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugRegs {
    addr: [u64; 4],
    dr6: u64,
    dr7: u64,
}

impl Default for DebugRegs {
    fn default() -> Self {
        Self { addr: [0; 4], dr6: DR6_RESET, dr7: DR7_RESET }
    }
}

impl DebugRegs {
    /// Read DR`n` (DR4 and DR5 are DR6 and DR7, as with CR4.DE clear: with it set the
    /// CPU raises #UD before any exit).
    pub fn read(&self, n: u8) -> u64 {
        match n {
            0..=3 => self.addr.get(usize::from(n)).copied().unwrap_or(0),
            4 | 6 => self.dr6,
            _ => self.dr7,
        }
    }

    /// MOV `value` to DR`n`. Outside 64-bit mode only the low 32 bits count.
    pub fn write(&mut self, n: u8, value: u64, long_mode: bool) -> DrAccess {
        let value = if long_mode { value } else { value & u64::from(u32::MAX) };
        match n {
            0..=3 => {
                if let Some(a) = self.addr.get_mut(usize::from(n)) {
                    *a = value;
                }
            }
            _ if value >> 32 != 0 => return DrAccess::Fault,
            4 | 6 => self.dr6 = (value & DR6_VOLATILE) | (DR6_RESET & !DR6_VOLATILE),
            _ if value & !DR7_DEFINED != 0 => return DrAccess::Fault,
            _ => self.dr7 = value | DR7_RESET,
        }
        DrAccess::Written
    }

    /// A #DB is about to be reflected: record in DR6 what the exit qualification says
    /// caused it (B0-B3, BD, BS; RTM active low), and clear DR7.GD as delivery does.
    pub fn debug_exception(&mut self, qualification: u64) {
        let cause = qualification & (DR6_B0_3 | DR6_BD | DR6_BS);
        self.dr6 = (self.dr6 & !DR6_B0_3) | cause | DR6_RTM;
        if qualification & DR6_RTM != 0 {
            self.dr6 &= !DR6_RTM;
        }
        self.dr7 &= !DR7_GD;
    }
}

#[cfg(test)]
mod tests {
    use super::{DebugRegs, DrAccess, DR6_RESET, DR7_RESET};

    #[test]
    fn registers_start_at_their_reset_values_and_alias_like_the_cpu() {
        let mut d = DebugRegs::default();
        assert_eq!((d.read(6), d.read(7), d.read(0)), (DR6_RESET, DR7_RESET, 0));
        assert_eq!((d.read(4), d.read(5)), (DR6_RESET, DR7_RESET));
        assert_eq!(d.write(2, 0xffff_8000_0000_1000, true), DrAccess::Written);
        assert_eq!(d.read(2), 0xffff_8000_0000_1000);
        assert_eq!(d.write(3, 0xffff_8000_0000_1000, false), DrAccess::Written);
        assert_eq!(d.read(3), 0x1000, "32-bit MOV writes 32 bits");
        assert_eq!(d.write(5, 0x1, true), DrAccess::Written);
        assert_eq!(d.read(7), 0x401, "DR5 is DR7, bit 10 reads as one");
    }

    #[test]
    fn dr6_keeps_fixed_bits_and_reserved_writes_fault() {
        let mut d = DebugRegs::default();
        assert_eq!(d.write(6, 0, true), DrAccess::Written);
        assert_eq!(d.read(6), 0xfffe_0ff0, "fixed bits stay; RTM written as 0");
        assert_eq!(d.write(6, 1 << 32, true), DrAccess::Fault);
        assert_eq!(d.write(7, 1 << 12, true), DrAccess::Fault);
        assert_eq!(d.write(7, 1 << 40, true), DrAccess::Fault);
        assert_eq!(d.read(7), DR7_RESET, "a faulting write changes nothing");
    }

    #[test]
    fn a_reflected_debug_exception_sets_dr6_as_delivery_would() {
        let mut d = DebugRegs::default();
        d.write(7, 1 << 13 | 1, true);
        d.write(6, DR6_RESET | 0x3, true);
        d.debug_exception(1 << 14);
        assert_eq!(d.read(6), DR6_RESET | 1 << 14, "single step; stale B0-B3 cleared");
        assert_eq!(d.read(7), 0x401, "GD cleared");
        d.debug_exception(0x4);
        assert_eq!(d.read(6), DR6_RESET | 1 << 14 | 0x4, "BS stays until software clears it");
        d.debug_exception(1 << 16);
        assert_eq!(d.read(6) & 1 << 16, 0, "inside RTM: the active-low bit clears");
    }
}
