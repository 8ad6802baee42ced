//! The 8254 PIT as the scheduling tick where there is no local APIC timer (channel 0,
//! rate generator, IRQ 0), and channel 2 as the reference interval where the ACPI tables
//! name no PM timer.

use super::cpu::{inb, outb, rdtsc};
use super::reference;

/// The PIT's input clock.
pub const HZ: u64 = 1_193_182;
/// Scheduling ticks per second.
pub const TICK_HZ: u32 = 100;
/// PIT counts in 10 ms: the calibration window.
pub const COUNTS_10MS: u128 = 11_932;

/// Run 10 ms of PIT channel 2 (gated, speaker off), calling `open` as the window opens;
/// the TSC ticks across it, or `None` if the PIT never counted down (the loop is bounded
/// so such a PIT cannot hang the boot).
pub fn window_10ms(open: impl FnOnce()) -> Option<u64> {
    // SAFETY: port 0x61 and PIT channel 2 belong to the kernel (no capability covers the
    // PIT); the speaker stays disconnected.
    unsafe {
        outb(0x61, (inb(0x61) & 0xfd) | 0x01);
        outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0
        outb(0x42, COUNTS_10MS as u8);
        outb(0x42, (COUNTS_10MS >> 8) as u8);
        let gate = inb(0x61) & 0xfe;
        outb(0x61, gate);
        outb(0x61, gate | 1);
    }
    open();
    let start = rdtsc();
    for _ in 0..100_000_000u32 {
        // SAFETY: reading port 0x61 has no side effects.
        if unsafe { inb(0x61) } & 0x20 != 0 {
            return Some(rdtsc().wrapping_sub(start));
        }
    }
    None
}

/// Start the tick and unmask IRQ 0 (every other PIC line stays masked). Without a local
/// APIC timer nothing has measured the TSC yet: one window does.
pub fn start() {
    if reference::tsc_hz() == 0 {
        reference::window_10ms(|| {});
    }
    let divisor = (HZ / u64::from(TICK_HZ)) as u16;
    // SAFETY: the PIT and the PIC mask register belong to the kernel.
    unsafe {
        outb(0x43, 0x34); // channel 0, lobyte/hibyte, mode 2
        outb(0x40, divisor as u8);
        outb(0x40, (divisor >> 8) as u8);
        outb(0x21, 0xfe);
    }
}
