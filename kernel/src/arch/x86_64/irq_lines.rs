//! Device IRQ lines, wherever they are routed: through the I/O APIC where the kernel
//! started one (acknowledged at the local APIC), else through the 8259s.
//!
//! Either controller is reached through an index and a data register, and its software
//! state (held edges) is shared: one lock serialises them across CPUs. A driver on any
//! CPU acknowledges its line (under the kernel lock) while the boot CPU takes the next
//! interrupt (in its handler, without it). Both run with interrupts off, so the holder
//! is never interrupted by a taker on its own CPU.

use super::{ioapic, lapic, pic};

static CONTROLLER: spin::Mutex<()> = spin::Mutex::new(());

/// Mask line `irq`.
pub fn mask(irq: u8) {
    let _serial = CONTROLLER.lock();
    if ioapic::in_use() {
        ioapic::mask(irq);
    } else {
        pic::mask(irq);
    }
}

/// Unmask line `irq`.
pub fn unmask(irq: u8) {
    let _serial = CONTROLLER.lock();
    if ioapic::in_use() {
        ioapic::unmask(irq);
    } else {
        pic::unmask(irq);
    }
}

/// Acknowledge line `irq`; whether to deliver it (`false` for a spurious 8259 interrupt,
/// or an edge the I/O APIC's path keeps until the driver acknowledges the last one).
pub fn acknowledge(irq: u8) -> bool {
    let _serial = CONTROLLER.lock();
    if ioapic::in_use() {
        lapic::eoi();
        ioapic::fired(irq)
    } else {
        pic::acknowledge(irq)
    }
}
