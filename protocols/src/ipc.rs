//! The IPC register convention and the message-info word.
//!
//! A short message travels entirely in registers, so the fastpath never touches memory
//! beyond the two TCBs: `rdi` = capability slot (send side) or badge (receive side),
//! `rsi` = [`MsgInfo`], `rdx, r10, r8, r9` = message words 0..3, `r12` = a capability
//! slot to transfer (when `MsgInfo::grant` is set), `r13` = the receiver's slot for an
//! incoming capability.
//!
//! A longer message (up to [`MAX_LEN`] words) continues in the sender's IPC buffer: word
//! `i` (for `i` ≥ [`MSG_REGS`]) is the `u64` at byte offset `8 * (i - MSG_REGS)` of the
//! frame set with `TcbSetIpcBuffer`, and it arrives at the same place in the receiver's
//! IPC buffer. Where either side has no IPC buffer the message is cut to the register
//! words, and the delivered [`MsgInfo`] says so.

/// Message words carried in registers.
pub const MSG_REGS: usize = 4;
/// Longest message, in words: the registers plus [`IPC_BUFFER_WORDS`].
pub const MAX_LEN: usize = 64;
/// Message words carried in the IPC buffer.
pub const IPC_BUFFER_WORDS: usize = MAX_LEN - MSG_REGS;

/// Label, length and flags of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgInfo {
    /// What the message means to its receiver (or the invocation for kernel objects).
    pub label: u64,
    /// Message words used, at most [`MAX_LEN`]; those beyond [`MSG_REGS`] are in the IPC
    /// buffer.
    pub len: u8,
    /// A capability travels with the message.
    pub grant: bool,
}

const LEN_MASK: u64 = 0x7f;
/// The grant flag's bit in the raw word.
pub const GRANT_BIT: u64 = 1 << 7;
const RESERVED: u64 = 0xf00;
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

    /// The label of the `rsi` word `raw`, without checking the rest (for a receiver that
    /// only dispatches on it, from a kernel it trusts).
    pub const fn raw_label(raw: u64) -> u64 {
        raw >> LABEL_SHIFT
    }

    /// Decode `rsi`; `None` if the length exceeds [`MAX_LEN`] or reserved bits are set.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        let len = raw & LEN_MASK;
        if len > MAX_LEN as u64 || raw & RESERVED != 0 {
            return None;
        }
        Some(Self { label: raw >> LABEL_SHIFT, len: len as u8, grant: raw & GRANT_BIT != 0 })
    }

    /// Decode `rsi` if it describes a message that fits the registers and carries no
    /// capability (the IPC fastpath's case): one mask test where [`Self::from_raw`] needs
    /// several.
    #[inline(always)]
    pub const fn short_from_raw(raw: u64) -> Option<Self> {
        // Reserved bits, the grant flag and length bits 6:3 all clear; length ≤ 4.
        let len = raw & 0x7;
        if raw & (RESERVED | GRANT_BIT | (LEN_MASK & !0x7)) != 0 || len > MSG_REGS as u64 {
            return None;
        }
        Some(Self { label: raw >> LABEL_SHIFT, len: len as u8, grant: false })
    }

    /// Whether the message continues in the IPC buffer.
    pub const fn is_long(self) -> bool {
        self.len as usize > MSG_REGS
    }
}

#[cfg(test)]
mod tests {
    use super::{MsgInfo, GRANT_BIT, MAX_LABEL, MAX_LEN};

    #[test]
    fn round_trip_and_rejects() {
        let m = MsgInfo { label: 0xabc, len: 3, grant: true };
        assert_eq!(MsgInfo::from_raw(m.to_raw()), Some(m));
        let top = MsgInfo::new(MAX_LABEL, MAX_LEN as u8);
        assert_eq!(MsgInfo::from_raw(top.to_raw()), Some(top));
        assert!(top.is_long() && !m.is_long());
        assert_eq!(MsgInfo::from_raw(MAX_LEN as u64 + 1), None, "length above MAX_LEN");
        assert_eq!(MsgInfo::from_raw(0x100), None, "reserved bit");
        assert_eq!(
            MsgInfo::from_raw(GRANT_BIT | 2),
            Some(MsgInfo { label: 0, len: 2, grant: true })
        );
    }

    #[test]
    fn short_messages_are_exactly_the_register_only_ones_without_grant() {
        for raw in (0..0x1000u64).chain([0x5000, 0x5004, 0x5005, u64::MAX]) {
            let want = MsgInfo::from_raw(raw).filter(|m| !m.grant && !m.is_long());
            assert_eq!(MsgInfo::short_from_raw(raw), want, "{raw:#x}");
        }
    }
}
