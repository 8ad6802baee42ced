//! Why the kernel will not, or no longer, run this VMM's vCPU. The kernel prints nothing
//! at run time: a `VCpuStart` it refuses fails with `StartRefused` and the failed check in
//! the result registers, and a vCPU it stops because a VMX instruction failed sends a
//! message with label `vm::FAILURE_LABEL` on the exit endpoint. The VMM decodes both here
//! and says them through the console driver.

use core::fmt;

use protocols::error::Error;
use protocols::object::vm;
use protocols::vcpu_start::StartError;
use protocols::vmx_failure::VmxFailure;

/// Why `VCpuStart` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartRefusal {
    /// The initial VMCS failed this check.
    Check(StartError),
    /// `StartRefused` with result words this VMM cannot decode (a newer kernel's check).
    Unknown([u64; StartError::SIZE]),
    /// Another error (a bad capability, the vCPU still running, ...).
    Error(Error),
}

impl StartRefusal {
    /// Decode a failed `VCpuStart`: its status and result words `[rdx, r10, r8]`.
    pub fn new(error: Error, words: [u64; StartError::SIZE]) -> Self {
        match error {
            Error::StartRefused => {
                StartError::from_words(words).map_or(Self::Unknown(words), Self::Check)
            }
            other => Self::Error(other),
        }
    }
}

impl fmt::Display for StartRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Check(e) => write!(f, "{e}"),
            Self::Unknown(words) => {
                f.write_str("refused for a reason this VMM does not know, words")?;
                hex_words(f, words)
            }
            Self::Error(e) => f.write_str(e.name()),
        }
    }
}

/// A message on the exit endpoint that is not an exit: the kernel stopped the vCPU.
/// `None` for any other label.
pub fn stopped(label: u64, words: [u64; VmxFailure::SIZE]) -> Option<Stopped> {
    (label == vm::FAILURE_LABEL)
        .then(|| VmxFailure::from_words(words).map_or(Stopped::Unknown(words), Stopped::Failure))
}

/// Why the kernel stopped a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// A VMX instruction failed while it ran.
    Failure(VmxFailure),
    /// A failure message this VMM cannot decode.
    Unknown([u64; VmxFailure::SIZE]),
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failure(e) => write!(f, "{e}"),
            Self::Unknown(words) => {
                f.write_str("a VMX failure this VMM does not know, words")?;
                hex_words(f, words)
            }
        }
    }
}

fn hex_words(f: &mut fmt::Formatter<'_>, words: &[u64]) -> fmt::Result {
    words.iter().try_for_each(|w| write!(f, " {w:#x}"))
}

#[cfg(test)]
mod tests {
    use super::{stopped, StartRefusal, Stopped};
    use protocols::error::Error;
    use protocols::object::{vcpu_mode, vm};
    use protocols::vcpu_start::StartError;
    use protocols::vmexit::ExitReason;
    use protocols::vmx_failure::{InstructionError, VmxError, VmxFailure, VmxInstruction};

    #[test]
    fn a_refused_start_names_the_check() {
        let real = StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::REAL };
        let r = StartRefusal::new(Error::StartRefused, real.to_words());
        assert_eq!(r, StartRefusal::Check(real));
        assert_eq!(r.to_string(), "real-mode guest needs unrestricted guest, which this CPU lacks");
        let unknown = StartRefusal::new(Error::StartRefused, [99, 0, 0]);
        assert!(unknown.to_string().ends_with("words 0x63 0x0 0x0"), "{unknown}");
        // Other errors leave the result words alone: they are not a check.
        let busy = StartRefusal::new(Error::NotPermitted, real.to_words());
        assert_eq!(
            (busy, busy.to_string()),
            (StartRefusal::Error(Error::NotPermitted), "not permitted".into())
        );
    }

    #[test]
    fn only_the_failure_label_means_the_kernel_stopped_the_vcpu() {
        let f = VmxFailure {
            instruction: VmxInstruction::Vmresume,
            field: None,
            error: VmxError::FailValid(InstructionError::EntryInvalidHostState),
        };
        let s = stopped(vm::FAILURE_LABEL, f.to_words());
        assert_eq!(s, Some(Stopped::Failure(f)));
        assert!(s
            .unwrap()
            .to_string()
            .starts_with("VMRESUME failed: VMfailValid: VM-instruction error 8"));
        let unknown = stopped(vm::FAILURE_LABEL, [0, 9, 0, 0]);
        assert_eq!(unknown, Some(Stopped::Unknown([0, 9, 0, 0])));
        assert!(unknown.unwrap().to_string().ends_with("words 0x0 0x9 0x0 0x0"));
        assert_eq!(stopped(vm::EXIT_LABEL, [ExitReason::Cpuid as u64, 0, 0, 2]), None);
    }
}
