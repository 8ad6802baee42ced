//! The 8254 PIT as the scheduling tick (channel 0, rate generator, IRQ 0).

use super::cpu::outb;

const PIT_HZ: u32 = 1_193_182;
/// Scheduling ticks per second.
pub const TICK_HZ: u32 = 100;

/// Start the tick and unmask IRQ 0 (every other PIC line stays masked).
pub fn start() {
    let divisor = (PIT_HZ / TICK_HZ) as u16;
    // SAFETY: the PIT and the PIC mask register belong to the kernel.
    unsafe {
        outb(0x43, 0x34); // channel 0, lobyte/hibyte, mode 2
        outb(0x40, divisor as u8);
        outb(0x40, (divisor >> 8) as u8);
        outb(0x21, 0xfe);
    }
}
