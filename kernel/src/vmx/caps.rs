//! Decoding of the VMX capability MSRs (Intel SDM Vol. 3, Appendix A).
//!
//! The bare-metal layer reads the MSRs and hands the raw values here, so the decision
//! "can this CPU run a VM, and which features" is made by host-tested code.

use core::fmt;

/// IA32_FEATURE_CONTROL.
pub const MSR_FEATURE_CONTROL: u32 = 0x3a;
/// IA32_VMX_BASIC.
pub const MSR_VMX_BASIC: u32 = 0x480;
/// IA32_VMX_PROCBASED_CTLS.
pub const MSR_VMX_PROCBASED_CTLS: u32 = 0x482;
/// IA32_VMX_PROCBASED_CTLS2 (exists only if primary allowed-1 bit 31 is set).
pub const MSR_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// IA32_VMX_TRUE_PROCBASED_CTLS (exists only if IA32_VMX_BASIC bit 55 is set).
pub const MSR_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;

const FC_LOCKED: u64 = 1 << 0;
const FC_VMXON_OUTSIDE_SMX: u64 = 1 << 2;
const PROC_ACTIVATE_SECONDARY: u32 = 1 << 31;
const PROC2_ENABLE_EPT: u32 = 1 << 1;
const PROC2_ENABLE_VPID: u32 = 1 << 5;
const PROC2_UNRESTRICTED_GUEST: u32 = 1 << 7;

/// Why VMX cannot be used on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absent {
    /// CPUID.1:ECX.VMX[bit 5] is 0: the CPU (or emulator) does not offer VT-x.
    NoCpuid,
    /// IA32_FEATURE_CONTROL is locked with VMXON outside SMX disabled by firmware.
    DisabledByFirmware,
}

/// What the feature-control MSR says the kernel must do before VMXON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureControl {
    /// Locked with VMXON allowed: nothing to do.
    Allowed,
    /// Unlocked: the kernel sets "VMXON outside SMX" and the lock bit itself.
    NeedsLock,
}

/// Decide from IA32_FEATURE_CONTROL whether VMXON may be used.
pub fn feature_control(raw: u64) -> Result<FeatureControl, Absent> {
    match (raw & FC_LOCKED != 0, raw & FC_VMXON_OUTSIDE_SMX != 0) {
        (true, true) => Ok(FeatureControl::Allowed),
        (true, false) => Err(Absent::DisabledByFirmware),
        (false, _) => Ok(FeatureControl::NeedsLock),
    }
}

/// The value to write to an unlocked IA32_FEATURE_CONTROL.
pub fn feature_control_locked(raw: u64) -> u64 {
    raw | FC_LOCKED | FC_VMXON_OUTSIDE_SMX
}

/// A control MSR: bits that must be 1 (allowed-0 settings, low half) and bits that may be
/// 1 (allowed-1 settings, high half).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtlMsr {
    /// Bits that must be set.
    pub must_be_one: u32,
    /// Bits that may be set.
    pub may_be_one: u32,
}

impl CtlMsr {
    /// Split a raw control MSR.
    pub const fn from_raw(raw: u64) -> Self {
        Self { must_be_one: raw as u32, may_be_one: (raw >> 32) as u32 }
    }

    /// Whether the control bit(s) `bits` may be set.
    pub const fn allows(self, bits: u32) -> bool {
        self.may_be_one & bits == bits
    }
}

/// The VMX facts the kernel reports at boot and bases its decisions on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxCaps {
    /// VMCS revision identifier (IA32_VMX_BASIC bits 30:0).
    pub revision: u32,
    /// IA32_VMX_BASIC bit 55: the TRUE_* control MSRs exist and must be used.
    pub true_ctls: bool,
    /// Primary processor-based controls.
    pub procbased: CtlMsr,
    /// Secondary processor-based controls (all zero if the CPU has none).
    pub procbased2: CtlMsr,
}

impl VmxCaps {
    /// Decode IA32_VMX_BASIC; tells which processor-based MSR to read next.
    pub const fn procbased_msr(basic: u64) -> u32 {
        if basic & (1 << 55) != 0 {
            MSR_VMX_TRUE_PROCBASED_CTLS
        } else {
            MSR_VMX_PROCBASED_CTLS
        }
    }

    /// Whether IA32_VMX_PROCBASED_CTLS2 exists, given the primary control MSR.
    pub const fn has_secondary(procbased: u64) -> bool {
        CtlMsr::from_raw(procbased).allows(PROC_ACTIVATE_SECONDARY)
    }

    /// Build from the raw MSR values (`procbased2` = 0 when the MSR does not exist).
    pub const fn from_msrs(basic: u64, procbased: u64, procbased2: u64) -> Self {
        Self {
            revision: (basic & 0x7fff_ffff) as u32,
            true_ctls: basic & (1 << 55) != 0,
            procbased: CtlMsr::from_raw(procbased),
            procbased2: CtlMsr::from_raw(procbased2),
        }
    }

    /// Whether the secondary controls can be activated at all.
    pub const fn secondary(&self) -> bool {
        self.procbased.allows(PROC_ACTIVATE_SECONDARY)
    }

    /// EPT may be enabled.
    pub const fn ept(&self) -> bool {
        self.secondary() && self.procbased2.allows(PROC2_ENABLE_EPT)
    }

    /// VPID may be enabled.
    pub const fn vpid(&self) -> bool {
        self.secondary() && self.procbased2.allows(PROC2_ENABLE_VPID)
    }

    /// Unrestricted guest (real mode and unpaged protected mode in VMX non-root) may be
    /// enabled.
    pub const fn unrestricted_guest(&self) -> bool {
        self.secondary() && self.procbased2.allows(PROC2_UNRESTRICTED_GUEST)
    }
}

impl fmt::Display for Absent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoCpuid => "CPUID.1:ECX.VMX = 0 (this CPU or emulator does not offer VT-x)",
            Self::DisabledByFirmware => {
                "IA32_FEATURE_CONTROL is locked with VMXON disabled (enable VT-x in the firmware)"
            }
        })
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for VmxCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VMCS revision {:#x}, EPT {}, VPID {}, unrestricted guest {}",
            self.revision,
            yes_no(self.ept()),
            yes_no(self.vpid()),
            yes_no(self.unrestricted_guest())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{feature_control, feature_control_locked, Absent, FeatureControl, VmxCaps};

    // Values read from Bochs 2.7's corei7_skylake_x model.
    const BASIC: u64 = 0x00d8_1000_0000_002b;
    const TRUE_PROC: u64 = 0xf7f9_fffe_0400_6172;
    const PROC2: u64 = 0x0217_7fff_0000_0000;

    #[test]
    fn skylake_caps_decode() {
        assert_eq!(VmxCaps::procbased_msr(BASIC), super::MSR_VMX_TRUE_PROCBASED_CTLS);
        assert!(VmxCaps::has_secondary(TRUE_PROC));
        let caps = VmxCaps::from_msrs(BASIC, TRUE_PROC, PROC2);
        assert_eq!(caps.revision, 0x2b);
        assert!(caps.true_ctls && caps.ept() && caps.vpid() && caps.unrestricted_guest());
        let line = format!("{caps}");
        assert_eq!(line, "VMCS revision 0x2b, EPT yes, VPID yes, unrestricted guest yes");
    }

    #[test]
    fn no_secondary_means_no_ept() {
        let caps = VmxCaps::from_msrs(0x2b, 0x7fff_fffe_0000_0000, PROC2);
        assert!(!caps.ept() && !caps.unrestricted_guest());
        assert!(!caps.true_ctls);
    }

    #[test]
    fn feature_control_cases() {
        assert_eq!(feature_control(0x5), Ok(FeatureControl::Allowed));
        assert_eq!(feature_control(0x1), Err(Absent::DisabledByFirmware));
        assert_eq!(feature_control(0x0), Ok(FeatureControl::NeedsLock));
        assert_eq!(feature_control(feature_control_locked(0)), Ok(FeatureControl::Allowed));
    }
}
