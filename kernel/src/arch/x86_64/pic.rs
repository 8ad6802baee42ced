//! The legacy 8259 PICs: remapped away from the exception vectors and masked, so a stray
//! IRQ can never look like a CPU exception.

use super::cpu::outb;

/// First vector of the master PIC after remapping.
pub const PIC_BASE: u8 = 0x20;

/// Remap to vectors 0x20..0x30 and mask every line.
pub fn init_masked() {
    let steps: [(u16, u8); 10] = [
        (0x20, 0x11),
        (0xa0, 0x11), // ICW1: init, ICW4 follows
        (0x21, PIC_BASE),
        (0xa1, PIC_BASE + 8), // ICW2: vector bases
        (0x21, 0x04),
        (0xa1, 0x02), // ICW3: cascade on IRQ2
        (0x21, 0x01),
        (0xa1, 0x01), // ICW4: 8086 mode
        (0x21, 0xff),
        (0xa1, 0xff), // mask all
    ];
    for (port, v) in steps {
        // SAFETY: the PICs belong to the kernel; this is their documented init sequence.
        unsafe { outb(port, v) }
    }
}

/// Acknowledge an IRQ on the PIC(s).
pub fn eoi(irq: u8) {
    if irq >= 8 {
        // SAFETY: non-specific EOI to the slave PIC.
        unsafe { outb(0xa0, 0x20) }
    }
    // SAFETY: non-specific EOI to the master PIC.
    unsafe { outb(0x20, 0x20) }
}
