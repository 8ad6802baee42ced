//! The redirection-table entry (82093AA datasheet, section 3.2.4): its fields, which bits
//! a guest write may change, and the interrupt message an entry describes.
//!
//! An entry is kept as the 64-bit value the guest reads, so the register path is a plain
//! read; the accessors below are the only place that knows the bit positions.

use crate::devices::lapic::Trigger;

/// Bits 7:0: the interrupt vector.
pub const VECTOR: u64 = 0xff;
/// Bits 10:8: the delivery mode ([`DeliveryMode`]).
pub const DELIVERY_MODE: u64 = 0x700;
/// Bit 11: logical destination mode (clear: physical).
pub const DEST_LOGICAL: u64 = 1 << 11;
/// Bit 12: delivery status, read-only. Delivery is instant here, so it always reads 0.
pub const DELIVERY_STATUS: u64 = 1 << 12;
/// Bit 13: the input is active low (clear: active high).
pub const ACTIVE_LOW: u64 = 1 << 13;
/// Bit 14: remote IRR, read-only: a level-triggered interrupt was accepted and its EOI
/// has not arrived.
pub const REMOTE_IRR: u64 = 1 << 14;
/// Bit 15: level-triggered (clear: edge-triggered).
pub const LEVEL: u64 = 1 << 15;
/// Bit 16: masked. Set in every entry at reset.
pub const MASKED: u64 = 1 << 16;
/// Bits 63:56: the destination (an APIC ID, or a logical destination set).
pub const DESTINATION: u64 = 0xff00_0000_0000_0000;
/// The bits a guest write changes. Delivery status and remote IRR are the device's;
/// bits 55:17 are reserved and read 0 (KVM stores them; no guest relies on that).
pub const WRITABLE: u64 =
    DESTINATION | MASKED | LEVEL | ACTIVE_LOW | DEST_LOGICAL | DELIVERY_MODE | VECTOR;

/// How the local APIC handles the message (entry bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000: the vector, to every destination.
    Fixed,
    /// 001: the vector, to the lowest-priority destination.
    LowestPriority,
    /// 010: a system-management interrupt (the vector is ignored).
    Smi,
    /// 100: an NMI (the vector is ignored).
    Nmi,
    /// 101: INIT (the vector is ignored).
    Init,
    /// 111: the vector comes from an external 8259 (its INTA cycle).
    ExtInt,
    /// 011 or 110: reserved encodings, carried as written for the VMM to drop.
    Reserved(u8),
}

impl DeliveryMode {
    /// The mode encoded in the low three bits of `bits`.
    pub fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            7 => Self::ExtInt,
            other => Self::Reserved(other),
        }
    }

    /// The three-bit encoding.
    pub fn bits(self) -> u8 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::ExtInt => 7,
            Self::Reserved(bits) => bits & 7,
        }
    }
}

/// One interrupt message, as the IOAPIC would send it on the APIC bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// The input pin that raised it.
    pub pin: u8,
    /// The vector (meaningless for SMI, NMI and INIT).
    pub vector: u8,
    /// The delivery mode.
    pub delivery: DeliveryMode,
    /// The trigger mode: a level-triggered vector's EOI must come back by
    /// [`super::Ioapic::eoi`].
    pub trigger: Trigger,
    /// Logical destination mode (else physical).
    pub logical: bool,
    /// The destination: an APIC ID in physical mode, a logical set in logical mode.
    pub destination: u8,
}

/// A redirection-table entry as the guest reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry(pub(super) u64);

impl Entry {
    /// The reset value: masked, everything else 0.
    pub(super) const RESET: Self = Self(MASKED);

    fn has(self, bit: u64) -> bool {
        self.0 & bit != 0
    }

    pub(super) fn masked(self) -> bool {
        self.has(MASKED)
    }

    pub(super) fn level(self) -> bool {
        self.has(LEVEL)
    }

    pub(super) fn active_low(self) -> bool {
        self.has(ACTIVE_LOW)
    }

    pub(super) fn remote_irr(self) -> bool {
        self.has(REMOTE_IRR)
    }

    pub(super) fn vector(self) -> u8 {
        self.0 as u8
    }

    /// The entry with remote IRR set or cleared.
    pub(super) fn with_remote_irr(self, on: bool) -> Self {
        Self(if on { self.0 | REMOTE_IRR } else { self.0 & !REMOTE_IRR })
    }

    /// Whether the pin's input counts as asserted, given the wire's level as the device
    /// drives it: the polarity bit inverts it.
    pub(super) fn asserted(self, wire: bool) -> bool {
        wire != self.active_low()
    }

    /// The upper (`high`) or lower 32 bits, as IOWIN reads them.
    pub(super) fn half(self, high: bool) -> u32 {
        if high {
            (self.0 >> 32) as u32
        } else {
            self.0 as u32
        }
    }

    /// The entry after a guest writes `value` to one half: the writable bits change, the
    /// read-only ones stay. An edge-triggered entry has no remote IRR: Linux and Xen
    /// switch an entry to edge and back to clear a stuck one, which KVM honours too.
    pub(super) fn written(self, high: bool, value: u32) -> Self {
        let (shift, half_mask) = if high { (32, !0u64 << 32) } else { (0, u64::from(u32::MAX)) };
        let writable = WRITABLE & half_mask;
        let new = (self.0 & !writable) | ((u64::from(value) << shift) & writable);
        let entry = Self(new);
        if entry.level() {
            entry
        } else {
            entry.with_remote_irr(false)
        }
    }

    /// The message this entry sends for `pin`.
    pub(super) fn message(self, pin: u8) -> Message {
        Message {
            pin,
            vector: self.vector(),
            delivery: DeliveryMode::from_bits((self.0 >> 8) as u8),
            trigger: if self.level() { Trigger::Level } else { Trigger::Edge },
            logical: self.has(DEST_LOGICAL),
            destination: (self.0 >> 56) as u8,
        }
    }
}
