//! The guest-to-VMM hypercall ABI, reached with VMCALL.
//!
//! Register convention (all 64-bit): RAX = function number, RBX and RCX = arguments; on
//! return RAX holds a status and every other register is unchanged. Only CPL 0 may call
//! (when the exit message carries the segment registers to tell; see `Vm::handle`), so a
//! guest's user programs cannot write to the console or stop the VM.
//!
//! | RAX | function | arguments | effect |
//! |-----|----------|-----------|--------|
//! | 0 | PUTCHAR | RBX bits 7:0 = byte | the byte goes to the VM's console |
//! | 1 | REPORT | RBX = test number, RCX = status (0 = pass) | counted in the VM's test report |
//! | 2 | EXIT | RBX = exit code | the VM stops with that code; no return |
//! | 3 | EXIT_COUNT | RBX = basic exit reason | RAX = exits of that reason the VMM has served |
//! | 4 | INJECT_NMI | – | an NMI is injected as the call returns |
//! | 5 | RDTSC_EXITING | RBX = 1 on / 0 off, RCX = a TSC value | while on, RDTSC exits and returns RCX, RCX + 1, … |
//! | 6 | TSC_OFFSET | RBX = offset | added to the TSC the guest reads (0: TSC offsetting off) |
//! | 7 | CR3_TARGETS | RBX = 1 on / 0 off, RCX = count (≤ 4), RDX, RSI, RDI, R8 = values | CR3-load exiting, and the CR3-target values whose loads do not exit |
//! | 8 | EXCEPTION_BITMAP | RBX = bitmap, RCX = #PF error-code mask, RDX = match | the exceptions that exit (the VMM reflects them) |
//! | 9 | CRASH_VMM | – | a VMM in crash-on-hypercall mode panics here (the restart test); any other answers STATUS_OK |
//!
//! Functions 3-9 let the test guests drive the VT-x controls a VMM uses on their behalf
//! and see what the VMM saw; every control write still goes through the kernel's batch
//! validator.
//!
//! Status: [`STATUS_OK`], [`STATUS_UNKNOWN`] for an unknown function, [`STATUS_DENIED`]
//! for a call from CPL > 0, [`STATUS_INVALID`] for arguments out of range. The numbers
//! belong in `protocols/` once guests other than the test payloads use them; they are
//! fixed here until then and only ever appended.

use protocols::vmexit::Gprs;

/// RAX: write one byte to the console.
pub const PUTCHAR: u64 = 0;
/// RAX: report one test result.
pub const REPORT: u64 = 1;
/// RAX: stop the VM with an exit code.
pub const EXIT: u64 = 2;
/// RAX: how many exits of one basic reason the VMM has served.
pub const EXIT_COUNT: u64 = 3;
/// RAX: inject an NMI.
pub const INJECT_NMI: u64 = 4;
/// RAX: RDTSC exiting on or off, with the TSC value the VMM returns.
pub const RDTSC_EXITING: u64 = 5;
/// RAX: set the TSC offset.
pub const TSC_OFFSET: u64 = 6;
/// RAX: CR3-load exiting and the CR3-target values.
pub const CR3_TARGETS: u64 = 7;
/// RAX: the exception bitmap and the #PF error-code mask and match.
pub const EXCEPTION_BITMAP: u64 = 8;

/// RAX: crash the VMM, if it is in crash-on-hypercall mode.
pub const CRASH_VMM: u64 = 9;

/// The most CR3-target values [`CR3_TARGETS`] takes (the CPU may allow fewer, which the
/// kernel enforces).
pub const MAX_CR3_TARGETS: usize = 4;

/// Returned in RAX: done.
pub const STATUS_OK: u64 = 0;
/// Returned in RAX: no such function (-1).
pub const STATUS_UNKNOWN: u64 = u64::MAX;
/// Returned in RAX: the caller is not at CPL 0 (-2).
pub const STATUS_DENIED: u64 = u64::MAX - 1;
/// Returned in RAX: an argument is out of range (-3).
pub const STATUS_INVALID: u64 = u64::MAX - 2;

/// A decoded hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// Write a byte to the console.
    PutChar(u8),
    /// A test result: `status` 0 is a pass.
    Report {
        /// The guest's test number.
        test: u64,
        /// 0 for pass, anything else is a failure code.
        status: u64,
    },
    /// Stop the VM.
    Exit(u64),
    /// How many exits of this basic reason were served.
    ExitCount(u64),
    /// Inject an NMI.
    InjectNmi,
    /// RDTSC exiting on (returning this TSC value, then one more each time) or off.
    RdtscExiting(Option<u64>),
    /// The TSC offset (0: off).
    TscOffset(u64),
    /// CR3-load exiting on or off, and the CR3-target values.
    Cr3Targets {
        /// CR3-load exiting.
        exiting: bool,
        /// How many of `values` are targets.
        count: usize,
        /// The CR3-target values.
        values: [u64; MAX_CR3_TARGETS],
    },
    /// The exception bitmap and the #PF error-code mask and match.
    ExceptionBitmap {
        /// Bit n: exception n exits.
        bitmap: u32,
        /// #PF error-code mask.
        mask: u32,
        /// #PF error-code match.
        matching: u32,
    },
    /// Crash the VMM (test tooling: `vmm::flags::CRASH_ON_HYPERCALL`).
    CrashVmm,
}

/// Why a hypercall did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No such function.
    Unknown(u64),
    /// An argument is out of range.
    Invalid,
}

impl Hypercall {
    /// Decode the call in `gprs`.
    pub fn decode(gprs: &Gprs) -> Result<Self, DecodeError> {
        let reg = |r: u8| gprs.get(r).unwrap_or(0);
        let flag = |r: u8| match reg(r) {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid),
        };
        let u32_arg = |r: u8| u32::try_from(reg(r)).map_err(|_| DecodeError::Invalid);
        Ok(match reg(Gprs::RAX) {
            PUTCHAR => Self::PutChar(reg(Gprs::RBX) as u8),
            REPORT => Self::Report { test: reg(Gprs::RBX), status: reg(Gprs::RCX) },
            EXIT => Self::Exit(reg(Gprs::RBX)),
            EXIT_COUNT => Self::ExitCount(reg(Gprs::RBX)),
            INJECT_NMI => Self::InjectNmi,
            RDTSC_EXITING => Self::RdtscExiting(flag(Gprs::RBX)?.then(|| reg(Gprs::RCX))),
            TSC_OFFSET => Self::TscOffset(reg(Gprs::RBX)),
            CR3_TARGETS => {
                let count = usize::try_from(reg(Gprs::RCX))
                    .ok()
                    .filter(|&c| c <= MAX_CR3_TARGETS)
                    .ok_or(DecodeError::Invalid)?;
                let values = [Gprs::RDX, Gprs::RSI, Gprs::RDI, Gprs::R8].map(reg);
                Self::Cr3Targets { exiting: flag(Gprs::RBX)?, count, values }
            }
            EXCEPTION_BITMAP => Self::ExceptionBitmap {
                bitmap: u32_arg(Gprs::RBX)?,
                mask: u32_arg(Gprs::RCX)?,
                matching: u32_arg(Gprs::RDX)?,
            },
            CRASH_VMM => Self::CrashVmm,
            other => return Err(DecodeError::Unknown(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{DecodeError, Hypercall};
    use protocols::vmexit::Gprs;

    fn gprs(rax: u64, rbx: u64, rcx: u64) -> Gprs {
        let mut g = Gprs::default();
        g.regs[0] = rax;
        g.regs[3] = rbx;
        g.regs[1] = rcx;
        g
    }

    #[test]
    fn decodes_the_test_functions_and_refuses_bad_arguments() {
        assert_eq!(Hypercall::decode(&gprs(3, 30, 0)), Ok(Hypercall::ExitCount(30)));
        assert_eq!(Hypercall::decode(&gprs(4, 0, 0)), Ok(Hypercall::InjectNmi));
        assert_eq!(Hypercall::decode(&gprs(5, 1, 99)), Ok(Hypercall::RdtscExiting(Some(99))));
        assert_eq!(Hypercall::decode(&gprs(5, 0, 99)), Ok(Hypercall::RdtscExiting(None)));
        assert_eq!(Hypercall::decode(&gprs(5, 2, 0)), Err(DecodeError::Invalid));
        assert_eq!(Hypercall::decode(&gprs(6, 1 << 40, 0)), Ok(Hypercall::TscOffset(1 << 40)));
        let mut g = gprs(7, 1, 2);
        g.regs[2] = 0x10_0000;
        g.regs[6] = 0x20_0000;
        let want =
            Hypercall::Cr3Targets { exiting: true, count: 2, values: [0x10_0000, 0x20_0000, 0, 0] };
        assert_eq!(Hypercall::decode(&g), Ok(want));
        assert_eq!(Hypercall::decode(&gprs(7, 1, 5)), Err(DecodeError::Invalid));
        let mut g = gprs(8, 1 << 14, 2);
        g.regs[2] = 2;
        let want = Hypercall::ExceptionBitmap { bitmap: 1 << 14, mask: 2, matching: 2 };
        assert_eq!(Hypercall::decode(&g), Ok(want));
        assert_eq!(Hypercall::decode(&gprs(8, 1 << 32, 0)), Err(DecodeError::Invalid));
    }

    #[test]
    fn decodes_the_documented_functions() {
        assert_eq!(Hypercall::decode(&gprs(0, 0x141, 9)), Ok(Hypercall::PutChar(0x41)));
        assert_eq!(Hypercall::decode(&gprs(1, 7, 0)), Ok(Hypercall::Report { test: 7, status: 0 }));
        assert_eq!(Hypercall::decode(&gprs(2, 3, 0)), Ok(Hypercall::Exit(3)));
        assert_eq!(Hypercall::decode(&gprs(9, 0, 0)), Ok(Hypercall::CrashVmm));
        assert_eq!(Hypercall::decode(&gprs(10, 0, 0)), Err(DecodeError::Unknown(10)));
        assert_eq!(Hypercall::decode(&gprs(u64::MAX, 0, 0)), Err(DecodeError::Unknown(u64::MAX)));
    }
}
