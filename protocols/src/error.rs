//! Error codes every syscall returns in `rax` (0 is success).

/// A syscall failure. The numbers are ABI.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `rax` named no syscall.
    InvalidSyscall = 1,
    /// An argument is out of range or malformed.
    InvalidArgument = 2,
    /// A buffer is not entirely mapped, user-accessible memory with the needed access.
    BadUserPointer = 3,
    /// The caller lacks the authority for this operation.
    NotPermitted = 4,
    /// The capability slot is empty or out of range.
    InvalidCapability = 5,
    /// The capability names an object of another type.
    WrongType = 6,
    /// The capability lacks a right the operation needs.
    InsufficientRights = 7,
    /// The Untyped capability has no room left for the request.
    OutOfMemory = 8,
    /// The hardware cannot do this (for example VT-x is absent).
    NotSupported = 9,
    /// A non-blocking receive found no message.
    WouldBlock = 10,
    /// The object the thread waited on was destroyed.
    ObjectDeleted = 11,
    /// A VMCS-write batch was refused (`rdx` = `BatchError` code, `r10` = field).
    BatchRejected = 12,
    /// The resource is taken: an IRQ line whose handler capability already exists, a
    /// Reply object that holds a reply already.
    InUse = 13,
    /// `VCpuStart` refused: the initial VMCS fails a check (`rdx` = `StartError` code,
    /// `r10` = the field's encoding or the guest mode, `r8` = the control bits).
    StartRefused = 14,
}

impl Error {
    /// Every variant, in ABI order.
    pub const ALL: [Self; 14] = [
        Self::InvalidSyscall,
        Self::InvalidArgument,
        Self::BadUserPointer,
        Self::NotPermitted,
        Self::InvalidCapability,
        Self::WrongType,
        Self::InsufficientRights,
        Self::OutOfMemory,
        Self::NotSupported,
        Self::WouldBlock,
        Self::ObjectDeleted,
        Self::BatchRejected,
        Self::InUse,
        Self::StartRefused,
    ];

    /// Decode a nonzero `rax`; `None` for 0 (success) and unknown codes.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|e| *e as u64 == raw)
    }

    /// A short, stable name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::InvalidSyscall => "invalid syscall",
            Self::InvalidArgument => "invalid argument",
            Self::BadUserPointer => "bad user pointer",
            Self::NotPermitted => "not permitted",
            Self::InvalidCapability => "invalid capability",
            Self::WrongType => "wrong object type",
            Self::InsufficientRights => "insufficient rights",
            Self::OutOfMemory => "out of memory",
            Self::NotSupported => "not supported",
            Self::WouldBlock => "would block",
            Self::ObjectDeleted => "object deleted",
            Self::BatchRejected => "VMCS-write batch rejected",
            Self::InUse => "in use",
            Self::StartRefused => "VCpu start refused",
        }
    }
}

/// Turn a raw `rax` into a result (0 = `Ok`). An unknown code stays visible as
/// `InvalidArgument` would hide it, so it is returned raw.
pub fn check(raw: u64) -> Result<(), RawError> {
    if raw == 0 {
        Ok(())
    } else {
        Err(RawError(raw))
    }
}

/// A nonzero status word as returned by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawError(pub u64);

impl RawError {
    /// The typed error, if the code is one this ABI knows.
    pub fn error(self) -> Option<Error> {
        Error::from_raw(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{check, Error, RawError};

    #[test]
    fn codes_are_unique_and_round_trip() {
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(*e as u64, i as u64 + 1, "codes are dense and start at 1");
            assert_eq!(Error::from_raw(*e as u64), Some(*e));
        }
        assert_eq!(Error::from_raw(0), None);
        assert_eq!(Error::from_raw(1000), None);
    }

    #[test]
    fn check_maps_zero_to_ok() {
        assert_eq!(check(0), Ok(()));
        assert_eq!(check(3).unwrap_err().error(), Some(Error::BadUserPointer));
        assert_eq!(check(77), Err(RawError(77)));
    }
}
