//! The I/O APIC: an 82093AA-style interrupt router with 24 input pins, as KVM and QEMU
//! model it (version 0x11, so no EOI register: level EOIs arrive by the local APIC's
//! broadcast, [`Ioapic::eoi`]).
//!
//! Devices drive pins with [`Ioapic::set_irq`]; each pin's redirection entry turns its
//! input into interrupt messages, which wait in a bitmask of pins until the VMM takes them
//! with [`Ioapic::take_message`] and raises them at the local APIC. A pin's message is
//! built from its entry when it is taken, not when it is raised (KVM, too, reads the entry
//! at delivery); the VMM takes them after every device access, so nothing the guest writes
//! falls in between. A pin raised twice before its message is taken sends one message, as
//! an APIC's IRR bit coalesces them.
//!
//! The level on each pin is the wire as the device drives it; the entry's polarity bit
//! says whether that wire is active low, so the ACPI tables must describe each pin as
//! the VMM drives it (ISA lines active high). An edge-triggered pin sends a message on
//! each rising edge of its input while unmasked; an edge while masked is lost, as on the
//! 82093AA, and unmasking a pin that is already high sends nothing. A level-triggered pin
//! sends one while its input is asserted, unmasked and remote IRR is clear, and sets
//! remote IRR; the EOI of its vector clears remote IRR and, if the input is still
//! asserted, sends again. Every entry write re-checks that condition, so unmasking a
//! pin, or making it level-triggered or inverting its polarity, fires an asserted input.
//!
//! The MMIO window is IOREGSEL (0x00) and IOWIN (0x10), each a 32-bit register. Reads of
//! any width see, byte by byte, the bytes of those registers at their positions; a write
//! of any width changes only the bytes it covers (IOREGSEL's bits 31:8 are reserved, and
//! a partial IOWIN write is merged into the selected register, then written whole).
//! Bytes outside the two registers read all ones and ignore writes; indirect registers
//! that do not exist read all ones (as on KVM) and ignore writes.

mod entry;

pub use entry::{
    DeliveryMode, Message, ACTIVE_LOW, DELIVERY_MODE, DELIVERY_STATUS, DESTINATION, DEST_LOGICAL,
    LEVEL, MASKED, REMOTE_IRR, VECTOR, WRITABLE,
};

use crate::bus::BusDevice;
use entry::Entry;

/// Where firmware and the ACPI tables put the I/O APIC.
pub const DEFAULT_BASE: u64 = protocols::devices::IOAPIC_BASE;
/// The MMIO range the VMM maps: one page (only its first 20 bytes decode).
pub const MMIO_SIZE: u64 = protocols::devices::MMIO_PAGE;
/// Input pins, so redirection entries.
pub const PINS: usize = PIN_COUNT as usize;
const PIN_COUNT: u8 = 24;
/// The version register: version 0x11 in bits 7:0, the highest redirection entry (23)
/// in bits 23:16.
pub const VERSION: u32 = 0x0017_0011;
/// The ID register's writable bits (27:24).
pub const ID_MASK: u32 = 0x0f00_0000;

/// The two MMIO registers, as offsets from the base.
pub mod offset {
    /// IOREGSEL: selects the indirect register (bits 7:0).
    pub const IOREGSEL: u64 = 0x00;
    /// IOWIN: the selected indirect register.
    pub const IOWIN: u64 = 0x10;
}

/// Indirect register indices, as written to IOREGSEL.
pub mod reg {
    /// The ID register: the APIC ID in bits 27:24.
    pub const ID: u8 = 0x00;
    /// The version register ([`super::VERSION`]), read-only.
    pub const VERSION: u8 = 0x01;
    /// The arbitration ID, read-only: it reads as the ID.
    pub const ARBITRATION: u8 = 0x02;
    /// The low half of redirection entry 0; entry `n` is at `0x10 + 2n` (low) and
    /// `0x11 + 2n` (high).
    pub const REDIRECTION: u8 = 0x10;
}

/// `1 << pin` for a pin that exists.
fn pin_bit(pin: u8) -> Option<u32> {
    (pin < PIN_COUNT).then(|| 1u32 << pin)
}

/// The I/O APIC.
#[derive(Clone, Debug)]
pub struct Ioapic {
    /// The APIC ID (bits 3:0).
    id: u8,
    ioregsel: u8,
    entries: [Entry; PINS],
    /// The wire levels the devices drive, one bit per pin.
    wires: u32,
    /// Pins with a message waiting to be taken.
    pending: u32,
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Ioapic {
    /// An I/O APIC after reset: ID 0, every entry masked, every wire low.
    pub const fn new() -> Self {
        Self { id: 0, ioregsel: 0, entries: [Entry::RESET; PINS], wires: 0, pending: 0 }
    }

    /// The APIC ID (0-15).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Redirection entry `pin` as the guest reads it; `None` for a pin that does not exist.
    pub fn entry(&self, pin: u8) -> Option<u64> {
        self.entries.get(usize::from(pin)).map(|e| e.0)
    }

    /// Drive pin `pin`'s wire to `level` (high = true, before the entry's polarity is
    /// applied). Pins that do not exist are ignored.
    pub fn set_irq(&mut self, pin: u8, level: bool) {
        let (Some(bit), Some(&e)) = (pin_bit(pin), self.entries.get(usize::from(pin))) else {
            return;
        };
        let was = e.asserted(self.wires & bit != 0);
        if level {
            self.wires |= bit;
        } else {
            self.wires &= !bit;
        }
        if e.level() {
            self.service_level(pin);
        } else if !was && e.asserted(level) && !e.masked() {
            self.pending |= bit;
        }
    }

    /// The local APIC's EOI broadcast of level-triggered `vector`: every level-triggered
    /// entry with that vector has its remote IRR cleared, and sends again if its input is
    /// still asserted and it is unmasked.
    pub fn eoi(&mut self, vector: u8) {
        for pin in 0..PIN_COUNT {
            let Some(e) = self.entries.get_mut(usize::from(pin)) else { continue };
            if e.level() && e.vector() == vector {
                *e = e.with_remote_irr(false);
                self.service_level(pin);
            }
        }
    }

    /// Whether a message is waiting for [`Ioapic::take_message`].
    pub fn has_message(&self) -> bool {
        self.pending != 0
    }

    /// The next waiting message, lowest pin first, built from the pin's entry as it is now.
    pub fn take_message(&mut self) -> Option<Message> {
        let pin = u8::try_from(self.pending.trailing_zeros()).ok()?;
        let bit = pin_bit(pin)?;
        self.pending &= !bit;
        self.entries.get(usize::from(pin)).map(|e| e.message(pin))
    }

    /// A level-triggered pin whose input is asserted, unmasked and without remote IRR
    /// sends a message and sets remote IRR. Anything else is left alone.
    fn service_level(&mut self, pin: u8) {
        let Some(bit) = pin_bit(pin) else { return };
        let wire = self.wires & bit != 0;
        let Some(e) = self.entries.get_mut(usize::from(pin)) else { return };
        if e.level() && e.asserted(wire) && !e.masked() && !e.remote_irr() {
            *e = e.with_remote_irr(true);
            self.pending |= bit;
        }
    }

    /// The redirection entry and half (high = true) that indirect register `index` names.
    fn redirection(index: u8) -> Option<(u8, bool)> {
        let n = index.checked_sub(reg::REDIRECTION)?;
        let pin = n >> 1;
        (pin < PIN_COUNT).then_some((pin, n & 1 != 0))
    }

    /// Indirect register `index` as IOWIN reads it.
    fn read_register(&self, index: u8) -> u32 {
        match index {
            reg::ID | reg::ARBITRATION => u32::from(self.id) << 24,
            reg::VERSION => VERSION,
            _ => Self::redirection(index)
                .and_then(|(pin, high)| Some(self.entries.get(usize::from(pin))?.half(high)))
                .unwrap_or(u32::MAX),
        }
    }

    /// An IOWIN write of `value` to indirect register `index`.
    fn write_register(&mut self, index: u8, value: u32) {
        if index == reg::ID {
            self.id = ((value & ID_MASK) >> 24) as u8;
            return;
        }
        let Some((pin, high)) = Self::redirection(index) else { return };
        if let Some(e) = self.entries.get_mut(usize::from(pin)) {
            *e = e.written(high, value);
            self.service_level(pin);
        }
    }
}

impl BusDevice for Ioapic {
    /// Byte by byte: IOREGSEL's bytes at 0x00-0x03, the selected register's at
    /// 0x10-0x13, all ones elsewhere. Reads have no side effects.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let select = u32::from(self.ioregsel).to_le_bytes();
        let window = self.read_register(self.ioregsel).to_le_bytes();
        // `None` past the top of the address space, where nothing decodes.
        let mut at = Some(offset);
        for b in data.iter_mut() {
            *b = match at {
                Some(a @ 0x00..=0x03) => select.get((a & 3) as usize).copied(),
                Some(a @ 0x10..=0x13) => window.get((a & 3) as usize).copied(),
                _ => None,
            }
            .unwrap_or(0xff);
            at = at.and_then(|a| a.checked_add(1));
        }
    }

    /// Byte by byte, in address order: offset 0x00 sets IOREGSEL; bytes at 0x10-0x13 are
    /// merged into the selected register, which is written once after the access (so a
    /// 4-byte write is one register write, as the datasheet wants). Other bytes are
    /// dropped.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut window: Option<[u8; 4]> = None;
        let mut at = Some(offset);
        for &b in data {
            match at {
                Some(offset::IOREGSEL) => self.ioregsel = b,
                Some(a @ 0x10..=0x13) => {
                    let w = window
                        .get_or_insert_with(|| self.read_register(self.ioregsel).to_le_bytes());
                    if let Some(slot) = w.get_mut((a & 3) as usize) {
                        *slot = b;
                    }
                }
                _ => {}
            }
            at = at.and_then(|a| a.checked_add(1));
        }
        if let Some(w) = window {
            self.write_register(self.ioregsel, u32::from_le_bytes(w));
        }
    }
}

#[cfg(test)]
mod tests;
