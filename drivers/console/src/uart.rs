//! The 16550 UART: programming it, and transmitting paced by its interrupt.
//!
//! The driver hands the transmitter at most [`CHUNK`] bytes, then sleeps until the
//! UART's transmitter-empty interrupt says they are gone, confirmed by the line-status
//! register (an interrupt left over from earlier output does not count). So output is
//! interrupt-driven on every emulator, even one whose UART empties instantly, and a line
//! is fully handed over before its writer is answered.

/// The UART's registers, as offsets from its base port.
pub mod reg {
    /// Transmit holding register (write); divisor low byte with DLAB.
    pub const THR: u16 = 0;
    /// Receive buffer register (read).
    pub const RBR: u16 = 0;
    /// Interrupt enable; divisor high byte with DLAB.
    pub const IER: u16 = 1;
    /// Interrupt identification (read; reading it clears a transmitter-empty interrupt).
    pub const IIR: u16 = 2;
    /// FIFO control (write).
    pub const FCR: u16 = 2;
    /// Line control.
    pub const LCR: u16 = 3;
    /// Modem control.
    pub const MCR: u16 = 4;
    /// Line status.
    pub const LSR: u16 = 5;
}

/// Line status: the transmitter FIFO is empty.
pub const LSR_THR_EMPTY: u8 = 1 << 5;
/// Interrupt enable: transmitter empty.
pub const IER_THR_EMPTY: u8 = 1 << 1;
/// Interrupt enable: received data available (and its character timeout).
pub const IER_RX: u8 = 1 << 0;
/// Bytes handed over at a time: the 16-byte FIFO less one, for the kernel's log, which
/// writes a byte whenever it finds the FIFO empty.
pub const CHUNK: usize = 15;

/// The programming sequence: 115200 baud (divisor 1), 8N1, FIFOs on and cleared with the
/// receive trigger at one byte (so every typed key interrupts, on emulators without a
/// character timeout too), DTR, RTS and OUT2 (which connects the UART's interrupt to the
/// PIC), and only the transmitter-empty interrupt enabled; [`RX_ON`] adds the receive
/// interrupt once a thread serves it.
pub const INIT: [(u16, u8); 8] = [
    (reg::IER, 0),
    (reg::LCR, 0x80),
    (reg::THR, 1),
    (reg::IER, 0),
    (reg::LCR, 0x03),
    (reg::FCR, 0x07),
    (reg::MCR, 0x0b),
    (reg::IER, IER_THR_EMPTY),
];

/// Enable the receive interrupt beside the transmitter's.
pub const RX_ON: (u16, u8) = (reg::IER, IER_THR_EMPTY | IER_RX);

/// What the driver needs from the machine.
pub trait Hardware {
    /// Read the register at `offset`.
    fn read(&mut self, offset: u16) -> u8;
    /// Write the register at `offset`.
    fn write(&mut self, offset: u16, value: u8);
    /// Sleep until the UART's interrupt fires (acknowledging the IRQ line, or waiting for
    /// the thread that does).
    fn wait_interrupt(&mut self);
}

/// The driver's counters (the `STATS` reply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Interrupts waited for and received.
    pub interrupts: u64,
    /// Lines transmitted.
    pub lines: u64,
    /// Bytes transmitted, line ends included.
    pub bytes: u64,
}

/// A 16550 behind `H`.
pub struct Uart<H> {
    hw: H,
    stats: Stats,
}

impl<H: Hardware> Uart<H> {
    /// Program the UART.
    pub fn new(mut hw: H) -> Self {
        for (offset, value) in INIT {
            hw.write(offset, value);
        }
        Self { hw, stats: Stats::default() }
    }

    /// Let the UART interrupt on received bytes too.
    pub fn enable_receive(&mut self) {
        self.hw.write(RX_ON.0, RX_ON.1);
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Transmit `line` and a CR LF.
    pub fn write_line(&mut self, line: &[u8]) {
        self.transmit(line.iter().chain(b"\r\n").copied());
        self.stats.lines = self.stats.lines.wrapping_add(1);
    }

    /// Transmit `bytes` as they are, but for a CR before each LF that lacks one (what a
    /// terminal's output processing does): the console owner's terminal stream, whose
    /// partial lines (a prompt, an echoed key) must show at once.
    pub fn write_stream(&mut self, bytes: &[u8]) {
        let mut last = 0u8;
        let with_cr = bytes.iter().flat_map(|&b| {
            let cr = (b == b'\n' && last != b'\r').then_some(b'\r');
            last = b;
            cr.into_iter().chain(core::iter::once(b))
        });
        self.transmit(with_cr);
    }

    fn transmit(&mut self, bytes: impl Iterator<Item = u8>) {
        let mut room = CHUNK;
        for b in bytes {
            if room == 0 {
                self.drain();
                room = CHUNK;
            }
            self.hw.write(reg::THR, b);
            room = room.saturating_sub(1);
            self.stats.bytes = self.stats.bytes.wrapping_add(1);
        }
        self.drain();
    }

    /// Sleep until the transmitter has sent everything handed to it.
    fn drain(&mut self) {
        loop {
            self.hw.wait_interrupt();
            self.stats.interrupts = self.stats.interrupts.wrapping_add(1);
            let _ = self.hw.read(reg::IIR);
            if self.hw.read(reg::LSR) & LSR_THR_EMPTY != 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{reg, Hardware, Uart, CHUNK, INIT, LSR_THR_EMPTY};

    /// A UART whose FIFO empties one interrupt after the last write, and a record of
    /// what was transmitted and when the driver waited.
    #[derive(Default)]
    struct Fake {
        writes: Vec<(u16, u8)>,
        fifo: usize,
        max_fifo: usize,
        sent: Vec<u8>,
        stale: usize,
        waits: usize,
    }

    impl Hardware for Fake {
        fn read(&mut self, offset: u16) -> u8 {
            if offset == reg::LSR && self.fifo == 0 {
                LSR_THR_EMPTY
            } else {
                0
            }
        }
        fn write(&mut self, offset: u16, value: u8) {
            self.writes.push((offset, value));
            if offset == reg::THR && self.writes.len() > INIT.len() {
                self.sent.push(value);
                self.fifo += 1;
                self.max_fifo = self.max_fifo.max(self.fifo);
            }
        }
        fn wait_interrupt(&mut self) {
            self.waits += 1;
            // A left-over interrupt wakes the driver while the FIFO is still full.
            if self.stale > 0 {
                self.stale -= 1;
            } else {
                self.fifo = 0;
            }
        }
    }

    #[test]
    fn init_programs_the_uart_and_enables_only_the_transmit_interrupt() {
        let u = Uart::new(Fake::default());
        assert_eq!(u.hw.writes, INIT);
        assert_eq!(INIT.last(), Some(&(reg::IER, 0x02)));
        assert!(INIT.contains(&(reg::MCR, 0x0b)), "OUT2 connects the interrupt");
    }

    #[test]
    fn lines_go_out_in_chunks_each_waiting_for_the_interrupt() {
        let mut u = Uart::new(Fake { stale: 1, ..Fake::default() });
        let line = b"TEST PASS console_driver_prints_whole_lines";
        u.write_line(line);
        let mut want = line.to_vec();
        want.extend_from_slice(b"\r\n");
        assert_eq!(u.hw.sent, want);
        assert!(u.hw.max_fifo <= CHUNK, "never more than a chunk in the FIFO");
        let chunks = want.len().div_ceil(CHUNK);
        assert_eq!(u.hw.waits, chunks + 1, "one wait per chunk, one more for the stale one");
        let s = u.stats();
        assert_eq!((s.interrupts, s.lines, s.bytes), (chunks as u64 + 1, 1, want.len() as u64));
    }

    #[test]
    fn a_terminal_stream_goes_out_as_is_with_a_cr_before_each_bare_lf() {
        let mut u = Uart::new(Fake::default());
        u.write_stream(b"~ # ");
        u.write_stream(b"ls\r\nbin\n");
        assert_eq!(u.hw.sent, b"~ # ls\r\nbin\r\n");
        assert_eq!(u.stats().lines, 0, "no line of its own");
    }
}
