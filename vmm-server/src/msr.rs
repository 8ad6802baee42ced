//! The guest's MSR policy: for each RDMSR/WRMSR exit, whether the MSR is
//! - guest state the VMCS holds ([`GuestStateMsr`]): read from the exit message, written
//!   as a VMCS write after the same checks WRMSR makes (canonical addresses, valid PAT
//!   types, EFER bits the guest's CPUID allows), so a write never makes VM entry fail;
//! - emulated here (feature control, misc enable, microcode revision, machine-check
//!   capabilities): fixed or remembered values (the local APIC's MSRs, IA32_APIC_BASE
//!   among them, are its model's: the dispatcher asks it first);
//! - [`MsrRead::Unsupported`] / [`MsrWrite::Unsupported`]: live CPU state the VMCS does not
//!   switch (the SYSCALL MSRs, KERNEL_GS_BASE, TSC_AUX). The VMM has the kernel switch
//!   them on entry and exit (`VCpuSwitchMsr`), after which the guest reaches them without
//!   exiting; an exit for one means the kernel could not (this CPU lacks it). Emulating
//!   them here would silently run the guest on the host's values, so the VMM stops the VM;
//! - anything else: #GP, which is what a CPU does for an MSR it lacks, and what guests
//!   probing with `rdmsr_safe` expect. Features whose MSRs land here are hidden in CPUID.

use protocols::vmcs::Field;
use protocols::vmexit::{ExitMessage, TransferMask};

use crate::cpuid::CpuidTable;
use protocols::x86::CR0_PG;
use protocols::x86::{EFER_LMA, EFER_LME};

/// IA32_TSC.
pub const IA32_TSC: u32 = 0x10;
/// IA32_PLATFORM_ID.
pub const IA32_PLATFORM_ID: u32 = 0x17;
/// IA32_APIC_BASE.
pub const IA32_APIC_BASE: u32 = 0x1b;
/// IA32_FEATURE_CONTROL.
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
/// IA32_BIOS_SIGN_ID (microcode revision).
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
/// IA32_SYSENTER_CS.
pub const IA32_SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const IA32_SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const IA32_SYSENTER_EIP: u32 = 0x176;
/// IA32_MCG_CAP.
pub const IA32_MCG_CAP: u32 = 0x179;
/// IA32_MCG_STATUS.
pub const IA32_MCG_STATUS: u32 = 0x17a;
/// IA32_MISC_ENABLE.
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
/// IA32_DEBUGCTL.
pub const IA32_DEBUGCTL: u32 = 0x1d9;
/// IA32_PAT.
pub const IA32_PAT: u32 = 0x277;
/// IA32_EFER.
pub const IA32_EFER: u32 = 0xc000_0080;
/// IA32_STAR.
pub const IA32_STAR: u32 = 0xc000_0081;
/// IA32_LSTAR.
pub const IA32_LSTAR: u32 = 0xc000_0082;
/// IA32_CSTAR.
pub const IA32_CSTAR: u32 = 0xc000_0083;
/// IA32_FMASK.
pub const IA32_FMASK: u32 = 0xc000_0084;
/// IA32_FS_BASE.
pub const IA32_FS_BASE: u32 = 0xc000_0100;
/// IA32_GS_BASE.
pub const IA32_GS_BASE: u32 = 0xc000_0101;
/// IA32_KERNEL_GS_BASE.
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// IA32_TSC_AUX.
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

/// IA32_FEATURE_CONTROL as the guest reads it: locked, VMX off (CPUID hides VMX).
const FEATURE_CONTROL_LOCKED: u64 = 1;
/// IA32_MISC_ENABLE bits that always read 1: fast strings, BTS and PEBS unavailable.
const MISC_ENABLE_FIXED: u64 = 1 << 0 | 1 << 11 | 1 << 12;
/// IA32_DEBUGCTL bits a guest may set: BTF only (LBRs are not virtualized).
const DEBUGCTL_ALLOWED: u64 = 1 << 1;

/// An MSR the VMCS holds as guest state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestStateMsr {
    /// IA32_SYSENTER_CS.
    SysenterCs,
    /// IA32_SYSENTER_ESP.
    SysenterEsp,
    /// IA32_SYSENTER_EIP.
    SysenterEip,
    /// IA32_DEBUGCTL.
    Debugctl,
    /// IA32_PAT.
    Pat,
    /// IA32_EFER.
    Efer,
    /// IA32_FS_BASE (the FS segment base).
    FsBase,
    /// IA32_GS_BASE (the GS segment base).
    GsBase,
}

impl GuestStateMsr {
    /// The MSR with this index, if the VMCS holds it.
    pub fn from_index(index: u32) -> Option<Self> {
        Some(match index {
            IA32_SYSENTER_CS => Self::SysenterCs,
            IA32_SYSENTER_ESP => Self::SysenterEsp,
            IA32_SYSENTER_EIP => Self::SysenterEip,
            IA32_DEBUGCTL => Self::Debugctl,
            IA32_PAT => Self::Pat,
            IA32_EFER => Self::Efer,
            IA32_FS_BASE => Self::FsBase,
            IA32_GS_BASE => Self::GsBase,
            _ => return None,
        })
    }

    /// The VMCS field that holds it.
    pub const fn field(self) -> Field {
        match self {
            Self::SysenterCs => Field::GuestIa32SysenterCs,
            Self::SysenterEsp => Field::GuestIa32SysenterEsp,
            Self::SysenterEip => Field::GuestIa32SysenterEip,
            Self::Debugctl => Field::GuestIa32Debugctl,
            Self::Pat => Field::GuestIa32Pat,
            Self::Efer => Field::GuestIa32Efer,
            Self::FsBase => Field::GuestFsBase,
            Self::GsBase => Field::GuestGsBase,
        }
    }

    /// The exit-message group that carries its current value.
    pub const fn transfer_group(self) -> TransferMask {
        match self {
            Self::SysenterCs | Self::SysenterEsp | Self::SysenterEip => TransferMask::SYSENTER,
            Self::Debugctl => TransferMask::DEBUG_CONTROLS,
            Self::Pat | Self::Efer => TransferMask::EFER_PAT,
            Self::FsBase | Self::GsBase => TransferMask::SEGMENTS,
        }
    }

    /// Its value in `msg`, or `None` when the message lacks the group.
    pub fn read(self, msg: &ExitMessage) -> Option<u64> {
        if !msg.transfer.contains(self.transfer_group()) {
            return None;
        }
        let seg_base = |i: usize| msg.segments.regs.get(i).map(|s| s.base);
        match self {
            Self::SysenterCs => Some(u64::from(msg.sysenter_cs)),
            Self::SysenterEsp => Some(msg.sysenter_esp),
            Self::SysenterEip => Some(msg.sysenter_eip),
            Self::Debugctl => Some(msg.debugctl),
            Self::Pat => Some(msg.pat),
            Self::Efer => Some(msg.efer),
            Self::FsBase => seg_base(4),
            Self::GsBase => seg_base(5),
        }
    }
}

/// What an RDMSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrRead {
    /// Return this value in EDX:EAX.
    Value(u64),
    /// Return the guest-state value the exit message carries.
    GuestState(GuestStateMsr),
    /// Inject #GP(0).
    Gp,
    /// Live CPU state this VMM cannot switch: stop the VM.
    Unsupported,
}

/// What a WRMSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrWrite {
    /// Accepted (and absorbed by the policy's own state).
    Done,
    /// Accepted: write this value to the MSR's VMCS field.
    GuestState(GuestStateMsr, u64),
    /// Inject #GP(0).
    Gp,
    /// Live CPU state this VMM cannot switch: stop the VM.
    Unsupported,
}

/// The guest state a WRMSR check needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrContext {
    /// Guest CR0.
    pub cr0: u64,
    /// Guest IA32_EFER as currently known.
    pub efer: u64,
}

/// Whether `addr` is canonical for 48-bit linear addresses (LA57 is not offered).
pub const fn is_canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

/// Whether every byte of `pat` names a memory type (UC, WC, WT, WP, WB, UC-).
fn valid_pat(pat: u64) -> bool {
    pat.to_le_bytes().iter().all(|t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

/// The policy and the state of the MSRs it emulates.
#[derive(Clone, Debug)]
pub struct MsrPolicy {
    efer_allowed: u64,
    misc_enable: u64,
    microcode: u64,
}

impl MsrPolicy {
    /// A policy consistent with the guest's CPUID.
    pub fn new(cpuid: &CpuidTable) -> Self {
        Self { efer_allowed: cpuid.efer_allowed(), misc_enable: MISC_ENABLE_FIXED, microcode: 0 }
    }

    /// Decide an RDMSR of `index`.
    pub fn read(&self, index: u32) -> MsrRead {
        if let Some(msr) = GuestStateMsr::from_index(index) {
            return MsrRead::GuestState(msr);
        }
        match index {
            IA32_FEATURE_CONTROL => MsrRead::Value(FEATURE_CONTROL_LOCKED),
            IA32_MISC_ENABLE => MsrRead::Value(self.misc_enable),
            IA32_BIOS_SIGN_ID => MsrRead::Value(self.microcode),
            IA32_PLATFORM_ID | IA32_MCG_CAP | IA32_MCG_STATUS => MsrRead::Value(0),
            IA32_STAR | IA32_LSTAR | IA32_CSTAR | IA32_FMASK | IA32_KERNEL_GS_BASE
            | IA32_TSC_AUX => MsrRead::Unsupported,
            _ => MsrRead::Gp,
        }
    }

    /// Decide a WRMSR of `value` to `index`.
    pub fn write(&mut self, index: u32, value: u64, ctx: &MsrContext) -> MsrWrite {
        if let Some(msr) = GuestStateMsr::from_index(index) {
            return self.write_guest_state(msr, value, ctx);
        }
        match index {
            // Guests may toggle the documented-writable bits; the fixed ones stay set.
            IA32_MISC_ENABLE => {
                self.misc_enable = value | MISC_ENABLE_FIXED;
                MsrWrite::Done
            }
            // Linux writes 0 before re-reading the revision after CPUID.
            IA32_BIOS_SIGN_ID => MsrWrite::Done,
            IA32_MCG_STATUS if value == 0 => MsrWrite::Done,
            IA32_STAR | IA32_LSTAR | IA32_CSTAR | IA32_FMASK | IA32_KERNEL_GS_BASE
            | IA32_TSC_AUX => MsrWrite::Unsupported,
            _ => MsrWrite::Gp,
        }
    }

    fn write_guest_state(&self, msr: GuestStateMsr, value: u64, ctx: &MsrContext) -> MsrWrite {
        let ok = match msr {
            // The VMCS field is 32 bits; the MSR's upper half is ignored by SYSENTER.
            GuestStateMsr::SysenterCs => return MsrWrite::GuestState(msr, value & 0xffff_ffff),
            GuestStateMsr::SysenterEsp
            | GuestStateMsr::SysenterEip
            | GuestStateMsr::FsBase
            | GuestStateMsr::GsBase => is_canonical(value),
            GuestStateMsr::Debugctl => value & !DEBUGCTL_ALLOWED == 0,
            GuestStateMsr::Pat => valid_pat(value),
            GuestStateMsr::Efer => {
                let paging = ctx.cr0 & CR0_PG != 0;
                let lme_changes = (value ^ ctx.efer) & EFER_LME != 0;
                if value & !self.efer_allowed != 0 || (paging && lme_changes) {
                    return MsrWrite::Gp;
                }
                // LMA is the CPU's to set: it follows CR0.PG and LME, not WRMSR.
                return MsrWrite::GuestState(msr, (value & !EFER_LMA) | (ctx.efer & EFER_LMA));
            }
        };
        if ok {
            MsrWrite::GuestState(msr, value)
        } else {
            MsrWrite::Gp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        is_canonical, GuestStateMsr, MsrContext, MsrPolicy, MsrRead, MsrWrite, EFER_LMA, EFER_LME,
        IA32_APIC_BASE, IA32_BIOS_SIGN_ID, IA32_DEBUGCTL, IA32_EFER, IA32_FEATURE_CONTROL,
        IA32_FS_BASE, IA32_LSTAR, IA32_MCG_STATUS, IA32_MISC_ENABLE, IA32_PAT, IA32_SYSENTER_CS,
        IA32_SYSENTER_EIP, IA32_TSC,
    };
    use crate::cpuid::{CpuidConfig, CpuidRegs, CpuidTable};
    use protocols::vmcs::Field;
    use protocols::vmexit::{ExitMessage, TransferMask};

    fn cpuid(expose_apic: bool) -> CpuidTable {
        let config = CpuidConfig { expose_apic, ..CpuidConfig::default() };
        CpuidTable::from_host(&config, |leaf, _| match leaf {
            0 => CpuidRegs { eax: 1, ..CpuidRegs::default() },
            1 => CpuidRegs { edx: 1 << 9, ..CpuidRegs::default() },
            0x8000_0000 => CpuidRegs { eax: 0x8000_0001, ..CpuidRegs::default() },
            0x8000_0001 => CpuidRegs { edx: 1 << 11 | 1 << 20 | 1 << 29, ..CpuidRegs::default() },
            _ => CpuidRegs::default(),
        })
    }

    const FLAT: MsrContext = MsrContext { cr0: 0x11, efer: 0 };

    #[test]
    fn emulated_msrs() {
        let mut p = MsrPolicy::new(&cpuid(false));
        assert_eq!(p.read(IA32_FEATURE_CONTROL), MsrRead::Value(1));
        assert_eq!(p.write(IA32_FEATURE_CONTROL, 5, &FLAT), MsrWrite::Gp, "locked");
        assert_eq!(p.read(IA32_MISC_ENABLE), MsrRead::Value(0x1801));
        assert_eq!(p.write(IA32_MISC_ENABLE, 1 << 22, &FLAT), MsrWrite::Done);
        assert_eq!(p.read(IA32_MISC_ENABLE), MsrRead::Value(0x40_1801));
        assert_eq!(p.write(IA32_BIOS_SIGN_ID, 0, &FLAT), MsrWrite::Done);
        assert_eq!(p.read(IA32_BIOS_SIGN_ID), MsrRead::Value(0));
        assert_eq!(p.write(IA32_MCG_STATUS, 0, &FLAT), MsrWrite::Done);
        assert_eq!(p.write(IA32_MCG_STATUS, 1, &FLAT), MsrWrite::Gp);
    }

    /// IA32_APIC_BASE is the APIC model's (the dispatcher asks it first): the policy
    /// faults it, which is what a guest without an APIC gets.
    #[test]
    fn apic_base_is_not_the_policys() {
        let mut p = MsrPolicy::new(&cpuid(true));
        assert_eq!(p.read(IA32_APIC_BASE), MsrRead::Gp);
        assert_eq!(p.write(IA32_APIC_BASE, 0xfee0_0900, &FLAT), MsrWrite::Gp);
    }

    #[test]
    fn unknown_msrs_fault_and_live_state_is_unsupported() {
        let mut p = MsrPolicy::new(&cpuid(false));
        for index in [IA32_TSC, 0x48, 0x10a, 0xfe, 0x2ff, 0x6e0, 0x800, 0xc001_0015, u32::MAX] {
            assert_eq!(p.read(index), MsrRead::Gp, "{index:#x}");
            assert_eq!(p.write(index, 0, &FLAT), MsrWrite::Gp, "{index:#x}");
        }
        assert_eq!(p.read(IA32_LSTAR), MsrRead::Unsupported);
        assert_eq!(p.write(IA32_LSTAR, 0, &FLAT), MsrWrite::Unsupported);
    }

    #[test]
    fn guest_state_msrs_are_checked_then_written_to_the_vmcs() {
        let mut p = MsrPolicy::new(&cpuid(false));
        let sysenter = GuestStateMsr::SysenterEip;
        assert_eq!(p.read(IA32_SYSENTER_EIP), MsrRead::GuestState(sysenter));
        assert_eq!(sysenter.field(), Field::GuestIa32SysenterEip);
        assert_eq!(
            p.write(IA32_SYSENTER_EIP, 0xffff_8000_0000_0000, &FLAT),
            MsrWrite::GuestState(sysenter, 0xffff_8000_0000_0000)
        );
        assert_eq!(p.write(IA32_SYSENTER_EIP, 0x0000_8000_0000_0000, &FLAT), MsrWrite::Gp);
        assert_eq!(p.write(IA32_FS_BASE, 1 << 63, &FLAT), MsrWrite::Gp);
        assert_eq!(
            p.write(IA32_SYSENTER_CS, 0x1_0000_0010, &FLAT),
            MsrWrite::GuestState(GuestStateMsr::SysenterCs, 0x10)
        );
        assert_eq!(
            p.write(IA32_PAT, 0x0007_0406_0007_0406, &FLAT),
            MsrWrite::GuestState(GuestStateMsr::Pat, 0x0007_0406_0007_0406)
        );
        assert_eq!(p.write(IA32_PAT, 0x02, &FLAT), MsrWrite::Gp, "type 2 is reserved");
        assert_eq!(
            p.write(IA32_DEBUGCTL, 2, &FLAT),
            MsrWrite::GuestState(GuestStateMsr::Debugctl, 2)
        );
        assert_eq!(p.write(IA32_DEBUGCTL, 1, &FLAT), MsrWrite::Gp, "no LBR");
    }

    #[test]
    fn efer_rules() {
        let mut p = MsrPolicy::new(&cpuid(false));
        let efer = GuestStateMsr::Efer;
        // Enable long mode and NX before paging.
        assert_eq!(p.write(IA32_EFER, 0xd01 & !EFER_LMA, &FLAT), MsrWrite::GuestState(efer, 0x901));
        // LMA cannot be set by WRMSR, and is kept when already set.
        assert_eq!(p.write(IA32_EFER, EFER_LMA, &FLAT), MsrWrite::GuestState(efer, 0));
        let long = MsrContext { cr0: 0x8000_0011, efer: 0xd01 };
        assert_eq!(p.write(IA32_EFER, 0x901, &long), MsrWrite::GuestState(efer, 0xd01));
        // LME may not change while paging is on.
        assert_eq!(p.write(IA32_EFER, 0x001, &long), MsrWrite::Gp);
        let paged32 = MsrContext { cr0: 0x8000_0011, efer: 0 };
        assert_eq!(p.write(IA32_EFER, EFER_LME, &paged32), MsrWrite::Gp);
        // Bits CPUID does not offer fault.
        assert_eq!(p.write(IA32_EFER, 1 << 12, &FLAT), MsrWrite::Gp, "SVME");
    }

    #[test]
    fn guest_state_reads_need_their_transfer_group() {
        let mut msg = ExitMessage { efer: 0x500, ..ExitMessage::default() };
        msg.segments.regs[5].base = 0xffff_8880_0000_0000;
        assert_eq!(GuestStateMsr::Efer.read(&msg), None);
        msg.transfer = TransferMask::EFER_PAT | TransferMask::SEGMENTS;
        assert_eq!(GuestStateMsr::Efer.read(&msg), Some(0x500));
        assert_eq!(GuestStateMsr::GsBase.read(&msg), Some(0xffff_8880_0000_0000));
        assert_eq!(GuestStateMsr::SysenterCs.read(&msg), None);
    }

    #[test]
    fn canonical_addresses() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(!is_canonical(0xfff0_0000_0000_0000));
    }
}
