//! The kernel's own COM1 output, used for the boot log and panics only.

use super::cpu::{inb, outb};
use core::fmt;

const COM1: u16 = 0x3f8;

/// COM1 as a `fmt::Write` sink. Stateless, so a panic can always make a fresh one.
pub struct Serial;

impl Serial {
    /// Program 115200 8N1 with FIFOs, interrupts off.
    pub fn init() {
        for (off, v) in
            [(1, 0x00), (3, 0x80), (0, 0x01), (1, 0x00), (3, 0x03), (2, 0xc7), (4, 0x03)]
        {
            // SAFETY: COM1 belongs to the kernel until a console driver is given its ports.
            unsafe { outb(COM1 + off, v) }
        }
    }

    fn put(byte: u8) {
        // Bounded wait: a missing UART must not hang the kernel.
        for _ in 0..100_000 {
            // SAFETY: reading COM1's line-status register has no side effects.
            if unsafe { inb(COM1 + 5) } & 0x20 != 0 {
                break;
            }
        }
        // SAFETY: writing the transmit register of COM1, which the kernel owns.
        unsafe { outb(COM1, byte) }
    }

    /// Write raw bytes, turning `\n` into `\r\n`.
    pub fn write_bytes(bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                Self::put(b'\r');
            }
            Self::put(b);
        }
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Self::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Print to the kernel log.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::arch::x86_64::serial::Serial, $($arg)*);
    }};
}

/// Print a line to the kernel log.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::arch::x86_64::serial::Serial, $($arg)*);
    }};
}
