//! Why `VCpuStart` refuses to start a vCPU.
//!
//! The kernel checks everything it can before the first VM entry (control bits against
//! the capability MSRs, the guest state the mode needs, its own pages and host state), so
//! a guest the CPU cannot run is refused at `VCpuStart`, not at VM entry. The refusal is
//! the invocation's error, `StartRefused`, with the failed check in the result registers
//! (`rdx` = [`StartError::code`], `r10` = the field's encoding or the guest mode, `r8` =
//! the control bits): the VMM, not the kernel, tells the user why its guest cannot run.

use core::fmt;

use crate::object::vcpu_mode;
use crate::vmcs::Field;

/// A check the initial VMCS of a vCPU failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The mode (a [`vcpu_mode`]) needs unrestricted guest, which the CPU lacks.
    NeedsUnrestrictedGuest {
        /// The requested mode.
        mode: u64,
    },
    /// The CPU has no EPT: without it guest-physical addresses would be host-physical.
    NeedsEpt,
    /// EPT exists but the VCpu has no GuestSpace (no EPT pointer, or a policy without
    /// EPT): there would be no guest-physical memory to run in.
    NoGuestSpace,
    /// A control bit the kernel's policy forces is not available on this CPU.
    PolicyUnsupported {
        /// The control field.
        field: Field,
        /// The missing bits.
        bits: u32,
    },
    /// A requested extra control bit is outside the policy or the CPU's allowed-1 bits.
    ControlNotAllowed {
        /// The control field.
        field: Field,
        /// The refused bits.
        bits: u32,
    },
    /// The VPID is zero while the policy enables VPIDs, or non-zero while it does not.
    VpidMismatch,
    /// A page or MSR-area address is unaligned, too wide, or its count too large.
    BadAddress(Field),
    /// A host-state field would fail the VM-entry host-state checks.
    BadHostState(Field),
    /// An entry value (RIP, RSP, CR3) does not fit the mode.
    BadEntry(Field),
    /// The CPU's fixed CR0/CR4 bits forbid a bit the mode needs.
    FixedBits(Field),
}

impl StartError {
    /// Words in the result registers (`rdx`, `r10`, `r8`).
    pub const SIZE: usize = 3;

    /// The stable numeric code (ABI; append-only).
    pub const fn code(&self) -> u64 {
        self.to_words()[0]
    }

    /// Encode: `[code, field encoding or mode, bits]`, unused words 0.
    pub const fn to_words(&self) -> [u64; Self::SIZE] {
        const fn f(field: Field) -> u64 {
            field.encoding() as u64
        }
        match *self {
            Self::NeedsUnrestrictedGuest { mode } => [1, mode, 0],
            Self::NeedsEpt => [2, 0, 0],
            Self::NoGuestSpace => [3, 0, 0],
            Self::PolicyUnsupported { field, bits } => [4, f(field), bits as u64],
            Self::ControlNotAllowed { field, bits } => [5, f(field), bits as u64],
            Self::VpidMismatch => [6, 0, 0],
            Self::BadAddress(field) => [7, f(field), 0],
            Self::BadHostState(field) => [8, f(field), 0],
            Self::BadEntry(field) => [9, f(field), 0],
            Self::FixedBits(field) => [10, f(field), 0],
        }
    }

    /// Decode; `None` for an unknown code or field, or a word the variant leaves unused
    /// that is not zero.
    pub fn from_words(words: [u64; Self::SIZE]) -> Option<Self> {
        let [code, arg, bits] = words;
        let field = || Field::from_raw(u32::try_from(arg).ok()?);
        let bits32 = u32::try_from(bits).ok();
        let e = match code {
            1 => Self::NeedsUnrestrictedGuest { mode: arg },
            2 => Self::NeedsEpt,
            3 => Self::NoGuestSpace,
            4 => Self::PolicyUnsupported { field: field()?, bits: bits32? },
            5 => Self::ControlNotAllowed { field: field()?, bits: bits32? },
            6 => Self::VpidMismatch,
            7 => Self::BadAddress(field()?),
            8 => Self::BadHostState(field()?),
            9 => Self::BadEntry(field()?),
            10 => Self::FixedBits(field()?),
            _ => return None,
        };
        // Canonical form only.
        (e.to_words() == words).then_some(e)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeedsUnrestrictedGuest { mode: vcpu_mode::REAL } => {
                f.write_str("real-mode guest needs unrestricted guest, which this CPU lacks")
            }
            Self::NeedsUnrestrictedGuest { .. } => f.write_str(
                "unpaged protected-mode guest needs unrestricted guest, which this CPU lacks",
            ),
            Self::NeedsEpt => f.write_str(
                "a guest needs EPT, which this CPU lacks (without it guest-physical addresses \
                 would be host-physical)",
            ),
            Self::NoGuestSpace => f.write_str("the VCpu has no GuestSpace (EPT) to run in"),
            Self::PolicyUnsupported { field, bits } => {
                write!(f, "{field}: the kernel needs control bits {bits:#x}, which this CPU lacks")
            }
            Self::ControlNotAllowed { field, bits } => {
                write!(f, "{field}: control bits {bits:#x} are not available")
            }
            Self::VpidMismatch => f.write_str("VPID does not match the VCpu's policy"),
            Self::BadAddress(field) => write!(f, "{field}: bad physical address or count"),
            Self::BadHostState(field) => write!(f, "{field}: host state fails VM-entry checks"),
            Self::BadEntry(field) => write!(f, "{field}: entry value does not fit the mode"),
            Self::FixedBits(field) => {
                write!(f, "{field}: the CPU's fixed bits forbid what the mode needs")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StartError;
    use crate::object::vcpu_mode;
    use crate::vmcs::Field;

    fn every() -> [StartError; 11] {
        [
            StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::REAL },
            StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::PROTECTED32 },
            StartError::NeedsEpt,
            StartError::NoGuestSpace,
            StartError::PolicyUnsupported { field: Field::SecondaryProcBasedControls, bits: 2 },
            StartError::ControlNotAllowed { field: Field::ProcBasedControls, bits: 0x80 },
            StartError::VpidMismatch,
            StartError::BadAddress(Field::IoBitmapA),
            StartError::BadHostState(Field::HostRip),
            StartError::BadEntry(Field::GuestRip),
            StartError::FixedBits(Field::GuestCr0),
        ]
    }

    #[test]
    fn golden_words() {
        let words: Vec<[u64; 3]> = every().iter().map(StartError::to_words).collect();
        assert_eq!(
            words,
            [
                [1, 2, 0],
                [1, 1, 0],
                [2, 0, 0],
                [3, 0, 0],
                [4, 0x401e, 2],
                [5, 0x4002, 0x80],
                [6, 0, 0],
                [7, 0x2000, 0],
                [8, 0x6c16, 0],
                [9, 0x681e, 0],
                [10, 0x6800, 0],
            ]
        );
    }

    #[test]
    fn every_error_round_trips_and_only_canonical_words_decode() {
        for e in every() {
            assert_eq!(StartError::from_words(e.to_words()), Some(e), "{e:?}");
        }
        assert_eq!(StartError::from_words([0, 0, 0]), None, "code 0 is no error");
        assert_eq!(StartError::from_words([11, 0, 0]), None, "unknown code");
        assert_eq!(StartError::from_words([2, 1, 0]), None, "unused word set");
        assert_eq!(StartError::from_words([7, 0x1234_5678, 0]), None, "unknown field");
        assert_eq!(StartError::from_words([4, 0x401e, 1 << 32]), None, "bits wider than 32");
    }

    #[test]
    fn the_reasons_read_as_sentences() {
        let real = StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::REAL };
        assert_eq!(
            real.to_string(),
            "real-mode guest needs unrestricted guest, which this CPU lacks"
        );
        let p32 = StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::PROTECTED32 };
        assert!(p32.to_string().starts_with("unpaged protected-mode guest needs unrestricted"));
        assert!(StartError::NeedsEpt.to_string().contains("EPT"));
        let bits = StartError::PolicyUnsupported { field: Field::PinBasedControls, bits: 0x40 };
        assert!(bits.to_string().contains("0x40"), "{bits}");
    }
}
