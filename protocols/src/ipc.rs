//! The IPC register convention and the message-info word.
//!
//! A short message travels entirely in registers, so the fastpath never touches memory
//! beyond the two TCBs: `rdi` = capability slot (send side) or badge (receive side),
//! `rsi` = [`MsgInfo`], `rdx, r10, r8, r9` = message words 0..3, `r12` = a capability
//! slot to transfer (when `MsgInfo::grant` is set), `r13` = the receiver's slot for an
//! incoming capability.

/// Message words carried in registers.
pub const MSG_REGS: usize = 4;

/// Label, length and flags of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgInfo {
    /// What the message means to its receiver (or the invocation for kernel objects).
    pub label: u64,
    /// Message words used, at most [`MSG_REGS`].
    pub len: u8,
    /// A capability travels with the message.
    pub grant: bool,
}

const LEN_MASK: u64 = 0x7;
const GRANT_BIT: u64 = 1 << 3;
const LABEL_SHIFT: u32 = 12;
/// Largest label.
pub const MAX_LABEL: u64 = u64::MAX >> LABEL_SHIFT;

impl MsgInfo {
    /// A message with `label` and `len` words.
    pub const fn new(label: u64, len: u8) -> Self {
        Self { label, len, grant: false }
    }

    /// Encode into the `rsi` word.
    pub const fn to_raw(self) -> u64 {
        (self.label << LABEL_SHIFT)
            | (self.len as u64 & LEN_MASK)
            | if self.grant { GRANT_BIT } else { 0 }
    }

    /// Decode `rsi`; `None` if the length exceeds [`MSG_REGS`] or reserved bits are set.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        let len = raw & LEN_MASK;
        if len > MSG_REGS as u64 || raw & 0xff0 != 0 {
            return None;
        }
        Some(Self { label: raw >> LABEL_SHIFT, len: len as u8, grant: raw & GRANT_BIT != 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::{MsgInfo, MAX_LABEL};

    #[test]
    fn round_trip_and_rejects() {
        let m = MsgInfo { label: 0xabc, len: 3, grant: true };
        assert_eq!(MsgInfo::from_raw(m.to_raw()), Some(m));
        let top = MsgInfo::new(MAX_LABEL, 4);
        assert_eq!(MsgInfo::from_raw(top.to_raw()), Some(top));
        assert_eq!(MsgInfo::from_raw(5), None, "length above MSG_REGS");
        assert_eq!(MsgInfo::from_raw(0x10), None, "reserved bit");
    }
}
