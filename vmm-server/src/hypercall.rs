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
//!
//! Status: [`STATUS_OK`], [`STATUS_UNKNOWN`] for an unknown function, [`STATUS_DENIED`]
//! for a call from CPL > 0. The numbers belong in `protocols/` once guests other than the
//! test payloads use them; they are fixed here until then and only ever appended.

use protocols::vmexit::Gprs;

/// RAX: write one byte to the console.
pub const PUTCHAR: u64 = 0;
/// RAX: report one test result.
pub const REPORT: u64 = 1;
/// RAX: stop the VM with an exit code.
pub const EXIT: u64 = 2;

/// Returned in RAX: done.
pub const STATUS_OK: u64 = 0;
/// Returned in RAX: no such function (-1).
pub const STATUS_UNKNOWN: u64 = u64::MAX;
/// Returned in RAX: the caller is not at CPL 0 (-2).
pub const STATUS_DENIED: u64 = u64::MAX - 1;

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
}

impl Hypercall {
    /// Decode the call in `gprs`; `Err(function)` for an unknown function number.
    pub fn decode(gprs: &Gprs) -> Result<Self, u64> {
        let reg = |r: u8| gprs.get(r).unwrap_or(0);
        match reg(Gprs::RAX) {
            PUTCHAR => Ok(Self::PutChar(reg(Gprs::RBX) as u8)),
            REPORT => Ok(Self::Report { test: reg(Gprs::RBX), status: reg(Gprs::RCX) }),
            EXIT => Ok(Self::Exit(reg(Gprs::RBX))),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Hypercall;
    use protocols::vmexit::Gprs;

    fn gprs(rax: u64, rbx: u64, rcx: u64) -> Gprs {
        let mut g = Gprs::default();
        g.regs[0] = rax;
        g.regs[3] = rbx;
        g.regs[1] = rcx;
        g
    }

    #[test]
    fn decodes_the_documented_functions() {
        assert_eq!(Hypercall::decode(&gprs(0, 0x141, 9)), Ok(Hypercall::PutChar(0x41)));
        assert_eq!(Hypercall::decode(&gprs(1, 7, 0)), Ok(Hypercall::Report { test: 7, status: 0 }));
        assert_eq!(Hypercall::decode(&gprs(2, 3, 0)), Ok(Hypercall::Exit(3)));
        assert_eq!(Hypercall::decode(&gprs(3, 0, 0)), Err(3));
        assert_eq!(Hypercall::decode(&gprs(u64::MAX, 0, 0)), Err(u64::MAX));
    }
}
