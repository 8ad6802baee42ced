//! The i8042 keyboard controller, as far as a PC guest needs it: the command byte,
//! self-tests, the output port (A20 and the reset line), the 0xFE "pulse reset" command a
//! guest uses to reboot, and a minimal keyboard that acknowledges commands so Linux's
//! probe finishes quickly. No mouse is attached: bytes sent to the aux device are answered
//! with 0xFE (resend), which drivers read as "no device", rather than timing out.
//!
//! A reset request is latched for the VMM ([`I8042::take_reset_request`]), which stops
//! or restarts the VM: the controller cannot reset a CPU it does not own.

use crate::bus::BusDevice;

/// Offset of the data port (0x60) in the device's window.
pub const DATA: u64 = 0;
/// Offset of the command/status port (0x64) in the device's window.
pub const COMMAND: u64 = 4;

/// Status: output buffer full.
pub const STATUS_OBF: u8 = 0x01;
/// Status: system flag (POST passed).
pub const STATUS_SYS: u8 = 0x04;
/// Status: the last write was to the command port.
pub const STATUS_CMD: u8 = 0x08;
/// Status: keyboard not inhibited.
pub const STATUS_UNLOCKED: u8 = 0x10;
/// Status: the output byte came from the aux device.
pub const STATUS_AUX: u8 = 0x20;

/// Command byte: keyboard interrupt enable.
pub const CB_KBD_INT: u8 = 0x01;
/// Command byte: aux interrupt enable.
pub const CB_AUX_INT: u8 = 0x02;
/// Command byte: system flag.
pub const CB_SYS: u8 = 0x04;
/// Command byte: keyboard disabled.
pub const CB_KBD_DISABLE: u8 = 0x10;
/// Command byte: aux disabled.
pub const CB_AUX_DISABLE: u8 = 0x20;
/// Command byte: scan-code translation.
pub const CB_XLATE: u8 = 0x40;

/// Output port bit 0: the CPU reset line (active low).
pub const OUTPUT_RESET: u8 = 0x01;
/// Output port bit 1: A20 gate.
pub const OUTPUT_A20: u8 = 0x02;

const QUEUE: usize = 8;

/// What the next data-port write means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Keyboard,
    CommandByte,
    OutputPort,
    KbdOutput,
    AuxOutput,
    AuxDevice,
}

/// One queued output byte and whether it came from the aux side.
#[derive(Clone, Copy, Debug, Default)]
struct Out {
    byte: u8,
    aux: bool,
}

/// The controller and its keyboard.
#[derive(Clone, Debug)]
pub struct I8042 {
    command_byte: u8,
    output_port: u8,
    pending: Pending,
    last_was_command: bool,
    queue: [Out; QUEUE],
    head: usize,
    len: usize,
    reset: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    /// The controller as firmware leaves it: keyboard interrupt and translation on, A20
    /// enabled, POST passed.
    pub const fn new() -> Self {
        Self {
            command_byte: CB_KBD_INT | CB_SYS | CB_XLATE,
            output_port: OUTPUT_RESET | OUTPUT_A20,
            pending: Pending::Keyboard,
            last_was_command: false,
            queue: [Out { byte: 0, aux: false }; QUEUE],
            head: 0,
            len: 0,
            reset: false,
        }
    }

    /// Whether the guest asked for a system reset since the last call (clears it).
    pub fn take_reset_request(&mut self) -> bool {
        core::mem::take(&mut self.reset)
    }

    /// The A20 gate as the output port sets it.
    pub fn a20(&self) -> bool {
        self.output_port & OUTPUT_A20 != 0
    }

    /// IRQ 1: a keyboard byte waits and the keyboard interrupt is enabled.
    pub fn irq1_level(&self) -> bool {
        self.front().is_some_and(|o| !o.aux) && self.command_byte & CB_KBD_INT != 0
    }

    /// IRQ 12: an aux byte waits and the aux interrupt is enabled.
    pub fn irq12_level(&self) -> bool {
        self.front().is_some_and(|o| o.aux) && self.command_byte & CB_AUX_INT != 0
    }

    fn front(&self) -> Option<Out> {
        if self.len == 0 {
            None
        } else {
            self.queue.get(self.head).copied()
        }
    }

    /// Queue a byte for the guest; a full queue drops it, as a controller overrun would.
    fn push(&mut self, byte: u8, aux: bool) {
        if self.len >= QUEUE {
            return;
        }
        let tail = self.head.wrapping_add(self.len) % QUEUE;
        if let Some(slot) = self.queue.get_mut(tail) {
            *slot = Out { byte, aux };
            self.len = self.len.wrapping_add(1);
        }
    }

    fn pop(&mut self) -> Option<Out> {
        let out = self.front()?;
        self.head = self.head.wrapping_add(1) % QUEUE;
        self.len = self.len.wrapping_sub(1);
        Some(out)
    }

    /// Read port 0x60.
    pub fn read_data(&mut self) -> u8 {
        // An empty buffer reads as the last byte on real parts; 0 is as good for a guest.
        self.pop().map_or(0, |o| o.byte)
    }

    /// Read port 0x64.
    pub fn read_status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if let Some(o) = self.front() {
            s |= STATUS_OBF;
            if o.aux {
                s |= STATUS_AUX;
            }
        }
        if self.command_byte & CB_SYS != 0 {
            s |= STATUS_SYS;
        }
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        s
    }

    /// Write port 0x64.
    pub fn write_command(&mut self, cmd: u8) {
        self.last_was_command = true;
        self.pending = Pending::Keyboard;
        match cmd {
            0x20 => self.push(self.command_byte, false),
            0x60 => self.pending = Pending::CommandByte,
            0xa7 => self.command_byte |= CB_AUX_DISABLE,
            0xa8 => self.command_byte &= !CB_AUX_DISABLE,
            // Interface tests: 0 means no error.
            0xa9 | 0xab => self.push(0x00, false),
            0xaa => {
                self.command_byte |= CB_SYS;
                self.push(0x55, false);
            }
            0xad => self.command_byte |= CB_KBD_DISABLE,
            0xae => self.command_byte &= !CB_KBD_DISABLE,
            0xd0 => self.push(self.output_port, false),
            0xd1 => self.pending = Pending::OutputPort,
            0xd2 => self.pending = Pending::KbdOutput,
            0xd3 => self.pending = Pending::AuxOutput,
            0xd4 => self.pending = Pending::AuxDevice,
            // Pulse output-port bits whose command bit is 0; bit 0 is the reset line.
            0xf0..=0xff if cmd & 0x01 == 0 => self.reset = true,
            _ => {}
        }
    }

    /// Write port 0x60.
    pub fn write_data(&mut self, byte: u8) {
        self.last_was_command = false;
        let pending = core::mem::replace(&mut self.pending, Pending::Keyboard);
        match pending {
            Pending::CommandByte => self.command_byte = byte,
            Pending::OutputPort => {
                self.output_port = byte;
                if byte & OUTPUT_RESET == 0 {
                    self.reset = true;
                }
            }
            Pending::KbdOutput => self.push(byte, false),
            Pending::AuxOutput => self.push(byte, true),
            // No mouse: "resend" tells the driver nothing answers.
            Pending::AuxDevice => self.push(0xfe, true),
            Pending::Keyboard => self.keyboard_command(byte),
        }
    }

    /// The attached keyboard's answer to a command byte.
    fn keyboard_command(&mut self, byte: u8) {
        match byte {
            // Echo.
            0xee => self.push(0xee, false),
            // Identify: ack, then the MF2 keyboard ID.
            0xf2 => {
                self.push(0xfa, false);
                self.push(0xab, false);
                self.push(0x83, false);
            }
            // Reset: ack, then "self-test passed".
            0xff => {
                self.push(0xfa, false);
                self.push(0xaa, false);
            }
            // Everything else (LEDs, rates, scan-code set, enable, their arguments): ack.
            _ => self.push(0xfa, false),
        }
    }
}

impl BusDevice for I8042 {
    /// Offsets [`DATA`] and [`COMMAND`]; only the first byte of a wider access hits.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            DATA => self.read_data(),
            COMMAND => self.read_status(),
            _ => 0xff,
        };
        data.fill(0xff);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            DATA => self.write_data(value),
            COMMAND => self.write_command(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        CB_AUX_DISABLE, I8042, OUTPUT_A20, STATUS_AUX, STATUS_CMD, STATUS_OBF, STATUS_SYS,
    };

    #[test]
    fn pulse_reset_command_requests_a_reset() {
        let mut k = I8042::new();
        assert!(!k.take_reset_request());
        k.write_command(0xfe);
        assert!(k.take_reset_request());
        assert!(!k.take_reset_request(), "the request is taken once");
        // 0xff pulses nothing.
        k.write_command(0xff);
        assert!(!k.take_reset_request());
    }

    #[test]
    fn output_port_reset_line_and_a20() {
        let mut k = I8042::new();
        assert!(k.a20());
        k.write_command(0xd0);
        assert_eq!(k.read_data() & 0x03, 0x03);
        k.write_command(0xd1);
        k.write_data(0x01); // A20 off, reset inactive
        assert!(!k.a20());
        assert!(!k.take_reset_request());
        k.write_command(0xd1);
        k.write_data(OUTPUT_A20); // reset line driven low
        assert!(k.take_reset_request());
    }

    #[test]
    fn self_test_and_command_byte() {
        let mut k = I8042::new();
        k.write_command(0xaa);
        assert_eq!(k.read_status() & (STATUS_OBF | STATUS_SYS | STATUS_CMD), 0x0d);
        assert_eq!(k.read_data(), 0x55);
        assert_eq!(k.read_status() & STATUS_OBF, 0);
        k.write_command(0x60);
        k.write_data(0x47);
        k.write_command(0x20);
        assert_eq!(k.read_data(), 0x47);
        k.write_command(0xa7);
        k.write_command(0x20);
        assert_eq!(k.read_data() & CB_AUX_DISABLE, CB_AUX_DISABLE);
        k.write_command(0xab);
        assert_eq!(k.read_data(), 0);
    }

    #[test]
    fn keyboard_answers_and_raises_irq1() {
        let mut k = I8042::new();
        k.write_data(0xf2);
        assert!(k.irq1_level());
        assert_eq!([k.read_data(), k.read_data(), k.read_data()], [0xfa, 0xab, 0x83]);
        assert!(!k.irq1_level());
        k.write_data(0xff);
        assert_eq!([k.read_data(), k.read_data()], [0xfa, 0xaa]);
        k.write_data(0xed);
        k.write_data(0x07);
        assert_eq!([k.read_data(), k.read_data()], [0xfa, 0xfa]);
        // With the keyboard interrupt off the byte waits without IRQ 1.
        k.write_command(0x60);
        k.write_data(0);
        k.write_data(0xee);
        assert!(!k.irq1_level());
        assert_eq!(k.read_data(), 0xee);
    }

    #[test]
    fn aux_loopback_and_absent_mouse() {
        let mut k = I8042::new();
        k.write_command(0x60);
        k.write_data(0x03);
        k.write_command(0xd3);
        k.write_data(0x5a);
        assert_eq!(k.read_status() & STATUS_AUX, STATUS_AUX);
        assert!(k.irq12_level() && !k.irq1_level());
        assert_eq!(k.read_data(), 0x5a);
        k.write_command(0xd4);
        k.write_data(0xf2);
        assert_eq!(k.read_data(), 0xfe);
    }

    #[test]
    fn queue_overflow_drops_and_empty_reads_zero() {
        let mut k = I8042::new();
        for _ in 0..20 {
            k.write_data(0xee);
        }
        let mut n = 0;
        while k.read_status() & STATUS_OBF != 0 {
            k.read_data();
            n += 1;
        }
        assert_eq!(n, 8);
        assert_eq!(k.read_data(), 0);
    }
}
