//! LINT0 and LINT1, as a PC wires them: LINT0 to the 8259's INTR, LINT1 to NMI. In
//! virtual-wire mode (LINT0 ExtINT) the 8259's vector bypasses the APIC's priority; a
//! hardware-disabled APIC passes both pins straight through to the CPU.

use super::registers::{
    Lvt, LVT_LEVEL, LVT_MASKED, LVT_REMOTE_IRR, MODE_EXTINT, MODE_FIXED, MODE_NMI,
};
use super::{Lapic, Trigger};

/// One of the two local interrupt pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintPin {
    /// LINT0: the 8259's INTR on a PC.
    Lint0,
    /// LINT1: the NMI line on a PC.
    Lint1,
}

/// What the VMM should do after a LINT pin changed ([`Lapic::lint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintAction {
    /// Nothing: masked, no edge, or a mode not modelled (SMI, INIT).
    Nothing,
    /// ExtINT: take the vector from the 8259 (an INTA cycle), bypassing priority.
    ExtInt,
    /// Inject an NMI.
    Nmi,
    /// The vector was raised in IRR; inject by priority as usual.
    Fixed(u8),
}

impl Lapic {
    /// Whether the 8259's INTR reaches the CPU: the APIC is hardware-disabled (INTR
    /// then goes straight to the CPU), or LINT0 is unmasked in ExtINT mode.
    pub fn ext_int_enabled(&self) -> bool {
        let lvt = self.lvt_value(Lvt::Lint0);
        !self.hw_enabled() || (lvt & LVT_MASKED == 0 && (lvt >> 8) & 7 == MODE_EXTINT)
    }

    /// Drive a LINT pin to `level`. A hardware-disabled APIC passes LINT0 through as
    /// INTR (while high) and LINT1 as NMI (on a rising edge). Otherwise the pin's LVT
    /// decides: ExtINT while high; NMI on a rising edge; fixed on a rising edge, or for
    /// a level-triggered entry while high and remote IRR is clear (set until the EOI).
    pub fn lint(&mut self, pin: LintPin, level: bool) -> LintAction {
        let (slot, lvt_id) = match pin {
            LintPin::Lint0 => (0usize, Lvt::Lint0),
            LintPin::Lint1 => (1usize, Lvt::Lint1),
        };
        let Some(last) = self.lint_levels.get_mut(slot) else { return LintAction::Nothing };
        let rising = level && !*last;
        *last = level;
        if !self.hw_enabled() {
            return match pin {
                LintPin::Lint0 if level => LintAction::ExtInt,
                LintPin::Lint1 if rising => LintAction::Nmi,
                _ => LintAction::Nothing,
            };
        }
        let lvt = self.lvt_value(lvt_id);
        if lvt & LVT_MASKED != 0 || !level {
            return LintAction::Nothing;
        }
        match (lvt >> 8) & 7 {
            MODE_EXTINT => LintAction::ExtInt,
            MODE_NMI if rising => LintAction::Nmi,
            MODE_FIXED => {
                let vector = lvt as u8;
                if lvt & LVT_LEVEL != 0 {
                    if lvt & LVT_REMOTE_IRR != 0 || self.raise(vector, Trigger::Level).is_err() {
                        return LintAction::Nothing;
                    }
                    self.set_lvt_bits(lvt_id, LVT_REMOTE_IRR, true);
                    LintAction::Fixed(vector)
                } else if rising && self.raise(vector, Trigger::Edge).is_ok() {
                    LintAction::Fixed(vector)
                } else {
                    LintAction::Nothing
                }
            }
            _ => LintAction::Nothing,
        }
    }
}
