//! Decoding of the VMX capability MSRs (Intel SDM Vol. 3, Appendix A).
//!
//! The bare-metal layer reads the MSRs and hands the raw values here, so the decision
//! "can this CPU run a VM, and which features" is made by host-tested code. The same
//! [`VmxCaps`] carries the allowed-0/allowed-1 pairs of every control field and the
//! CR0/CR4 fixed bits, which the VMCS-write validator checks each reply against.

use core::fmt;
use protocols::x86::{CR0_PE, CR0_PG};

/// IA32_FEATURE_CONTROL.
pub const MSR_FEATURE_CONTROL: u32 = 0x3a;
/// IA32_VMX_BASIC.
pub const MSR_VMX_BASIC: u32 = 0x480;
/// IA32_VMX_PINBASED_CTLS.
pub const MSR_VMX_PINBASED_CTLS: u32 = 0x481;
/// IA32_VMX_PROCBASED_CTLS.
pub const MSR_VMX_PROCBASED_CTLS: u32 = 0x482;
/// IA32_VMX_EXIT_CTLS.
pub const MSR_VMX_EXIT_CTLS: u32 = 0x483;
/// IA32_VMX_ENTRY_CTLS.
pub const MSR_VMX_ENTRY_CTLS: u32 = 0x484;
/// IA32_VMX_MISC.
pub const MSR_VMX_MISC: u32 = 0x485;
/// IA32_VMX_CR0_FIXED0: CR0 bits that must be 1 in VMX operation.
pub const MSR_VMX_CR0_FIXED0: u32 = 0x486;
/// IA32_VMX_CR0_FIXED1: CR0 bits that may be 1 in VMX operation.
pub const MSR_VMX_CR0_FIXED1: u32 = 0x487;
/// IA32_VMX_CR4_FIXED0: CR4 bits that must be 1 in VMX operation.
pub const MSR_VMX_CR4_FIXED0: u32 = 0x488;
/// IA32_VMX_CR4_FIXED1: CR4 bits that may be 1 in VMX operation.
pub const MSR_VMX_CR4_FIXED1: u32 = 0x489;
/// IA32_VMX_PROCBASED_CTLS2 (exists only if primary allowed-1 bit 31 is set).
pub const MSR_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// IA32_VMX_TRUE_PINBASED_CTLS (exists only if IA32_VMX_BASIC bit 55 is set).
pub const MSR_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
/// IA32_VMX_TRUE_PROCBASED_CTLS (exists only if IA32_VMX_BASIC bit 55 is set).
pub const MSR_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
/// IA32_VMX_TRUE_EXIT_CTLS (exists only if IA32_VMX_BASIC bit 55 is set).
pub const MSR_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
/// IA32_VMX_TRUE_ENTRY_CTLS (exists only if IA32_VMX_BASIC bit 55 is set).
pub const MSR_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;

const BASIC_TRUE_CTLS: u64 = 1 << 55;
const BASIC_ANY_ERROR_CODE: u64 = 1 << 56;
const MISC_ZERO_LENGTH_INJECTION: u64 = 1 << 30;
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

/// The raw capability MSRs, as the bare-metal layer reads them. Each control entry holds
/// the TRUE_* variant when IA32_VMX_BASIC bit 55 is set (see [`VmxCaps::pinbased_msr`]
/// and friends), so bits that are merely "default 1" are not forced on; an MSR that does
/// not exist reads as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VmxMsrs {
    /// IA32_VMX_BASIC.
    pub basic: u64,
    /// (TRUE_)PINBASED_CTLS.
    pub pinbased: u64,
    /// (TRUE_)PROCBASED_CTLS.
    pub procbased: u64,
    /// PROCBASED_CTLS2.
    pub procbased2: u64,
    /// (TRUE_)EXIT_CTLS.
    pub exit: u64,
    /// (TRUE_)ENTRY_CTLS.
    pub entry: u64,
    /// IA32_VMX_MISC.
    pub misc: u64,
    /// IA32_VMX_CR0_FIXED0.
    pub cr0_fixed0: u64,
    /// IA32_VMX_CR0_FIXED1.
    pub cr0_fixed1: u64,
    /// IA32_VMX_CR4_FIXED0.
    pub cr4_fixed0: u64,
    /// IA32_VMX_CR4_FIXED1.
    pub cr4_fixed1: u64,
}

impl VmxMsrs {
    /// Every MSR reads as 0 (nothing allowed).
    pub const ZERO: Self = Self {
        basic: 0,
        pinbased: 0,
        procbased: 0,
        procbased2: 0,
        exit: 0,
        entry: 0,
        misc: 0,
        cr0_fixed0: 0,
        cr0_fixed1: 0,
        cr4_fixed0: 0,
        cr4_fixed1: 0,
    };
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
    /// Pin-based controls.
    pub pinbased: CtlMsr,
    /// VM-exit controls.
    pub exit: CtlMsr,
    /// VM-entry controls.
    pub entry: CtlMsr,
    /// IA32_VMX_BASIC bit 56: VM entry does not check the deliver-error-code bit of an
    /// injected hardware exception against its vector.
    pub inject_any_error_code: bool,
    /// IA32_VMX_MISC (activity states, CR3-target count, zero-length injection).
    pub misc: u64,
    /// CR0 bits that must be 1 in VMX operation.
    pub cr0_fixed0: u64,
    /// CR0 bits that may be 1 in VMX operation.
    pub cr0_fixed1: u64,
    /// CR4 bits that must be 1 in VMX operation.
    pub cr4_fixed0: u64,
    /// CR4 bits that may be 1 in VMX operation.
    pub cr4_fixed1: u64,
}

impl VmxCaps {
    /// Decode IA32_VMX_BASIC; tells which processor-based MSR to read next.
    pub const fn procbased_msr(basic: u64) -> u32 {
        if basic & BASIC_TRUE_CTLS != 0 {
            MSR_VMX_TRUE_PROCBASED_CTLS
        } else {
            MSR_VMX_PROCBASED_CTLS
        }
    }

    /// Which pin-based control MSR to read, given IA32_VMX_BASIC.
    pub const fn pinbased_msr(basic: u64) -> u32 {
        if basic & BASIC_TRUE_CTLS != 0 {
            MSR_VMX_TRUE_PINBASED_CTLS
        } else {
            MSR_VMX_PINBASED_CTLS
        }
    }

    /// Which VM-exit control MSR to read, given IA32_VMX_BASIC.
    pub const fn exit_msr(basic: u64) -> u32 {
        if basic & BASIC_TRUE_CTLS != 0 {
            MSR_VMX_TRUE_EXIT_CTLS
        } else {
            MSR_VMX_EXIT_CTLS
        }
    }

    /// Which VM-entry control MSR to read, given IA32_VMX_BASIC.
    pub const fn entry_msr(basic: u64) -> u32 {
        if basic & BASIC_TRUE_CTLS != 0 {
            MSR_VMX_TRUE_ENTRY_CTLS
        } else {
            MSR_VMX_ENTRY_CTLS
        }
    }

    /// Whether IA32_VMX_PROCBASED_CTLS2 exists, given the primary control MSR.
    pub const fn has_secondary(procbased: u64) -> bool {
        CtlMsr::from_raw(procbased).allows(PROC_ACTIVATE_SECONDARY)
    }

    /// Build from the three MSRs the boot report needs (`procbased2` = 0 when the MSR does
    /// not exist). Every other capability reads as "nothing allowed", so a validator fed
    /// these caps refuses everything; VCpu code uses [`Self::from_all`].
    pub const fn from_msrs(basic: u64, procbased: u64, procbased2: u64) -> Self {
        Self::from_all(&VmxMsrs { basic, procbased, procbased2, ..VmxMsrs::ZERO })
    }

    /// Build from every capability MSR.
    pub const fn from_all(msrs: &VmxMsrs) -> Self {
        Self {
            revision: (msrs.basic & 0x7fff_ffff) as u32,
            true_ctls: msrs.basic & BASIC_TRUE_CTLS != 0,
            procbased: CtlMsr::from_raw(msrs.procbased),
            procbased2: CtlMsr::from_raw(msrs.procbased2),
            pinbased: CtlMsr::from_raw(msrs.pinbased),
            exit: CtlMsr::from_raw(msrs.exit),
            entry: CtlMsr::from_raw(msrs.entry),
            inject_any_error_code: msrs.basic & BASIC_ANY_ERROR_CODE != 0,
            misc: msrs.misc,
            cr0_fixed0: msrs.cr0_fixed0,
            cr0_fixed1: msrs.cr0_fixed1,
            cr4_fixed0: msrs.cr4_fixed0,
            cr4_fixed1: msrs.cr4_fixed1,
        }
    }

    /// The CR0 bits of `cr0` that VMX operation forbids: required bits that are clear and
    /// fixed-0 bits that are set (0 = valid). An unrestricted guest may clear PE and PG.
    pub const fn cr0_violations(&self, cr0: u64, unrestricted_guest: bool) -> u64 {
        let must_be_one =
            if unrestricted_guest { self.cr0_fixed0 & !(CR0_PE | CR0_PG) } else { self.cr0_fixed0 };
        (must_be_one & !cr0) | (cr0 & !self.cr0_fixed1)
    }

    /// The CR4 bits of `cr4` that VMX operation forbids (0 = valid).
    pub const fn cr4_violations(&self, cr4: u64) -> u64 {
        (self.cr4_fixed0 & !cr4) | (cr4 & !self.cr4_fixed1)
    }

    /// The VMX-preemption timer counts down once every 2^this TSC ticks (IA32_VMX_MISC
    /// bits 4:0).
    pub const fn preemption_timer_shift(&self) -> u8 {
        (self.misc & 0x1f) as u8
    }

    /// How many CR3-target values the CPU supports (IA32_VMX_MISC bits 24:16).
    pub const fn cr3_target_count(&self) -> u32 {
        ((self.misc >> 16) & 0x1ff) as u32
    }

    /// Whether the guest activity state `state` may be entered (0 = active always; HLT,
    /// shutdown and wait-for-SIPI per IA32_VMX_MISC bits 8:6).
    pub const fn activity_state_supported(&self, state: u64) -> bool {
        match state {
            0 => true,
            1..=3 => self.misc & (1 << (5 + state)) != 0,
            _ => false,
        }
    }

    /// Whether VM entry may inject a software interrupt or exception with instruction
    /// length 0 (IA32_VMX_MISC bit 30).
    pub const fn zero_length_injection(&self) -> bool {
        self.misc & MISC_ZERO_LENGTH_INJECTION != 0
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
    use super::{
        feature_control, feature_control_locked, Absent, FeatureControl, VmxCaps, VmxMsrs,
    };

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
    fn true_ctls_select_the_true_msrs() {
        assert_eq!(VmxCaps::pinbased_msr(BASIC), super::MSR_VMX_TRUE_PINBASED_CTLS);
        assert_eq!(VmxCaps::exit_msr(BASIC), super::MSR_VMX_TRUE_EXIT_CTLS);
        assert_eq!(VmxCaps::entry_msr(BASIC), super::MSR_VMX_TRUE_ENTRY_CTLS);
        assert_eq!(VmxCaps::pinbased_msr(0x2b), super::MSR_VMX_PINBASED_CTLS);
        assert_eq!(VmxCaps::exit_msr(0x2b), super::MSR_VMX_EXIT_CTLS);
        assert_eq!(VmxCaps::entry_msr(0x2b), super::MSR_VMX_ENTRY_CTLS);
    }

    #[test]
    fn full_caps_decode_controls_and_fixed_bits() {
        let caps = VmxCaps::from_all(&VmxMsrs {
            basic: BASIC | 1 << 56,
            pinbased: 0x0000_007f_0000_0016,
            procbased: TRUE_PROC,
            procbased2: PROC2,
            exit: 0x01ff_ffff_0003_6dfb,
            entry: 0x0000_f3ff_0000_11fb,
            misc: 0x4004_01e0,
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x0037_67ff,
        });
        assert_eq!(caps.pinbased.must_be_one, 0x16);
        assert_eq!(caps.exit.may_be_one, 0x01ff_ffff);
        assert_eq!(caps.entry.must_be_one, 0x11fb);
        assert!(caps.inject_any_error_code && caps.zero_length_injection());
        assert_eq!(caps.cr3_target_count(), 4);
        assert!(caps.activity_state_supported(0) && caps.activity_state_supported(1));
        assert!(caps.activity_state_supported(3) && !caps.activity_state_supported(4));
        // PE, NE and PG are required; bit 32 is beyond FIXED1.
        assert_eq!(caps.cr0_violations(0x8000_0031, false), 0);
        assert_eq!(caps.cr0_violations(0x30, false), 0x8000_0001);
        assert_eq!(caps.cr0_violations(0x30, true), 0);
        assert_eq!(caps.cr0_violations(0x10, true), 0x20, "NE stays required");
        assert_eq!(caps.cr0_violations(1 << 32 | 0x8000_0021, false), 1 << 32);
        assert_eq!(caps.cr4_violations(0x2020), 0);
        assert_eq!(caps.cr4_violations(0x20), 0x2000);
        assert_eq!(caps.cr4_violations(0x2000 | 1 << 12), 1 << 12);
    }

    #[test]
    fn boot_report_caps_allow_nothing_else() {
        let caps = VmxCaps::from_msrs(BASIC, TRUE_PROC, PROC2);
        assert_eq!(caps.pinbased.may_be_one, 0);
        assert_eq!(caps.cr3_target_count(), 0);
        assert!(!caps.activity_state_supported(1));
        assert_ne!(caps.cr0_violations(0x8000_0021, false), 0);
    }

    #[test]
    fn feature_control_cases() {
        assert_eq!(feature_control(0x5), Ok(FeatureControl::Allowed));
        assert_eq!(feature_control(0x1), Err(Absent::DisabledByFirmware));
        assert_eq!(feature_control(0x0), Ok(FeatureControl::NeedsLock));
        assert_eq!(feature_control(feature_control_locked(0)), Ok(FeatureControl::Allowed));
    }
}
