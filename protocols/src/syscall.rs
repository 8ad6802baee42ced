//! Syscall numbers and the register convention.
//!
//! Convention (System V-like, `syscall` instruction): `rax` = syscall number, arguments in
//! `rdi, rsi, rdx, r10, r8, r9`; on return `rax` = 0 or an [`crate::error::Error`] code and
//! `rdx` = the first result word. `rcx` and `r11` are clobbered by the instruction itself.

/// A syscall number, as passed in `rax`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// Write bytes to the kernel debug console. `rdi` = user pointer, `rsi` = length
    /// (at most [`DEBUG_WRITE_MAX`]). Errors: `BadUserPointer`, `InvalidArgument`.
    DebugWrite = 0,
    /// End the calling thread. `rdi` = exit code. Does not return.
    ThreadExit = 1,
    /// Stop the machine with a verdict (`rdi` = [`ShutdownStatus`]). Only the root task may
    /// call it. Errors: `NotPermitted`, `InvalidArgument`.
    Shutdown = 2,
    /// Give up the rest of the time slice. Always succeeds.
    Yield = 3,
    /// Send a message on an endpoint (blocking) or signal a notification. `rdi` = slot.
    Send = 4,
    /// Send on an endpoint only if a receiver is waiting; otherwise drop the message.
    NbSend = 5,
    /// Send and wait for the reply (endpoints), or invoke a kernel object. `rdi` = slot.
    Call = 6,
    /// Wait for a message on an endpoint or a signal on a notification. `rdi` = slot.
    Recv = 7,
    /// Reply to the last caller, then wait on the endpoint in `rdi`.
    ReplyRecv = 8,
    /// Like `Recv` on a notification, but never blocks (a poll).
    NbRecv = 9,
    /// Reply to the last caller without waiting afterwards.
    Reply = 10,
}

/// Longest single `DebugWrite`, so the kernel's copy is bounded.
pub const DEBUG_WRITE_MAX: usize = 4096;

impl Syscall {
    /// Decode `rax`; `None` for a number no syscall has.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            0 => Self::DebugWrite,
            1 => Self::ThreadExit,
            2 => Self::Shutdown,
            3 => Self::Yield,
            4 => Self::Send,
            5 => Self::NbSend,
            6 => Self::Call,
            7 => Self::Recv,
            8 => Self::ReplyRecv,
            9 => Self::NbRecv,
            10 => Self::Reply,
            _ => return None,
        })
    }
}

/// The verdict passed to [`Syscall::Shutdown`]; emulators turn it into their exit status.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownStatus {
    /// Everything that was asked of the system worked.
    Pass = 0,
    /// Something failed; the log says what.
    Fail = 1,
}

impl ShutdownStatus {
    /// Decode a raw verdict; `None` for anything else.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            0 => Some(Self::Pass),
            1 => Some(Self::Fail),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ShutdownStatus, Syscall};

    #[test]
    fn numbers_round_trip() {
        for n in 0..11 {
            assert_eq!(Syscall::from_raw(n).map(|s| s as u64), Some(n));
        }
        assert_eq!(Syscall::from_raw(11), None);
        assert_eq!(Syscall::from_raw(u64::MAX), None);
    }

    #[test]
    fn shutdown_status_is_strict() {
        assert_eq!(ShutdownStatus::from_raw(0), Some(ShutdownStatus::Pass));
        assert_eq!(ShutdownStatus::from_raw(1), Some(ShutdownStatus::Fail));
        assert_eq!(ShutdownStatus::from_raw(2), None);
    }
}
