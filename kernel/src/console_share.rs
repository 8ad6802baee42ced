//! The kernel shares COM1 with the ring-3 console driver only at the two ends of the
//! machine's life: its boot log comes before any driver runs, and at run time it prints
//! nothing (what happens to threads and vCPUs reaches user space as messages and errors).
//! Its closing lines (a panic, "no runnable thread left", the shutdown report) may come
//! while one of the driver's lines is half sent, since the driver waits for the UART
//! between chunks. The kernel makes every port access for the driver, so it sees each
//! character and knows: it ends that line first, so its own start on a line of their own.
//! The rest of the driver's line is never sent; the machine stops.

use protocols::console::PORTS;
use protocols::io::PortWidth;

const THR: u16 = PORTS.0;
const LCR: u16 = PORTS.0 + 3;
/// Line control: the divisor latch is mapped over the data register.
const LCR_DLAB: u32 = 0x80;

/// What the kernel knows about the shared UART's output.
#[derive(Default)]
pub struct SharedConsole {
    /// A driver's line is half sent.
    open: bool,
    /// The divisor latch is selected: data-register writes are not characters.
    dlab: bool,
}

impl SharedConsole {
    /// Nothing sent.
    pub const fn new() -> Self {
        Self { open: false, dlab: false }
    }

    /// A driver wrote `value` to `port`.
    pub fn driver_wrote(&mut self, port: u16, width: PortWidth, value: u32) {
        if width != PortWidth::Byte {
            return;
        }
        match port {
            LCR => self.dlab = value & LCR_DLAB != 0,
            THR if !self.dlab => self.open = value != u32::from(b'\n'),
            _ => {}
        }
    }

    /// The kernel is about to print its closing lines: what to send first so they start
    /// on a line of their own (a newline if a driver's line is half sent, else nothing).
    pub fn end_driver_line(&mut self) -> &'static [u8] {
        if core::mem::take(&mut self.open) {
            b"\n"
        } else {
            b""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SharedConsole;
    use protocols::io::PortWidth::{Byte, Word};

    fn send(c: &mut SharedConsole, text: &[u8]) {
        for b in text {
            c.driver_wrote(0x3f8, Byte, u32::from(*b));
        }
    }

    #[test]
    fn closing_lines_start_on_a_line_of_their_own() {
        let mut c = SharedConsole::new();
        assert_eq!(c.end_driver_line(), b"", "nothing sent yet");
        send(&mut c, b"TEST PASS ha");
        assert_eq!(c.end_driver_line(), b"\n", "a half-sent line is ended");
        assert_eq!(c.end_driver_line(), b"", "and only once");
        send(&mut c, b"whole line\r\n");
        assert_eq!(c.end_driver_line(), b"", "a line the driver ended needs nothing");
    }

    #[test]
    fn only_characters_on_the_shared_port_count() {
        let mut c = SharedConsole::new();
        // Programming the divisor writes the data register with DLAB set.
        c.driver_wrote(0x3fb, Byte, 0x80);
        c.driver_wrote(0x3f8, Byte, 1);
        c.driver_wrote(0x3fb, Byte, 0x03);
        assert_eq!(c.end_driver_line(), b"", "a divisor byte is no character");
        c.driver_wrote(0x2f8, Byte, u32::from(b'a'));
        c.driver_wrote(0x3f8, Word, 0x4141);
        assert_eq!(c.end_driver_line(), b"", "another port, another width");
        c.driver_wrote(0x3f8, Byte, u32::from(b'a'));
        assert_eq!(c.end_driver_line(), b"\n", "a character once the latch is off");
    }
}
