//! How a VMX instruction fails, and the message that tells a VMM its vCPU stopped because
//! one did.
//!
//! VMfailInvalid and VMfailValid (with the VM-instruction error number, SDM Vol. 3, 31.4)
//! are typed once here for the kernel's VMX layer and for VMMs. The kernel checks every
//! VMCS write and the initial VMCS before entry, so a VMX instruction failing while it
//! runs a vCPU means a check it could not make in advance (or a kernel bug): the vCPU
//! stops, and instead of printing, the kernel sends its VMM a [`VmxFailure`] on the exit
//! endpoint with label [`crate::object::vm::FAILURE_LABEL`], words as
//! [`VmxFailure::to_words`]. It is a one-way message; `VCpuStart` runs the vCPU again.

use core::fmt;

use crate::vmcs::Field;

/// The VM-instruction error numbers (SDM Vol. 3, 31.4), read from
/// [`Field::VmInstructionError`] after a VMfailValid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstructionError {
    /// 1: VMCALL executed in VMX root operation.
    VmcallInRoot,
    /// 2: VMCLEAR with an invalid physical address.
    VmclearInvalidAddress,
    /// 3: VMCLEAR with the VMXON pointer.
    VmclearVmxonPointer,
    /// 4: VMLAUNCH with a non-clear VMCS.
    VmlaunchNonClear,
    /// 5: VMRESUME with a non-launched VMCS.
    VmresumeNonLaunched,
    /// 6: VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME).
    VmresumeAfterVmxoff,
    /// 7: VM entry with invalid control field(s).
    EntryInvalidControls,
    /// 8: VM entry with invalid host-state field(s).
    EntryInvalidHostState,
    /// 9: VMPTRLD with an invalid physical address.
    VmptrldInvalidAddress,
    /// 10: VMPTRLD with the VMXON pointer.
    VmptrldVmxonPointer,
    /// 11: VMPTRLD with an incorrect VMCS revision identifier.
    VmptrldBadRevision,
    /// 12: VMREAD/VMWRITE from/to an unsupported VMCS component.
    UnsupportedComponent,
    /// 13: VMWRITE to a read-only VMCS component.
    WriteReadOnlyComponent,
    /// 15: VMXON executed in VMX root operation.
    VmxonInRoot,
    /// 16: VM entry with an invalid executive-VMCS pointer.
    EntryInvalidExecutiveVmcs,
    /// 17: VM entry with a non-launched executive VMCS.
    EntryNonLaunchedExecutiveVmcs,
    /// 18: VM entry with an executive-VMCS pointer that is not the VMXON pointer.
    EntryExecutiveVmcsNotVmxon,
    /// 19: VMCALL with a non-clear VMCS (activating the dual-monitor treatment).
    VmcallNonClearVmcs,
    /// 20: VMCALL with invalid VM-exit control fields.
    VmcallInvalidExitControls,
    /// 22: VMCALL with an incorrect MSEG revision identifier.
    VmcallBadMsegRevision,
    /// 23: VMXOFF under the dual-monitor treatment of SMIs and SMM.
    VmxoffUnderDualMonitor,
    /// 24: VMCALL with invalid SMM-monitor features.
    VmcallInvalidSmmFeatures,
    /// 25: VM entry with invalid VM-execution control fields in the executive VMCS.
    EntryInvalidExecutiveControls,
    /// 26: VM entry with events blocked by MOV SS.
    EntryBlockedByMovSs,
    /// 28: invalid operand to INVEPT/INVVPID.
    InvalidInvOperand,
    /// A number this table does not know (0 if the error field itself was unreadable).
    Unknown(u32),
}

impl InstructionError {
    /// Decode an error number.
    pub const fn from_number(n: u32) -> Self {
        match n {
            1 => Self::VmcallInRoot,
            2 => Self::VmclearInvalidAddress,
            3 => Self::VmclearVmxonPointer,
            4 => Self::VmlaunchNonClear,
            5 => Self::VmresumeNonLaunched,
            6 => Self::VmresumeAfterVmxoff,
            7 => Self::EntryInvalidControls,
            8 => Self::EntryInvalidHostState,
            9 => Self::VmptrldInvalidAddress,
            10 => Self::VmptrldVmxonPointer,
            11 => Self::VmptrldBadRevision,
            12 => Self::UnsupportedComponent,
            13 => Self::WriteReadOnlyComponent,
            15 => Self::VmxonInRoot,
            16 => Self::EntryInvalidExecutiveVmcs,
            17 => Self::EntryNonLaunchedExecutiveVmcs,
            18 => Self::EntryExecutiveVmcsNotVmxon,
            19 => Self::VmcallNonClearVmcs,
            20 => Self::VmcallInvalidExitControls,
            22 => Self::VmcallBadMsegRevision,
            23 => Self::VmxoffUnderDualMonitor,
            24 => Self::VmcallInvalidSmmFeatures,
            25 => Self::EntryInvalidExecutiveControls,
            26 => Self::EntryBlockedByMovSs,
            28 => Self::InvalidInvOperand,
            other => Self::Unknown(other),
        }
    }

    /// The SDM's error number.
    pub const fn number(self) -> u32 {
        match self {
            Self::VmcallInRoot => 1,
            Self::VmclearInvalidAddress => 2,
            Self::VmclearVmxonPointer => 3,
            Self::VmlaunchNonClear => 4,
            Self::VmresumeNonLaunched => 5,
            Self::VmresumeAfterVmxoff => 6,
            Self::EntryInvalidControls => 7,
            Self::EntryInvalidHostState => 8,
            Self::VmptrldInvalidAddress => 9,
            Self::VmptrldVmxonPointer => 10,
            Self::VmptrldBadRevision => 11,
            Self::UnsupportedComponent => 12,
            Self::WriteReadOnlyComponent => 13,
            Self::VmxonInRoot => 15,
            Self::EntryInvalidExecutiveVmcs => 16,
            Self::EntryNonLaunchedExecutiveVmcs => 17,
            Self::EntryExecutiveVmcsNotVmxon => 18,
            Self::VmcallNonClearVmcs => 19,
            Self::VmcallInvalidExitControls => 20,
            Self::VmcallBadMsegRevision => 22,
            Self::VmxoffUnderDualMonitor => 23,
            Self::VmcallInvalidSmmFeatures => 24,
            Self::EntryInvalidExecutiveControls => 25,
            Self::EntryBlockedByMovSs => 26,
            Self::InvalidInvOperand => 28,
            Self::Unknown(n) => n,
        }
    }
}

/// Why a VMX instruction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxError {
    /// VMfailInvalid (CF = 1): there is no current VMCS to hold an error number.
    FailInvalid,
    /// VMfailValid (ZF = 1), with the VM-instruction error.
    FailValid(InstructionError),
    /// Nothing executed: the CPU lacks this INVEPT/INVVPID type (IA32_VMX_EPT_VPID_CAP),
    /// or the kernel is no longer in VMX operation.
    Unsupported,
}

impl fmt::Display for VmxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailInvalid => f.write_str("VMfailInvalid"),
            Self::FailValid(e) => {
                write!(f, "VMfailValid: VM-instruction error {} ({e:?})", e.number())
            }
            Self::Unsupported => f.write_str("not executed (unsupported here)"),
        }
    }
}

/// The VMX instructions the kernel executes to run a vCPU.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxInstruction {
    /// VMCLEAR of the vCPU's VMCS before its first launch.
    Vmclear = 1,
    /// VMPTRLD of the vCPU's VMCS.
    Vmptrld = 2,
    /// VMWRITE of the initial VMCS, a validated batch, or the MSR-area counts.
    Vmwrite = 3,
    /// VMLAUNCH (VM entry of a clear VMCS).
    Vmlaunch = 4,
    /// VMRESUME (VM entry of a launched VMCS).
    Vmresume = 5,
}

impl VmxInstruction {
    /// Every instruction, in code order.
    pub const ALL: [Self; 5] =
        [Self::Vmclear, Self::Vmptrld, Self::Vmwrite, Self::Vmlaunch, Self::Vmresume];

    /// Decode a code.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|i| *i as u64 == raw)
    }

    /// The mnemonic.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vmclear => "VMCLEAR",
            Self::Vmptrld => "VMPTRLD",
            Self::Vmwrite => "VMWRITE",
            Self::Vmlaunch => "VMLAUNCH",
            Self::Vmresume => "VMRESUME",
        }
    }
}

/// A VMX instruction failed while the kernel ran a vCPU, which is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxFailure {
    /// The instruction.
    pub instruction: VmxInstruction,
    /// The field a VMWRITE wrote (`None` for the other instructions).
    pub field: Option<Field>,
    /// How it failed.
    pub error: VmxError,
}

impl VmxFailure {
    /// Words of the message.
    pub const SIZE: usize = 4;

    /// Encode: `[instruction, status (1 VMfailInvalid, 2 VMfailValid, 3 not executed),
    /// VM-instruction error number (VMfailValid only), field encoding (VMWRITE only)]`.
    pub const fn to_words(&self) -> [u64; Self::SIZE] {
        let (status, number) = match self.error {
            VmxError::FailInvalid => (1, 0),
            VmxError::FailValid(e) => (2, e.number() as u64),
            VmxError::Unsupported => (3, 0),
        };
        let field = match self.field {
            Some(f) => f.encoding() as u64,
            None => 0,
        };
        [self.instruction as u64, status, number, field]
    }

    /// Decode; `None` for unknown codes, a field on an instruction other than VMWRITE (or
    /// none on VMWRITE), or unused words that are not zero.
    pub fn from_words(words: [u64; Self::SIZE]) -> Option<Self> {
        let [instruction, status, number, field] = words;
        let instruction = VmxInstruction::from_raw(instruction)?;
        let error = match status {
            1 => VmxError::FailInvalid,
            2 => VmxError::FailValid(InstructionError::from_number(u32::try_from(number).ok()?)),
            3 => VmxError::Unsupported,
            _ => return None,
        };
        let field = match instruction {
            VmxInstruction::Vmwrite => Some(Field::from_raw(u32::try_from(field).ok()?)?),
            _ => None,
        };
        let f = Self { instruction, field, error };
        (f.to_words() == words).then_some(f)
    }
}

impl fmt::Display for VmxFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.instruction.name())?;
        if let Some(field) = self.field {
            write!(f, " {field}")?;
        }
        write!(f, " failed: {}", self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::{InstructionError, VmxError, VmxFailure, VmxInstruction};
    use crate::vmcs::Field;

    #[test]
    fn error_numbers_round_trip() {
        for n in 0..40 {
            assert_eq!(InstructionError::from_number(n).number(), n);
        }
        assert_eq!(InstructionError::from_number(7), InstructionError::EntryInvalidControls);
        assert_eq!(InstructionError::from_number(14), InstructionError::Unknown(14));
    }

    fn samples() -> [VmxFailure; 4] {
        let fail_valid = VmxError::FailValid(InstructionError::EntryInvalidControls);
        [
            VmxFailure { instruction: VmxInstruction::Vmlaunch, field: None, error: fail_valid },
            VmxFailure {
                instruction: VmxInstruction::Vmwrite,
                field: Some(Field::GuestRip),
                error: VmxError::FailValid(InstructionError::UnsupportedComponent),
            },
            VmxFailure {
                instruction: VmxInstruction::Vmptrld,
                field: None,
                error: VmxError::FailInvalid,
            },
            VmxFailure {
                instruction: VmxInstruction::Vmresume,
                field: None,
                error: VmxError::Unsupported,
            },
        ]
    }

    #[test]
    fn golden_words() {
        let words = samples().map(|f| f.to_words());
        assert_eq!(words, [[4, 2, 7, 0], [3, 2, 12, 0x681e], [2, 1, 0, 0], [5, 3, 0, 0]]);
    }

    #[test]
    fn failures_round_trip_and_only_canonical_words_decode() {
        for f in samples() {
            assert_eq!(VmxFailure::from_words(f.to_words()), Some(f), "{f:?}");
        }
        assert_eq!(VmxFailure::from_words([0, 1, 0, 0]), None, "no instruction 0");
        assert_eq!(VmxFailure::from_words([4, 4, 0, 0]), None, "unknown status");
        assert_eq!(
            VmxFailure::from_words([4, 1, 7, 0]),
            None,
            "an error number without VMfailValid"
        );
        assert_eq!(VmxFailure::from_words([4, 2, 7, 0x681e]), None, "a field without VMWRITE");
        assert_eq!(VmxFailure::from_words([3, 2, 12, 0x1234_5678]), None, "unknown field");
    }

    #[test]
    fn failures_read_as_sentences() {
        let [launch, write, ..] = samples();
        assert_eq!(
            launch.to_string(),
            "VMLAUNCH failed: VMfailValid: VM-instruction error 7 (EntryInvalidControls)"
        );
        assert!(
            write.to_string().starts_with("VMWRITE GuestRip (0x681e) failed: VMfailValid"),
            "{write}"
        );
    }
}
