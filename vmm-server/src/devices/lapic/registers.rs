//! The register file's layout: which register an xAPIC offset / 16 or an x2APIC MSR
//! index names, which bits of each a write keeps, and the 256-bit vector sets that ISR,
//! TMR and IRR are.

/// SVR bit 8: the APIC is software-enabled.
pub(super) const SVR_ENABLE: u32 = 1 << 8;
/// SVR bits a write keeps: the vector, APIC enable, focus processor checking.
pub(super) const SVR_MASK: u32 = 0x3ff;
/// LVT bit 16: masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT bit 15: level-triggered (LINT0/LINT1 only).
pub(super) const LVT_LEVEL: u32 = 1 << 15;
/// LVT bit 14: remote IRR (LINT0/LINT1 only, read-only).
pub(super) const LVT_REMOTE_IRR: u32 = 1 << 14;
/// LVT bit 12: delivery status (read-only; always idle here).
pub(super) const LVT_DELIVERY_STATUS: u32 = 1 << 12;
/// ICR low bits that are the guest's (bit 12, delivery status, reads 0).
pub(super) const ICR_LOW_MASK: u32 = 0x000c_cfff;
/// x2APIC ICR bits that are reserved (and #GP when set, SDM 11.12.1.3): 13, 16-17,
/// 20-31; bit 12 (delivery status, gone in x2APIC) is ignored, as KVM does.
pub(super) const X2APIC_ICR_RESERVED: u32 = 0xfff3_2000;

/// The current-count register's index (xAPIC offset / 16, x2APIC MSR - 0x800).
pub(super) const CURRENT_COUNT_INDEX: u32 = 0x39;

/// Delivery modes (LVT and ICR bits 10:8).
pub(super) const MODE_FIXED: u32 = 0;
pub(super) const MODE_LOWEST: u32 = 1;
pub(super) const MODE_NMI: u32 = 4;
pub(super) const MODE_EXTINT: u32 = 7;

/// The 256 bits of ISR, TMR or IRR, as eight 32-bit registers (vector 32i + j is bit j
/// of register i), with a summary of the registers that are not zero, so that "is any
/// set" and "which is highest" (asked on every exit, for IRR) are a test and a
/// leading-zeros count rather than a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct VectorSet {
    words: [u32; 8],
    /// Bit i: register i is not zero.
    nonzero: u8,
}

impl VectorSet {
    pub(super) fn word(vector: u8) -> (usize, u32) {
        (usize::from(vector >> 5), 1u32 << (vector & 31))
    }

    pub(super) fn set(&mut self, vector: u8) {
        let (i, bit) = Self::word(vector);
        if let Some(w) = self.words.get_mut(i) {
            *w |= bit;
            self.nonzero |= 1 << i;
        }
    }

    pub(super) fn clear(&mut self, vector: u8) {
        let (i, bit) = Self::word(vector);
        if let Some(w) = self.words.get_mut(i) {
            *w &= !bit;
            if *w == 0 {
                self.nonzero &= !(1 << i);
            }
        }
    }

    pub(super) fn contains(&self, vector: u8) -> bool {
        let (i, bit) = Self::word(vector);
        self.words.get(i).is_some_and(|w| w & bit != 0)
    }

    /// Whether no vector is set.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.nonzero == 0
    }

    pub(super) fn highest(&self) -> Option<u8> {
        let i = 7u8.checked_sub(u8::try_from(self.nonzero.leading_zeros()).ok()?)?;
        let w = self.words.get(usize::from(i)).copied()?;
        let bit = 31u8.checked_sub(u8::try_from(w.leading_zeros()).ok()?)?;
        i.checked_mul(32)?.checked_add(bit)
    }

    pub(super) fn register(&self, index: u32) -> u32 {
        usize::try_from(index).ok().and_then(|i| self.words.get(i)).copied().unwrap_or(0)
    }
}

/// The local vector table entries, in register order from CMCI (0x2F0) but with the
/// timer's group (0x320-0x370) after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lvt {
    Cmci = 0,
    Timer = 1,
    Thermal = 2,
    Perf = 3,
    Lint0 = 4,
    Lint1 = 5,
    Error = 6,
}

impl Lvt {
    /// The bits a write keeps (SDM Figure 11-8): vector and mask everywhere, the delivery
    /// mode where there is one, the timer mode, and polarity and trigger on the pins.
    pub(super) const fn writable(self) -> u32 {
        match self {
            Self::Timer => 0x0007_00ff,
            Self::Error => 0x0001_00ff,
            Self::Cmci | Self::Thermal | Self::Perf => 0x0001_07ff,
            Self::Lint0 | Self::Lint1 => 0x0001_a7ff,
        }
    }

    /// The read-only bits: delivery status, and remote IRR on the pins.
    pub(super) const fn read_only(self) -> u32 {
        match self {
            Self::Lint0 | Self::Lint1 => LVT_DELIVERY_STATUS | LVT_REMOTE_IRR,
            _ => LVT_DELIVERY_STATUS,
        }
    }
}

/// A register of the APIC, by its index: xAPIC offset / 16, or x2APIC MSR - 0x800.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reg {
    Id,
    Version,
    Tpr,
    Apr,
    Ppr,
    Eoi,
    Ldr,
    Dfr,
    Svr,
    Isr(u32),
    Tmr(u32),
    Irr(u32),
    Esr,
    Lvt(Lvt),
    IcrLow,
    IcrHigh,
    InitialCount,
    CurrentCount,
    DivideConfig,
    SelfIpi,
}

impl Reg {
    #[inline]
    pub(super) fn from_index(index: u32) -> Option<Self> {
        Some(match index {
            0x02 => Self::Id,
            0x03 => Self::Version,
            0x08 => Self::Tpr,
            0x09 => Self::Apr,
            0x0a => Self::Ppr,
            0x0b => Self::Eoi,
            0x0d => Self::Ldr,
            0x0e => Self::Dfr,
            0x0f => Self::Svr,
            0x10..=0x17 => Self::Isr(index.wrapping_sub(0x10)),
            0x18..=0x1f => Self::Tmr(index.wrapping_sub(0x18)),
            0x20..=0x27 => Self::Irr(index.wrapping_sub(0x20)),
            0x28 => Self::Esr,
            0x2f => Self::Lvt(Lvt::Cmci),
            0x30 => Self::IcrLow,
            0x31 => Self::IcrHigh,
            0x32 => Self::Lvt(Lvt::Timer),
            0x33 => Self::Lvt(Lvt::Thermal),
            0x34 => Self::Lvt(Lvt::Perf),
            0x35 => Self::Lvt(Lvt::Lint0),
            0x36 => Self::Lvt(Lvt::Lint1),
            0x37 => Self::Lvt(Lvt::Error),
            0x38 => Self::InitialCount,
            CURRENT_COUNT_INDEX => Self::CurrentCount,
            0x3e => Self::DivideConfig,
            0x3f => Self::SelfIpi,
            _ => return None,
        })
    }
}
