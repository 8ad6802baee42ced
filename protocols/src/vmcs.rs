//! Typed VMCS fields (Intel SDM Vol. 3, Appendix B) and control bits (Vol. 3, 25.6-25.8).
//!
//! Every VMCS access in the system names a [`Field`]; no raw encoding appears elsewhere.
//! The field list is written once, in the `vmcs_fields!` table below, which generates the
//! enum, the sorted [`Field::ALL`] table used by [`Field::from_raw`], and [`Field::class`].
//! The class is what the kernel's batch validator reads to decide whether a VMM may write
//! a field at all, so it is a policy decision spelled out next to each encoding rather
//! than derived from the encoding's type bits (the VMCS link pointer, for instance, is
//! guest state to the CPU but a kernel-owned pointer to us).
//!
//! Only the "full" encodings are fields here: the "high" alias of a 64-bit field (access
//! type bit 0 = 1) exists for 32-bit VMMs, and a 64-bit kernel never needs it.

use core::fmt;

/// Who may write a field, as the kernel's VMCS-write validator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldClass {
    /// A guest-visible execution, exit or entry control: the VMM may write it, and the
    /// kernel checks the value against the capability MSRs and its own policy.
    Control,
    /// A kernel-owned control: a physical address or pointer, or the count, index or
    /// identifier that goes with one, or a value the kernel's liveness rests on (the
    /// notify window). The VMM may never write it, since a wrong value would hand the
    /// guest host memory or another guest's TLB entries, or keep the CPU from the kernel.
    ControlPointer,
    /// Guest state, loaded on VM entry: the VMM may write it, subject to the VM-entry
    /// checks the kernel can make in advance.
    GuestState,
    /// Host state, loaded on VM exit: only the kernel writes it.
    HostState,
    /// VM-exit information: written by the CPU, read-only to everyone.
    ReadOnly,
}

/// Width of a field, from bits 14:13 of its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// 16-bit field.
    Bits16,
    /// 64-bit field.
    Bits64,
    /// 32-bit field.
    Bits32,
    /// Natural-width field (64 bits on a 64-bit CPU).
    Natural,
}

impl Width {
    /// The largest value a VMWRITE of this width stores without truncation.
    pub const fn max_value(self) -> u64 {
        match self {
            Self::Bits16 => u16::MAX as u64,
            Self::Bits32 => u32::MAX as u64,
            Self::Bits64 | Self::Natural => u64::MAX,
        }
    }
}

/// Generates [`Field`], its sorted table, its class and its name from one list, so an
/// encoding, its class and its documentation can never drift apart.
macro_rules! vmcs_fields {
    ($( $(#[$doc:meta])+ $name:ident = $enc:literal => $class:ident; )+) => {
        /// A VMCS field; the discriminant is its Intel SDM encoding. Variants are ordered
        /// by encoding, as in the SDM's Appendix B.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Field {
            $( $(#[$doc])+ $name = $enc, )+
        }

        /// Each segment register's guest-state fields (selector, base, limit, access rights), in
/// the order ES, CS, SS, DS, FS, GS, LDTR, TR: that of [`crate::vmexit::Segments`].
pub const SEGMENT_FIELDS: [(Field, Field, Field, Field); 8] = [
    (Field::GuestEsSelector, Field::GuestEsBase, Field::GuestEsLimit, Field::GuestEsAccessRights),
    (Field::GuestCsSelector, Field::GuestCsBase, Field::GuestCsLimit, Field::GuestCsAccessRights),
    (Field::GuestSsSelector, Field::GuestSsBase, Field::GuestSsLimit, Field::GuestSsAccessRights),
    (Field::GuestDsSelector, Field::GuestDsBase, Field::GuestDsLimit, Field::GuestDsAccessRights),
    (Field::GuestFsSelector, Field::GuestFsBase, Field::GuestFsLimit, Field::GuestFsAccessRights),
    (Field::GuestGsSelector, Field::GuestGsBase, Field::GuestGsLimit, Field::GuestGsAccessRights),
    (
        Field::GuestLdtrSelector,
        Field::GuestLdtrBase,
        Field::GuestLdtrLimit,
        Field::GuestLdtrAccessRights,
    ),
    (Field::GuestTrSelector, Field::GuestTrBase, Field::GuestTrLimit, Field::GuestTrAccessRights),
];

impl Field {
            /// Every field, sorted by encoding (checked at compile time).
            pub const ALL: &'static [Field] = &[ $( Field::$name, )+ ];

            /// Who may write this field.
            pub const fn class(self) -> FieldClass {
                match self {
                    $( Field::$name => FieldClass::$class, )+
                }
            }

            /// The variant's name, for logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Field::$name => stringify!($name), )+
                }
            }
        }
    };
}

vmcs_fields! {
    // 16-bit control fields.
    /// Virtual-processor identifier: the kernel assigns VPIDs so guests never share TLB tags.
    Vpid = 0x0000 => ControlPointer;
    /// Posted-interrupt notification vector: a host IDT vector.
    PostedInterruptVector = 0x0002 => ControlPointer;
    /// EPTP index into the kernel-owned EPTP list.
    EptpIndex = 0x0004 => ControlPointer;
    /// HLAT prefix size, paired with the kernel-owned HLAT pointer.
    HlatPrefixSize = 0x0006 => ControlPointer;
    /// Last PID-pointer index, sizing the kernel-owned PID-pointer table.
    LastPidPointerIndex = 0x0008 => ControlPointer;

    // 16-bit guest-state fields.
    /// Guest ES selector.
    GuestEsSelector = 0x0800 => GuestState;
    /// Guest CS selector.
    GuestCsSelector = 0x0802 => GuestState;
    /// Guest SS selector.
    GuestSsSelector = 0x0804 => GuestState;
    /// Guest DS selector.
    GuestDsSelector = 0x0806 => GuestState;
    /// Guest FS selector.
    GuestFsSelector = 0x0808 => GuestState;
    /// Guest GS selector.
    GuestGsSelector = 0x080A => GuestState;
    /// Guest LDTR selector.
    GuestLdtrSelector = 0x080C => GuestState;
    /// Guest TR selector.
    GuestTrSelector = 0x080E => GuestState;
    /// Guest interrupt status (RVI/SVI for virtual-interrupt delivery).
    GuestInterruptStatus = 0x0810 => GuestState;
    /// PML index.
    GuestPmlIndex = 0x0812 => GuestState;
    /// Guest user-interrupt notification vector (UINV).
    GuestUinv = 0x0814 => GuestState;

    // 16-bit host-state fields.
    /// Host ES selector.
    HostEsSelector = 0x0C00 => HostState;
    /// Host CS selector.
    HostCsSelector = 0x0C02 => HostState;
    /// Host SS selector.
    HostSsSelector = 0x0C04 => HostState;
    /// Host DS selector.
    HostDsSelector = 0x0C06 => HostState;
    /// Host FS selector.
    HostFsSelector = 0x0C08 => HostState;
    /// Host GS selector.
    HostGsSelector = 0x0C0A => HostState;
    /// Host TR selector.
    HostTrSelector = 0x0C0C => HostState;

    // 64-bit control fields.
    /// Address of I/O bitmap A (ports 0x0000-0x7FFF).
    IoBitmapA = 0x2000 => ControlPointer;
    /// Address of I/O bitmap B (ports 0x8000-0xFFFF).
    IoBitmapB = 0x2002 => ControlPointer;
    /// Address of the MSR bitmaps.
    MsrBitmap = 0x2004 => ControlPointer;
    /// VM-exit MSR-store address.
    ExitMsrStoreAddress = 0x2006 => ControlPointer;
    /// VM-exit MSR-load address.
    ExitMsrLoadAddress = 0x2008 => ControlPointer;
    /// VM-entry MSR-load address.
    EntryMsrLoadAddress = 0x200A => ControlPointer;
    /// Executive-VMCS pointer (dual-monitor SMM treatment).
    ExecutiveVmcsPointer = 0x200C => ControlPointer;
    /// Page-modification log address.
    PmlAddress = 0x200E => ControlPointer;
    /// TSC offset added to guest RDTSC.
    TscOffset = 0x2010 => Control;
    /// Virtual-APIC page address.
    VirtualApicAddress = 0x2012 => ControlPointer;
    /// APIC-access page address.
    ApicAccessAddress = 0x2014 => ControlPointer;
    /// Posted-interrupt descriptor address.
    PostedInterruptDescriptor = 0x2016 => ControlPointer;
    /// VM-function controls.
    VmFunctionControls = 0x2018 => ControlPointer;
    /// EPT pointer: the root of the guest's physical address space.
    EptPointer = 0x201A => ControlPointer;
    /// EOI-exit bitmap 0 (vectors 0-63).
    EoiExitBitmap0 = 0x201C => Control;
    /// EOI-exit bitmap 1 (vectors 64-127).
    EoiExitBitmap1 = 0x201E => Control;
    /// EOI-exit bitmap 2 (vectors 128-191).
    EoiExitBitmap2 = 0x2020 => Control;
    /// EOI-exit bitmap 3 (vectors 192-255).
    EoiExitBitmap3 = 0x2022 => Control;
    /// EPTP-list address (EPTP switching).
    EptpListAddress = 0x2024 => ControlPointer;
    /// VMREAD-bitmap address (VMCS shadowing).
    VmreadBitmap = 0x2026 => ControlPointer;
    /// VMWRITE-bitmap address (VMCS shadowing).
    VmwriteBitmap = 0x2028 => ControlPointer;
    /// Virtualization-exception information address.
    VeInformationAddress = 0x202A => ControlPointer;
    /// XSS-exiting bitmap: the kernel keeps XSAVES/XRSTORS policy to itself.
    XssExitingBitmap = 0x202C => ControlPointer;
    /// ENCLS-exiting bitmap: the kernel keeps SGX policy to itself.
    EnclsExitingBitmap = 0x202E => ControlPointer;
    /// Sub-page-permission-table pointer.
    SppTablePointer = 0x2030 => ControlPointer;
    /// TSC multiplier (TSC scaling).
    TscMultiplier = 0x2032 => Control;
    /// Tertiary processor-based VM-execution controls.
    TertiaryProcBasedControls = 0x2034 => Control;
    /// ENCLV-exiting bitmap: the kernel keeps SGX policy to itself.
    EnclvExitingBitmap = 0x2036 => ControlPointer;
    /// Low PASID directory address.
    LowPasidDirectory = 0x2038 => ControlPointer;
    /// High PASID directory address.
    HighPasidDirectory = 0x203A => ControlPointer;
    /// Shared-EPT pointer.
    SharedEptPointer = 0x203C => ControlPointer;
    /// PCONFIG-exiting bitmap.
    PconfigExitingBitmap = 0x203E => ControlPointer;
    /// Hypervisor-managed linear-address translation pointer.
    HlatPointer = 0x2040 => ControlPointer;
    /// PID-pointer table address (IPI virtualization).
    PidPointerTable = 0x2042 => ControlPointer;
    /// Secondary VM-exit controls.
    SecondaryExitControls = 0x2044 => Control;

    // 64-bit read-only data field.
    /// Guest-physical address of an EPT violation or misconfiguration.
    GuestPhysicalAddress = 0x2400 => ReadOnly;

    // 64-bit guest-state fields.
    /// VMCS link pointer: must stay all ones unless the kernel uses VMCS shadowing.
    VmcsLinkPointer = 0x2800 => ControlPointer;
    /// Guest IA32_DEBUGCTL.
    GuestIa32Debugctl = 0x2802 => GuestState;
    /// Guest IA32_PAT.
    GuestIa32Pat = 0x2804 => GuestState;
    /// Guest IA32_EFER.
    GuestIa32Efer = 0x2806 => GuestState;
    /// Guest IA32_PERF_GLOBAL_CTRL.
    GuestIa32PerfGlobalCtrl = 0x2808 => GuestState;
    /// Guest PDPTE0 (PAE paging with EPT).
    GuestPdpte0 = 0x280A => GuestState;
    /// Guest PDPTE1.
    GuestPdpte1 = 0x280C => GuestState;
    /// Guest PDPTE2.
    GuestPdpte2 = 0x280E => GuestState;
    /// Guest PDPTE3.
    GuestPdpte3 = 0x2810 => GuestState;
    /// Guest IA32_BNDCFGS.
    GuestIa32Bndcfgs = 0x2812 => GuestState;
    /// Guest IA32_RTIT_CTL.
    GuestIa32RtitCtl = 0x2814 => GuestState;
    /// Guest IA32_LBR_CTL.
    GuestIa32LbrCtl = 0x2816 => GuestState;
    /// Guest IA32_PKRS.
    GuestIa32Pkrs = 0x2818 => GuestState;

    // 64-bit host-state fields.
    /// Host IA32_PAT.
    HostIa32Pat = 0x2C00 => HostState;
    /// Host IA32_EFER.
    HostIa32Efer = 0x2C02 => HostState;
    /// Host IA32_PERF_GLOBAL_CTRL.
    HostIa32PerfGlobalCtrl = 0x2C04 => HostState;
    /// Host IA32_PKRS.
    HostIa32Pkrs = 0x2C06 => HostState;

    // 32-bit control fields.
    /// Pin-based VM-execution controls.
    PinBasedControls = 0x4000 => Control;
    /// Primary processor-based VM-execution controls.
    ProcBasedControls = 0x4002 => Control;
    /// Exception bitmap: which guest exceptions cause VM exits.
    ExceptionBitmap = 0x4004 => Control;
    /// Page-fault error-code mask.
    PageFaultErrorCodeMask = 0x4006 => Control;
    /// Page-fault error-code match.
    PageFaultErrorCodeMatch = 0x4008 => Control;
    /// CR3-target count.
    Cr3TargetCount = 0x400A => Control;
    /// Primary VM-exit controls.
    ExitControls = 0x400C => Control;
    /// VM-exit MSR-store count: sizes a kernel-owned area.
    ExitMsrStoreCount = 0x400E => ControlPointer;
    /// VM-exit MSR-load count: sizes a kernel-owned area.
    ExitMsrLoadCount = 0x4010 => ControlPointer;
    /// VM-entry controls.
    EntryControls = 0x4012 => Control;
    /// VM-entry MSR-load count: sizes a kernel-owned area.
    EntryMsrLoadCount = 0x4014 => ControlPointer;
    /// VM-entry interruption-information field (event injection).
    EntryInterruptionInfo = 0x4016 => Control;
    /// VM-entry exception error code.
    EntryExceptionErrorCode = 0x4018 => Control;
    /// VM-entry instruction length (software interrupts and exceptions).
    EntryInstructionLength = 0x401A => Control;
    /// TPR threshold.
    TprThreshold = 0x401C => Control;
    /// Secondary processor-based VM-execution controls.
    SecondaryProcBasedControls = 0x401E => Control;
    /// PAUSE-loop-exiting gap.
    PleGap = 0x4020 => Control;
    /// PAUSE-loop-exiting window.
    PleWindow = 0x4022 => Control;
    /// Instruction-timeout (notify) window: the kernel's bound on how long the guest may
    /// go without an instruction boundary.
    NotifyWindow = 0x4024 => ControlPointer;

    // 32-bit read-only data fields.
    /// VM-instruction error.
    VmInstructionError = 0x4400 => ReadOnly;
    /// Exit reason.
    ExitReason = 0x4402 => ReadOnly;
    /// VM-exit interruption information.
    ExitInterruptionInfo = 0x4404 => ReadOnly;
    /// VM-exit interruption error code.
    ExitInterruptionErrorCode = 0x4406 => ReadOnly;
    /// IDT-vectoring information.
    IdtVectoringInfo = 0x4408 => ReadOnly;
    /// IDT-vectoring error code.
    IdtVectoringErrorCode = 0x440A => ReadOnly;
    /// VM-exit instruction length.
    ExitInstructionLength = 0x440C => ReadOnly;
    /// VM-exit instruction information.
    ExitInstructionInfo = 0x440E => ReadOnly;

    // 32-bit guest-state fields.
    /// Guest ES limit.
    GuestEsLimit = 0x4800 => GuestState;
    /// Guest CS limit.
    GuestCsLimit = 0x4802 => GuestState;
    /// Guest SS limit.
    GuestSsLimit = 0x4804 => GuestState;
    /// Guest DS limit.
    GuestDsLimit = 0x4806 => GuestState;
    /// Guest FS limit.
    GuestFsLimit = 0x4808 => GuestState;
    /// Guest GS limit.
    GuestGsLimit = 0x480A => GuestState;
    /// Guest LDTR limit.
    GuestLdtrLimit = 0x480C => GuestState;
    /// Guest TR limit.
    GuestTrLimit = 0x480E => GuestState;
    /// Guest GDTR limit.
    GuestGdtrLimit = 0x4810 => GuestState;
    /// Guest IDTR limit.
    GuestIdtrLimit = 0x4812 => GuestState;
    /// Guest ES access rights.
    GuestEsAccessRights = 0x4814 => GuestState;
    /// Guest CS access rights.
    GuestCsAccessRights = 0x4816 => GuestState;
    /// Guest SS access rights.
    GuestSsAccessRights = 0x4818 => GuestState;
    /// Guest DS access rights.
    GuestDsAccessRights = 0x481A => GuestState;
    /// Guest FS access rights.
    GuestFsAccessRights = 0x481C => GuestState;
    /// Guest GS access rights.
    GuestGsAccessRights = 0x481E => GuestState;
    /// Guest LDTR access rights.
    GuestLdtrAccessRights = 0x4820 => GuestState;
    /// Guest TR access rights.
    GuestTrAccessRights = 0x4822 => GuestState;
    /// Guest interruptibility state.
    GuestInterruptibility = 0x4824 => GuestState;
    /// Guest activity state.
    GuestActivityState = 0x4826 => GuestState;
    /// Guest SMBASE.
    GuestSmbase = 0x4828 => GuestState;
    /// Guest IA32_SYSENTER_CS.
    GuestIa32SysenterCs = 0x482A => GuestState;
    /// VMX-preemption timer value.
    PreemptionTimerValue = 0x482E => GuestState;

    // 32-bit host-state field.
    /// Host IA32_SYSENTER_CS.
    HostIa32SysenterCs = 0x4C00 => HostState;

    // Natural-width control fields.
    /// CR0 guest/host mask.
    Cr0GuestHostMask = 0x6000 => Control;
    /// CR4 guest/host mask.
    Cr4GuestHostMask = 0x6002 => Control;
    /// CR0 read shadow.
    Cr0ReadShadow = 0x6004 => Control;
    /// CR4 read shadow.
    Cr4ReadShadow = 0x6006 => Control;
    /// CR3-target value 0.
    Cr3Target0 = 0x6008 => Control;
    /// CR3-target value 1.
    Cr3Target1 = 0x600A => Control;
    /// CR3-target value 2.
    Cr3Target2 = 0x600C => Control;
    /// CR3-target value 3.
    Cr3Target3 = 0x600E => Control;

    // Natural-width read-only data fields.
    /// Exit qualification.
    ExitQualification = 0x6400 => ReadOnly;
    /// I/O RCX (SMI during I/O instruction).
    IoRcx = 0x6402 => ReadOnly;
    /// I/O RSI.
    IoRsi = 0x6404 => ReadOnly;
    /// I/O RDI.
    IoRdi = 0x6406 => ReadOnly;
    /// I/O RIP.
    IoRip = 0x6408 => ReadOnly;
    /// Guest-linear address.
    GuestLinearAddress = 0x640A => ReadOnly;

    // Natural-width guest-state fields.
    /// Guest CR0.
    GuestCr0 = 0x6800 => GuestState;
    /// Guest CR3.
    GuestCr3 = 0x6802 => GuestState;
    /// Guest CR4.
    GuestCr4 = 0x6804 => GuestState;
    /// Guest ES base.
    GuestEsBase = 0x6806 => GuestState;
    /// Guest CS base.
    GuestCsBase = 0x6808 => GuestState;
    /// Guest SS base.
    GuestSsBase = 0x680A => GuestState;
    /// Guest DS base.
    GuestDsBase = 0x680C => GuestState;
    /// Guest FS base.
    GuestFsBase = 0x680E => GuestState;
    /// Guest GS base.
    GuestGsBase = 0x6810 => GuestState;
    /// Guest LDTR base.
    GuestLdtrBase = 0x6812 => GuestState;
    /// Guest TR base.
    GuestTrBase = 0x6814 => GuestState;
    /// Guest GDTR base.
    GuestGdtrBase = 0x6816 => GuestState;
    /// Guest IDTR base.
    GuestIdtrBase = 0x6818 => GuestState;
    /// Guest DR7.
    GuestDr7 = 0x681A => GuestState;
    /// Guest RSP.
    GuestRsp = 0x681C => GuestState;
    /// Guest RIP.
    GuestRip = 0x681E => GuestState;
    /// Guest RFLAGS.
    GuestRflags = 0x6820 => GuestState;
    /// Guest pending debug exceptions.
    GuestPendingDebugExceptions = 0x6822 => GuestState;
    /// Guest IA32_SYSENTER_ESP.
    GuestIa32SysenterEsp = 0x6824 => GuestState;
    /// Guest IA32_SYSENTER_EIP.
    GuestIa32SysenterEip = 0x6826 => GuestState;
    /// Guest IA32_S_CET.
    GuestIa32SCet = 0x6828 => GuestState;
    /// Guest SSP (shadow-stack pointer).
    GuestSsp = 0x682A => GuestState;
    /// Guest IA32_INTERRUPT_SSP_TABLE_ADDR.
    GuestIa32InterruptSspTable = 0x682C => GuestState;

    // Natural-width host-state fields.
    /// Host CR0.
    HostCr0 = 0x6C00 => HostState;
    /// Host CR3.
    HostCr3 = 0x6C02 => HostState;
    /// Host CR4.
    HostCr4 = 0x6C04 => HostState;
    /// Host FS base.
    HostFsBase = 0x6C06 => HostState;
    /// Host GS base.
    HostGsBase = 0x6C08 => HostState;
    /// Host TR base.
    HostTrBase = 0x6C0A => HostState;
    /// Host GDTR base.
    HostGdtrBase = 0x6C0C => HostState;
    /// Host IDTR base.
    HostIdtrBase = 0x6C0E => HostState;
    /// Host IA32_SYSENTER_ESP.
    HostIa32SysenterEsp = 0x6C10 => HostState;
    /// Host IA32_SYSENTER_EIP.
    HostIa32SysenterEip = 0x6C12 => HostState;
    /// Host RSP.
    HostRsp = 0x6C14 => HostState;
    /// Host RIP: where VM exits land in the kernel.
    HostRip = 0x6C16 => HostState;
    /// Host IA32_S_CET.
    HostIa32SCet = 0x6C18 => HostState;
    /// Host SSP.
    HostSsp = 0x6C1A => HostState;
    /// Host IA32_INTERRUPT_SSP_TABLE_ADDR.
    HostIa32InterruptSspTable = 0x6C1C => HostState;
}

// `from_raw` binary-searches `ALL`, which is only correct if the table is strictly sorted.
const _: () = {
    let mut i = 1;
    while i < Field::ALL.len() {
        assert!((Field::ALL[i - 1] as u32) < (Field::ALL[i] as u32), "Field::ALL is unsorted");
        i += 1;
    }
};

impl Field {
    /// Decode a raw encoding; `None` for encodings this ABI does not know (including the
    /// "high" aliases of 64-bit fields).
    pub fn from_raw(raw: u32) -> Option<Self> {
        let index = Self::ALL.binary_search_by_key(&raw, |f| *f as u32).ok()?;
        Self::ALL.get(index).copied()
    }

    /// The SDM encoding, as VMREAD/VMWRITE take it.
    pub const fn encoding(self) -> u32 {
        self as u32
    }

    /// The field's width, from encoding bits 14:13.
    pub const fn width(self) -> Width {
        match (self as u32 >> 13) & 3 {
            0 => Width::Bits16,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        }
    }

    /// Whether the VMM may name this field in a write batch at all (the value is then
    /// still checked).
    pub const fn vmm_writable(self) -> bool {
        matches!(self.class(), FieldClass::Control | FieldClass::GuestState)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), *self as u32)
    }
}

/// Guest activity states ([`Field::GuestActivityState`], SDM 25.4.2).
pub mod activity {
    /// Executing instructions.
    pub const ACTIVE: u64 = 0;
    /// Halted: leaves on an interrupt, NMI or SMI, or a VM exit.
    pub const HLT: u64 = 1;
    /// Shutdown (after a triple fault outside VMX): only NMI, INIT or SMI leave it.
    pub const SHUTDOWN: u64 = 2;
    /// Wait-for-SIPI: blocks interrupts, NMIs and the preemption timer; only a SIPI
    /// leaves it.
    pub const WAIT_FOR_SIPI: u64 = 3;
    /// The states a VMM may set: those the kernel's next tick always ends. Shutdown and
    /// wait-for-SIPI do not (the liveness invariant, docs/abi.md).
    pub const fn vmm_settable(state: u64) -> bool {
        matches!(state, ACTIVE | HLT)
    }
}

/// Exceptions every VCpu intercepts, whatever the VMM writes to
/// [`Field::ExceptionBitmap`]: #DB (1) and #AC (17). Either can recur during its own
/// delivery (a #DB from a breakpoint on the IDT, an #AC on a misaligned stack), a loop
/// inside the CPU with no instruction boundary, so no timer could end it
/// (CVE-2015-8104, CVE-2015-5307). The VMM reflects them to the guest.
pub const ALWAYS_INTERCEPTED_EXCEPTIONS: u32 = 1 << 1 | 1 << 17;

/// Bits of the VM-execution, VM-exit and VM-entry control fields (SDM Vol. 3, 25.6-25.8).
pub mod ctl {
    /// Pin-based VM-execution controls ([`super::Field::PinBasedControls`]).
    pub mod pin {
        /// External interrupts cause VM exits.
        pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
        /// NMIs cause VM exits.
        pub const NMI_EXITING: u32 = 1 << 3;
        /// Virtual NMIs.
        pub const VIRTUAL_NMIS: u32 = 1 << 5;
        /// Activate the VMX-preemption timer.
        pub const PREEMPTION_TIMER: u32 = 1 << 6;
        /// Process posted interrupts.
        pub const POSTED_INTERRUPTS: u32 = 1 << 7;
    }

    /// Primary processor-based VM-execution controls ([`super::Field::ProcBasedControls`]).
    pub mod proc {
        /// Exit when the guest can take an interrupt.
        pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
        /// Use the TSC offset.
        pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
        /// HLT exits.
        pub const HLT_EXITING: u32 = 1 << 7;
        /// INVLPG exits.
        pub const INVLPG_EXITING: u32 = 1 << 9;
        /// MWAIT exits.
        pub const MWAIT_EXITING: u32 = 1 << 10;
        /// RDPMC exits.
        pub const RDPMC_EXITING: u32 = 1 << 11;
        /// RDTSC exits.
        pub const RDTSC_EXITING: u32 = 1 << 12;
        /// MOV to CR3 exits.
        pub const CR3_LOAD_EXITING: u32 = 1 << 15;
        /// MOV from CR3 exits.
        pub const CR3_STORE_EXITING: u32 = 1 << 16;
        /// Activate the tertiary controls.
        pub const ACTIVATE_TERTIARY_CONTROLS: u32 = 1 << 17;
        /// MOV to CR8 exits.
        pub const CR8_LOAD_EXITING: u32 = 1 << 19;
        /// MOV from CR8 exits.
        pub const CR8_STORE_EXITING: u32 = 1 << 20;
        /// Use the TPR shadow (virtual-APIC page).
        pub const USE_TPR_SHADOW: u32 = 1 << 21;
        /// Exit when the guest can take an NMI.
        pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
        /// MOV DR exits.
        pub const MOV_DR_EXITING: u32 = 1 << 23;
        /// Every I/O instruction exits (ignored when I/O bitmaps are used).
        pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
        /// Use the I/O bitmaps.
        pub const USE_IO_BITMAPS: u32 = 1 << 25;
        /// Monitor trap flag: exit after one guest instruction.
        pub const MONITOR_TRAP_FLAG: u32 = 1 << 27;
        /// Use the MSR bitmaps.
        pub const USE_MSR_BITMAPS: u32 = 1 << 28;
        /// MONITOR exits.
        pub const MONITOR_EXITING: u32 = 1 << 29;
        /// PAUSE exits.
        pub const PAUSE_EXITING: u32 = 1 << 30;
        /// Activate the secondary controls.
        pub const ACTIVATE_SECONDARY_CONTROLS: u32 = 1 << 31;
    }

    /// Secondary processor-based VM-execution controls
    /// ([`super::Field::SecondaryProcBasedControls`]).
    pub mod proc2 {
        /// Virtualize APIC accesses.
        pub const VIRTUALIZE_APIC_ACCESSES: u32 = 1 << 0;
        /// Enable EPT.
        pub const ENABLE_EPT: u32 = 1 << 1;
        /// Descriptor-table (LGDT, SGDT, ...) exits.
        pub const DESCRIPTOR_TABLE_EXITING: u32 = 1 << 2;
        /// Enable RDTSCP.
        pub const ENABLE_RDTSCP: u32 = 1 << 3;
        /// Virtualize x2APIC mode.
        pub const VIRTUALIZE_X2APIC: u32 = 1 << 4;
        /// Enable VPID.
        pub const ENABLE_VPID: u32 = 1 << 5;
        /// WBINVD exits.
        pub const WBINVD_EXITING: u32 = 1 << 6;
        /// Unrestricted guest (real mode and unpaged protected mode).
        pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
        /// APIC-register virtualization.
        pub const APIC_REGISTER_VIRTUALIZATION: u32 = 1 << 8;
        /// Virtual-interrupt delivery.
        pub const VIRTUAL_INTERRUPT_DELIVERY: u32 = 1 << 9;
        /// PAUSE-loop exiting.
        pub const PAUSE_LOOP_EXITING: u32 = 1 << 10;
        /// RDRAND exits.
        pub const RDRAND_EXITING: u32 = 1 << 11;
        /// Enable INVPCID.
        pub const ENABLE_INVPCID: u32 = 1 << 12;
        /// Enable VM functions.
        pub const ENABLE_VMFUNC: u32 = 1 << 13;
        /// VMCS shadowing.
        pub const VMCS_SHADOWING: u32 = 1 << 14;
        /// ENCLS exits.
        pub const ENCLS_EXITING: u32 = 1 << 15;
        /// RDSEED exits.
        pub const RDSEED_EXITING: u32 = 1 << 16;
        /// Enable PML.
        pub const ENABLE_PML: u32 = 1 << 17;
        /// EPT violations may cause #VE.
        pub const EPT_VIOLATION_VE: u32 = 1 << 18;
        /// Conceal VMX from Intel PT.
        pub const CONCEAL_VMX_FROM_PT: u32 = 1 << 19;
        /// Enable XSAVES/XRSTORS.
        pub const ENABLE_XSAVES: u32 = 1 << 20;
        /// PASID translation.
        pub const PASID_TRANSLATION: u32 = 1 << 21;
        /// Mode-based execute control for EPT.
        pub const MODE_BASED_EPT_EXECUTE: u32 = 1 << 22;
        /// Sub-page write permissions for EPT.
        pub const SUB_PAGE_WRITE_PERMISSIONS: u32 = 1 << 23;
        /// Intel PT uses guest-physical addresses.
        pub const PT_USES_GUEST_PHYSICAL: u32 = 1 << 24;
        /// Use TSC scaling.
        pub const USE_TSC_SCALING: u32 = 1 << 25;
        /// Enable user wait and pause (TPAUSE, UMONITOR, UMWAIT).
        pub const ENABLE_USER_WAIT_PAUSE: u32 = 1 << 26;
        /// Enable PCONFIG.
        pub const ENABLE_PCONFIG: u32 = 1 << 27;
        /// ENCLV exits.
        pub const ENCLV_EXITING: u32 = 1 << 28;
        /// VMM bus-lock detection.
        pub const BUS_LOCK_DETECTION: u32 = 1 << 30;
        /// Instruction timeout (notify VM exits).
        pub const INSTRUCTION_TIMEOUT: u32 = 1 << 31;
    }

    /// Primary VM-exit controls ([`super::Field::ExitControls`]).
    pub mod exit {
        /// Save DR7 and IA32_DEBUGCTL.
        pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
        /// Host address-space size: return to a 64-bit host.
        pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
        /// Load host IA32_PERF_GLOBAL_CTRL.
        pub const LOAD_PERF_GLOBAL_CTRL: u32 = 1 << 12;
        /// Acknowledge the interrupt on exit.
        pub const ACK_INTERRUPT_ON_EXIT: u32 = 1 << 15;
        /// Save guest IA32_PAT.
        pub const SAVE_PAT: u32 = 1 << 18;
        /// Load host IA32_PAT.
        pub const LOAD_PAT: u32 = 1 << 19;
        /// Save guest IA32_EFER.
        pub const SAVE_EFER: u32 = 1 << 20;
        /// Load host IA32_EFER.
        pub const LOAD_EFER: u32 = 1 << 21;
        /// Save the VMX-preemption timer value.
        pub const SAVE_PREEMPTION_TIMER: u32 = 1 << 22;
        /// Clear IA32_BNDCFGS.
        pub const CLEAR_BNDCFGS: u32 = 1 << 23;
        /// Conceal VM exits from Intel PT.
        pub const CONCEAL_VMX_FROM_PT: u32 = 1 << 24;
        /// Clear IA32_RTIT_CTL.
        pub const CLEAR_RTIT_CTL: u32 = 1 << 25;
        /// Clear IA32_LBR_CTL.
        pub const CLEAR_LBR_CTL: u32 = 1 << 26;
        /// Load host CET state.
        pub const LOAD_CET: u32 = 1 << 28;
        /// Load host IA32_PKRS.
        pub const LOAD_PKRS: u32 = 1 << 29;
        /// Activate the secondary VM-exit controls.
        pub const ACTIVATE_SECONDARY_CONTROLS: u32 = 1 << 31;
    }

    /// VM-entry controls ([`super::Field::EntryControls`]).
    pub mod entry {
        /// Load DR7 and IA32_DEBUGCTL.
        pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
        /// The guest runs in IA-32e (long) mode.
        pub const IA32E_MODE_GUEST: u32 = 1 << 9;
        /// Entry to SMM.
        pub const ENTRY_TO_SMM: u32 = 1 << 10;
        /// Deactivate the dual-monitor treatment.
        pub const DEACTIVATE_DUAL_MONITOR: u32 = 1 << 11;
        /// Load guest IA32_PERF_GLOBAL_CTRL.
        pub const LOAD_PERF_GLOBAL_CTRL: u32 = 1 << 13;
        /// Load guest IA32_PAT.
        pub const LOAD_PAT: u32 = 1 << 14;
        /// Load guest IA32_EFER.
        pub const LOAD_EFER: u32 = 1 << 15;
        /// Load guest IA32_BNDCFGS.
        pub const LOAD_BNDCFGS: u32 = 1 << 16;
        /// Conceal VM entries from Intel PT.
        pub const CONCEAL_VMX_FROM_PT: u32 = 1 << 17;
        /// Load guest IA32_RTIT_CTL.
        pub const LOAD_RTIT_CTL: u32 = 1 << 18;
        /// Load guest CET state.
        pub const LOAD_CET: u32 = 1 << 20;
        /// Load guest IA32_LBR_CTL.
        pub const LOAD_LBR_CTL: u32 = 1 << 21;
        /// Load guest IA32_PKRS.
        pub const LOAD_PKRS: u32 = 1 << 22;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed test is a panic")]
mod tests {
    use super::{Field, FieldClass, Width};

    #[test]
    fn golden_encodings_match_the_sdm() {
        let golden = [
            (Field::GuestRip, 0x681E),
            (Field::HostRip, 0x6C16),
            (Field::EptPointer, 0x201A),
            (Field::IoBitmapA, 0x2000),
            (Field::IoBitmapB, 0x2002),
            (Field::MsrBitmap, 0x2004),
            (Field::PinBasedControls, 0x4000),
            (Field::ProcBasedControls, 0x4002),
            (Field::SecondaryProcBasedControls, 0x401E),
            (Field::ExitReason, 0x4402),
            (Field::ExitQualification, 0x6400),
            (Field::VmcsLinkPointer, 0x2800),
            (Field::Vpid, 0x0000),
            (Field::GuestInterruptibility, 0x4824),
            (Field::PreemptionTimerValue, 0x482E),
            (Field::GuestLinearAddress, 0x640A),
            (Field::GuestPhysicalAddress, 0x2400),
            (Field::HostIa32SysenterCs, 0x4C00),
            (Field::EntryInterruptionInfo, 0x4016),
        ];
        for (field, enc) in golden {
            assert_eq!(field.encoding(), enc, "{field:?}");
            assert_eq!(Field::from_raw(enc), Some(field));
        }
    }

    #[test]
    fn every_field_round_trips_and_width_matches_encoding() {
        assert!(Field::ALL.len() > 150, "the table covers the SDM's appendix");
        for &f in Field::ALL {
            assert_eq!(Field::from_raw(f as u32), Some(f));
            // Full encodings only: access type (bit 0) is 0 and bits 31:15 and 12 are 0.
            assert_eq!(f as u32 & !0x6ffe, 0, "{f:?}");
            // Only 64-bit fields have a high alias, and it is not a field here.
            assert_eq!(Field::from_raw(f as u32 | 1), None);
        }
        assert_eq!(Field::GuestEsSelector.width(), Width::Bits16);
        assert_eq!(Field::EptPointer.width(), Width::Bits64);
        assert_eq!(Field::ExitReason.width(), Width::Bits32);
        assert_eq!(Field::GuestRip.width(), Width::Natural);
        assert_eq!(Field::from_raw(0x401F), None);
        assert_eq!(Field::from_raw(0xFFFF_FFFF), None);
        assert_eq!(Field::from_raw(0x682E), None);
    }

    #[test]
    fn classes_follow_the_encoding_type_except_documented_overrides() {
        for &f in Field::ALL {
            // Encoding bits 11:10: 0 control, 1 read-only data, 2 guest state, 3 host state.
            let by_type = match (f as u32 >> 10) & 3 {
                0 => [FieldClass::Control, FieldClass::ControlPointer].contains(&f.class()),
                1 => f.class() == FieldClass::ReadOnly,
                2 => f.class() == FieldClass::GuestState || f == Field::VmcsLinkPointer,
                _ => f.class() == FieldClass::HostState,
            };
            assert!(by_type, "{f:?} has class {:?}", f.class());
        }
    }

    #[test]
    fn sensitive_fields_are_never_vmm_writable() {
        let never = [
            Field::EptPointer,
            Field::IoBitmapA,
            Field::IoBitmapB,
            Field::MsrBitmap,
            Field::ExitMsrStoreAddress,
            Field::ExitMsrLoadAddress,
            Field::EntryMsrLoadAddress,
            Field::ExitMsrStoreCount,
            Field::ExitMsrLoadCount,
            Field::EntryMsrLoadCount,
            Field::VmcsLinkPointer,
            Field::ExecutiveVmcsPointer,
            Field::VirtualApicAddress,
            Field::ApicAccessAddress,
            Field::PostedInterruptDescriptor,
            Field::PostedInterruptVector,
            Field::VmFunctionControls,
            Field::EptpListAddress,
            Field::VmreadBitmap,
            Field::VmwriteBitmap,
            Field::PmlAddress,
            Field::XssExitingBitmap,
            Field::Vpid,
        ];
        for f in never {
            assert_eq!(f.class(), FieldClass::ControlPointer, "{f:?}");
            assert!(!f.vmm_writable());
        }
        assert_eq!(Field::HostRip.class(), FieldClass::HostState);
        assert_eq!(Field::HostCr3.class(), FieldClass::HostState);
        assert_eq!(Field::ExitQualification.class(), FieldClass::ReadOnly);
        assert_eq!(Field::GuestRip.class(), FieldClass::GuestState);
        assert_eq!(Field::ProcBasedControls.class(), FieldClass::Control);
        assert!(Field::GuestCr0.vmm_writable() && Field::ExceptionBitmap.vmm_writable());
    }

    #[test]
    fn display_names_the_field() {
        assert_eq!(format!("{}", Field::GuestRip), "GuestRip (0x681e)");
        assert_eq!(Width::Bits16.max_value(), 0xFFFF);
    }
}
