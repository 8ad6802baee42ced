//! The legacy 8259 PICs: remapped away from the exception vectors and masked, so a stray
//! IRQ can never look like a CPU exception. A line is unmasked only for the PIT tick and
//! for drivers that acknowledge their `IrqHandler`; the kernel masks a driver's line
//! each time it fires.

use super::cpu::{inb, outb};

/// First vector of the master PIC after remapping.
pub const PIC_BASE: u8 = 0x20;

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
/// The master's input the slave is cascaded into.
const CASCADE: u8 = 2;
/// OCW3: the next read of the command port returns the in-service register.
const READ_ISR: u8 = 0x0b;
/// OCW2: non-specific end of interrupt.
const EOI: u8 = 0x20;

/// Remap to vectors 0x20..0x30 and mask every line.
pub fn init_masked() {
    let steps: [(u16, u8); 10] = [
        (MASTER_COMMAND, 0x11),
        (SLAVE_COMMAND, 0x11), // ICW1: init, ICW4 follows
        (MASTER_DATA, PIC_BASE),
        (SLAVE_DATA, PIC_BASE + 8), // ICW2: vector bases
        (MASTER_DATA, 1 << CASCADE),
        (SLAVE_DATA, CASCADE), // ICW3: cascade on IRQ2
        (MASTER_DATA, 0x01),
        (SLAVE_DATA, 0x01), // ICW4: 8086 mode
        (MASTER_DATA, 0xff),
        (SLAVE_DATA, 0xff), // mask all
    ];
    for (port, v) in steps {
        // SAFETY: the PICs belong to the kernel; this is their documented init sequence.
        unsafe { outb(port, v) }
    }
}

/// Acknowledge IRQ `irq` on the PIC(s). Returns `false` for a spurious IRQ 7 or 15 (a
/// request withdrawn before the CPU took it), which must not be acknowledged as one.
pub fn acknowledge(irq: u8) -> bool {
    if irq == 7 || irq == 15 {
        let command = if irq == 7 { MASTER_COMMAND } else { SLAVE_COMMAND };
        // SAFETY: OCW3 and the in-service read only report the PIC's state.
        let in_service = unsafe {
            outb(command, READ_ISR);
            inb(command)
        };
        if in_service & 0x80 == 0 {
            if irq == 15 {
                // The master did take the cascade request.
                // SAFETY: non-specific EOI to the master PIC.
                unsafe { outb(MASTER_COMMAND, EOI) }
            }
            return false;
        }
    }
    if irq >= 8 {
        // SAFETY: non-specific EOI to the slave PIC.
        unsafe { outb(SLAVE_COMMAND, EOI) }
    }
    // SAFETY: non-specific EOI to the master PIC.
    unsafe { outb(MASTER_COMMAND, EOI) }
    true
}

/// The data (mask) port and bit of line `irq`.
fn mask_bit(irq: u8) -> (u16, u8) {
    if irq < 8 {
        (MASTER_DATA, 1 << irq)
    } else {
        (SLAVE_DATA, 1 << (irq & 7))
    }
}

/// Mask line `irq`.
pub fn mask(irq: u8) {
    let (port, bit) = mask_bit(irq);
    // SAFETY: read-modify-write of the PIC's mask register, which the kernel owns.
    unsafe { outb(port, inb(port) | bit) }
}

/// Unmask line `irq` (and the cascade for a slave line).
pub fn unmask(irq: u8) {
    if irq >= 8 {
        unmask(CASCADE);
    }
    let (port, bit) = mask_bit(irq);
    // SAFETY: read-modify-write of the PIC's mask register, which the kernel owns.
    unsafe { outb(port, inb(port) & !bit) }
}
