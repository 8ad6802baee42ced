//! The kernel's runtime log shares COM1 with the ring-3 console driver. The kernel makes
//! every port access for the driver, so it sees each character the driver sends and knows
//! when one of the driver's lines is half sent (the driver waits for the UART between
//! chunks, and other threads run meanwhile). A log line that comes then is held, and goes
//! out right after the driver's line ends, so neither cuts into the other. Boot messages
//! and panics never wait for a driver: they go out at once.

use heapless::Vec;
use protocols::console::PORTS;
use protocols::io::PortWidth;

/// Most bytes of log held while a driver's line is open; a line that does not fit goes
/// out at once rather than being lost.
pub const HELD_MAX: usize = 2048;

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
    held: Vec<u8, HELD_MAX>,
}

impl SharedConsole {
    /// Nothing sent, nothing held.
    pub const fn new() -> Self {
        Self { open: false, dlab: false, held: Vec::new() }
    }

    /// A driver wrote `value` to `port`: `true` if that ended its line, so the log held
    /// meanwhile may go out now ([`Self::take_held`]).
    pub fn driver_wrote(&mut self, port: u16, width: PortWidth, value: u32) -> bool {
        if width != PortWidth::Byte {
            return false;
        }
        match port {
            LCR => self.dlab = value & LCR_DLAB != 0,
            THR if !self.dlab => {
                self.open = value != u32::from(b'\n');
                return !self.open && !self.held.is_empty();
            }
            _ => {}
        }
        false
    }

    /// A log line to print: `true` if it is held for later, `false` if it must go out now.
    pub fn hold(&mut self, line: &[u8]) -> bool {
        self.open && self.held.extend_from_slice(line).is_ok()
    }

    /// The log held so far, to go out now.
    pub fn take_held(&mut self) -> Vec<u8, HELD_MAX> {
        core::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::{SharedConsole, HELD_MAX};
    use protocols::io::PortWidth::{Byte, Word};

    fn send(c: &mut SharedConsole, text: &[u8]) -> Vec<bool> {
        text.iter().map(|b| c.driver_wrote(0x3f8, Byte, u32::from(*b))).collect()
    }

    #[test]
    fn a_log_line_waits_for_the_drivers_line_to_end() {
        let mut c = SharedConsole::new();
        assert!(!c.hold(b"kernel: before\n"), "nothing open: print at once");
        send(&mut c, b"TEST PASS ha");
        assert!(c.hold(b"kernel: thread exited\n"));
        assert!(c.hold(b"kernel: again\n"));
        let ended = send(&mut c, b"lf\r\n");
        assert_eq!(ended, [false, false, false, true], "the newline releases the log");
        assert_eq!(&c.take_held()[..], b"kernel: thread exited\nkernel: again\n");
        assert!(!c.hold(b"kernel: after\n"));
    }

    #[test]
    fn only_characters_on_the_shared_port_count() {
        let mut c = SharedConsole::new();
        // Programming the divisor writes the data register with DLAB set.
        c.driver_wrote(0x3fb, Byte, 0x80);
        c.driver_wrote(0x3f8, Byte, 1);
        c.driver_wrote(0x3fb, Byte, 0x03);
        assert!(!c.hold(b"x\n"), "a divisor byte is no character");
        c.driver_wrote(0x2f8, Byte, u32::from(b'a'));
        c.driver_wrote(0x3f8, Word, 0x4141);
        assert!(!c.hold(b"x\n"), "another port, another width");
    }

    #[test]
    fn a_full_hold_lets_lines_through_rather_than_lose_them() {
        let mut c = SharedConsole::new();
        send(&mut c, b"half");
        assert!(c.hold(&[b'k'; HELD_MAX - 1]));
        assert!(!c.hold(b"no room\n"));
        assert_eq!(c.take_held().len(), HELD_MAX - 1);
    }
}
