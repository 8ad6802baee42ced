//! Device IRQ lines, wherever they are routed: through the I/O APIC where the kernel
//! started one (acknowledged at the local APIC), else through the 8259s.

use super::{ioapic, lapic, pic};

/// Mask line `irq`.
pub fn mask(irq: u8) {
    if ioapic::in_use() {
        ioapic::mask(irq);
    } else {
        pic::mask(irq);
    }
}

/// Unmask line `irq`.
pub fn unmask(irq: u8) {
    if ioapic::in_use() {
        ioapic::unmask(irq);
    } else {
        pic::unmask(irq);
    }
}

/// Acknowledge line `irq`; whether to deliver it (`false` for a spurious 8259 interrupt,
/// or an edge the I/O APIC's path keeps until the driver acknowledges the last one).
pub fn acknowledge(irq: u8) -> bool {
    if ioapic::in_use() {
        lapic::eoi();
        ioapic::fired(irq)
    } else {
        pic::acknowledge(irq)
    }
}
