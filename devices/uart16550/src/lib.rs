//! A 16550A UART as Linux's 8250 driver and simple guests expect it.
//!
//! Transmission is instantaneous: a byte written to THR goes straight to the
//! [`SerialSink`], so THR and the transmitter are always empty (LSR.THRE = LSR.TEMT = 1)
//! and the THR-empty interrupt re-arms on every write, as on a very fast wire. Received
//! bytes queue in a 16-byte FIFO (one byte with FIFOs off); when it is full
//! [`Uart16550::receive`] refuses the byte instead of overrunning, because the host side
//! is a buffer that can wait, not a wire. The character-timeout interrupt is reported as
//! soon as data sits below the trigger level: the model has no clock, and the guest's
//! handler drains by LSR.DR either way. The modem inputs read as a connected, ready peer
//! (CTS, DSR, DCD) and follow MCR in loopback, which the 8250 probe checks.
//! `irq_level` is the chip's INTR pin; the PC's OUT2 gate is not modelled (Linux sets OUT2
//! anyway, and bare test guests need not know the quirk).
//!
//! It is a crate of its own because two programs run it: the VMM, as a device on its
//! port bus, and the `uart-model` process, as the same device out of process
//! (`protocols::device_model`). One model, so the two cannot behave differently.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects, clippy::indexing_slicing))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

/// Where transmitted bytes go: the VMM forwards them to the host console driver.
pub trait SerialSink {
    /// Transmit one byte.
    fn write_byte(&mut self, byte: u8);

    /// The guest has gone idle: pass on what a sink holds back (a line-buffered sink's
    /// unfinished line, such as a shell's prompt).
    fn flush(&mut self) {}
}

/// A sink that hands on whole lines (or a full buffer, or what is left when the guest
/// goes idle) to `write`: the console takes lines, so a guest's output is not cut into
/// bytes among other processes' lines.
pub struct LineSink {
    buf: [u8; 160],
    len: usize,
    write: fn(&[u8]),
}

impl LineSink {
    /// An empty line, handed to `write` when it ends.
    pub const fn new(write: fn(&[u8])) -> Self {
        Self { buf: [0; 160], len: 0, write }
    }
}

impl SerialSink for LineSink {
    fn write_byte(&mut self, byte: u8) {
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = byte;
            self.len = self.len.saturating_add(1);
        }
        if byte == b'\n' || self.len == self.buf.len() {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            (self.write)(self.buf.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
    }
}

/// Host tests (this crate's and its users') collect output in a vector.
#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(any(test, feature = "std"))]
impl SerialSink for std::vec::Vec<u8> {
    fn write_byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// Register offsets from the base port (with LCR.DLAB = 0 unless noted).
pub mod reg {
    /// RBR on read, THR on write; DLL with DLAB.
    pub const DATA: u64 = 0;
    /// IER; DLM with DLAB.
    pub const IER: u64 = 1;
    /// IIR on read, FCR on write.
    pub const IIR_FCR: u64 = 2;
    /// Line control.
    pub const LCR: u64 = 3;
    /// Modem control.
    pub const MCR: u64 = 4;
    /// Line status.
    pub const LSR: u64 = 5;
    /// Modem status.
    pub const MSR: u64 = 6;
    /// Scratch.
    pub const SCR: u64 = 7;
}

/// IER: received data available.
pub const IER_RDA: u8 = 0x01;
/// IER: THR empty.
pub const IER_THRE: u8 = 0x02;
/// IER: receiver line status.
pub const IER_RLS: u8 = 0x04;
/// IER: modem status.
pub const IER_MS: u8 = 0x08;

/// IIR: no interrupt pending.
pub const IIR_NONE: u8 = 0x01;
/// IIR: receiver line status (highest priority).
pub const IIR_RLS: u8 = 0x06;
/// IIR: received data available.
pub const IIR_RDA: u8 = 0x04;
/// IIR: character timeout.
pub const IIR_TIMEOUT: u8 = 0x0c;
/// IIR: THR empty.
pub const IIR_THRE: u8 = 0x02;
/// IIR: modem status (lowest priority).
pub const IIR_MS: u8 = 0x00;
/// IIR bits 7:6, set while FIFOs are enabled.
pub const IIR_FIFO: u8 = 0xc0;

/// FCR: enable FIFOs.
pub const FCR_ENABLE: u8 = 0x01;
/// FCR: clear the receive FIFO.
pub const FCR_CLEAR_RX: u8 = 0x02;
/// FCR: clear the transmit FIFO.
pub const FCR_CLEAR_TX: u8 = 0x04;
/// FCR: DMA mode select.
pub const FCR_DMA: u8 = 0x08;

/// LCR: divisor latch access.
pub const LCR_DLAB: u8 = 0x80;

/// MCR: DTR.
pub const MCR_DTR: u8 = 0x01;
/// MCR: RTS.
pub const MCR_RTS: u8 = 0x02;
/// MCR: OUT1.
pub const MCR_OUT1: u8 = 0x04;
/// MCR: OUT2.
pub const MCR_OUT2: u8 = 0x08;
/// MCR: loopback.
pub const MCR_LOOP: u8 = 0x10;

/// LSR: data ready.
pub const LSR_DR: u8 = 0x01;
/// LSR: overrun error.
pub const LSR_OE: u8 = 0x02;
/// LSR: THR empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty.
pub const LSR_TEMT: u8 = 0x40;

/// MSR: delta CTS.
pub const MSR_DCTS: u8 = 0x01;
/// MSR: delta DSR.
pub const MSR_DDSR: u8 = 0x02;
/// MSR: trailing edge of RI.
pub const MSR_TERI: u8 = 0x04;
/// MSR: delta DCD.
pub const MSR_DDCD: u8 = 0x08;
/// MSR: CTS.
pub const MSR_CTS: u8 = 0x10;
/// MSR: DSR.
pub const MSR_DSR: u8 = 0x20;
/// MSR: RI.
pub const MSR_RI: u8 = 0x40;
/// MSR: DCD.
pub const MSR_DCD: u8 = 0x80;

/// Depth of the 16550A receive FIFO.
pub const FIFO_DEPTH: usize = 16;

/// The input clock divided by 16: the baud rate for divisor 1.
pub const BASE_BAUD: u32 = 115_200;

/// A fixed-size byte ring.
#[derive(Clone, Debug)]
struct Fifo {
    buf: [u8; FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl Fifo {
    const fn new() -> Self {
        Self { buf: [0; FIFO_DEPTH], head: 0, len: 0 }
    }

    fn push(&mut self, byte: u8) -> bool {
        if self.len >= FIFO_DEPTH {
            return false;
        }
        let tail = self.head.wrapping_add(self.len) % FIFO_DEPTH;
        if let Some(slot) = self.buf.get_mut(tail) {
            *slot = byte;
            self.len = self.len.wrapping_add(1);
            true
        } else {
            false
        }
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.buf.get(self.head).copied();
        self.head = self.head.wrapping_add(1) % FIFO_DEPTH;
        self.len = self.len.wrapping_sub(1);
        byte
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// One 16550A.
#[derive(Clone, Debug)]
pub struct Uart16550<S> {
    sink: S,
    rx: Fifo,
    /// Last byte read from RBR: an empty RBR reads it again, as the holding register does.
    rbr: u8,
    ier: u8,
    /// FCR bits 0 (enable), 3 (DMA) and 7:6 (trigger); the clear bits self-clear.
    fcr: u8,
    lcr: u8,
    mcr: u8,
    /// LSR error bits (OE, PE, FE, BI); DR, THRE and TEMT are derived.
    lsr_errors: u8,
    /// MSR delta bits 3:0; the inputs in bits 7:4 are derived from MCR.
    msr_delta: u8,
    scr: u8,
    divisor: u16,
    /// The THR-empty interrupt is armed (cleared by reading IIR while it is the reported
    /// source, or by writing THR; set when THR empties or IER.THRE is turned on).
    thre_pending: bool,
}

impl<S: SerialSink> Uart16550<S> {
    /// A UART in its reset state, transmitting into `sink`.
    pub fn new(sink: S) -> Self {
        Self {
            sink,
            rx: Fifo::new(),
            rbr: 0,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr_delta: 0,
            scr: 0,
            // 9600 baud, what PC firmware leaves behind.
            divisor: 12,
            thre_pending: false,
        }
    }

    /// The output sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The output sink, mutably (to drain a buffering sink).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Offer one received byte from the host. Returns false, leaving the byte with the
    /// caller, when the receive FIFO (or the holding register, with FIFOs off) is full or
    /// the UART is in loopback (its receiver is then disconnected from the line).
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.mcr & MCR_LOOP != 0 || self.rx.len >= self.rx_capacity() {
            return false;
        }
        self.rx.push(byte)
    }

    /// Room left for [`Uart16550::receive`].
    pub fn rx_space(&self) -> usize {
        if self.mcr & MCR_LOOP != 0 {
            return 0;
        }
        self.rx_capacity().saturating_sub(self.rx.len)
    }

    /// The INTR output: true while any enabled interrupt is pending.
    pub fn irq_level(&self) -> bool {
        self.interrupt_id() != IIR_NONE
    }

    /// The divisor latch (DLM:DLL).
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    /// The programmed baud rate, or `None` for divisor 0.
    pub fn baud(&self) -> Option<u32> {
        BASE_BAUD.checked_div(u32::from(self.divisor))
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// The receive FIFO interrupt trigger level from FCR bits 7:6.
    fn rx_trigger(&self) -> usize {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// MSR bits 7:4: a ready peer, or MCR's outputs wired back in loopback.
    fn modem_inputs(&self) -> u8 {
        if self.mcr & MCR_LOOP == 0 {
            return MSR_CTS | MSR_DSR | MSR_DCD;
        }
        let mut m = 0;
        if self.mcr & MCR_RTS != 0 {
            m |= MSR_CTS;
        }
        if self.mcr & MCR_DTR != 0 {
            m |= MSR_DSR;
        }
        if self.mcr & MCR_OUT1 != 0 {
            m |= MSR_RI;
        }
        if self.mcr & MCR_OUT2 != 0 {
            m |= MSR_DCD;
        }
        m
    }

    /// The highest-priority enabled pending interrupt, as IIR bits 3:0.
    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors != 0 {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && self.rx.len > 0 {
            if !self.fifo_enabled() || self.rx.len >= self.rx_trigger() {
                IIR_RDA
            } else {
                IIR_TIMEOUT
            }
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_MS != 0 && self.msr_delta != 0 {
            IIR_MS
        } else {
            IIR_NONE
        }
    }

    /// Record MSR delta bits for a change of the modem inputs from `old` to the current.
    fn note_modem_change(&mut self, old: u8) {
        let new = self.modem_inputs();
        let changed = old ^ new;
        if changed & MSR_CTS != 0 {
            self.msr_delta |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            self.msr_delta |= MSR_DDSR;
        }
        // TERI flags only the trailing (1 -> 0) edge of RI.
        if old & MSR_RI != 0 && new & MSR_RI == 0 {
            self.msr_delta |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            self.msr_delta |= MSR_DDCD;
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.mcr & MCR_LOOP != 0 {
            // Looped back into the receiver; a full receiver overruns like the hardware.
            if self.rx.len >= self.rx_capacity() || !self.rx.push(byte) {
                self.lsr_errors |= LSR_OE;
            }
        } else {
            self.sink.write_byte(byte);
        }
        // The byte left at once, so THR is empty again.
        self.thre_pending = true;
    }

    fn read_reg(&mut self, offset: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            reg::DATA if dlab => self.divisor.to_le_bytes()[0],
            reg::DATA => {
                if let Some(b) = self.rx.pop() {
                    self.rbr = b;
                }
                self.rbr
            }
            reg::IER if dlab => self.divisor.to_le_bytes()[1],
            reg::IER => self.ier,
            reg::IIR_FCR => {
                let id = self.interrupt_id();
                // Reading IIR acknowledges THRE when it is the source being reported.
                if id == IIR_THRE {
                    self.thre_pending = false;
                }
                if self.fifo_enabled() {
                    id | IIR_FIFO
                } else {
                    id
                }
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let mut lsr = self.lsr_errors | LSR_THRE | LSR_TEMT;
                if self.rx.len > 0 {
                    lsr |= LSR_DR;
                }
                self.lsr_errors = 0;
                lsr
            }
            reg::MSR => {
                let msr = self.modem_inputs() | self.msr_delta;
                self.msr_delta = 0;
                msr
            }
            reg::SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            reg::DATA if dlab => {
                self.divisor = u16::from_le_bytes([value, self.divisor.to_le_bytes()[1]]);
            }
            reg::DATA => self.transmit(value),
            reg::IER if dlab => {
                self.divisor = u16::from_le_bytes([self.divisor.to_le_bytes()[0], value]);
            }
            reg::IER => {
                // Bits 7:4 are always zero on a 16550A (Linux's probe relies on it).
                let value = value & 0x0f;
                let enabling_thre = value & IER_THRE != 0 && self.ier & IER_THRE == 0;
                let disabling_thre = value & IER_THRE == 0 && self.ier & IER_THRE != 0;
                self.ier = value;
                // Enabling the THRE interrupt while THR is empty raises it at once.
                if enabling_thre {
                    self.thre_pending = true;
                }
                // An interrupt-driven driver turns THRE off when it has nothing more to
                // send (Linux's 8250 stop_tx): the burst is over, and what a sink holds
                // back (a prompt without its newline) is all the output for now. A guest
                // waiting in HLT without exiting (several vCPUs) says so no other way.
                if disabling_thre {
                    self.sink.flush();
                }
            }
            reg::IIR_FCR => {
                let was_enabled = self.fifo_enabled();
                let enable = value & FCR_ENABLE != 0;
                if was_enabled != enable {
                    // Switching FIFO mode resets both FIFOs.
                    self.rx.clear();
                }
                if value & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
                // FCR_CLEAR_TX: the transmitter is always empty here.
                // The other bits are only programmed while FCR0 is written as 1.
                self.fcr = if enable { value & (FCR_ENABLE | FCR_DMA | 0xc0) } else { 0 };
            }
            reg::LCR => self.lcr = value,
            reg::MCR => {
                let old = self.modem_inputs();
                // Bits 7:5 are zero on a 16550A.
                self.mcr = value & 0x1f;
                self.note_modem_change(old);
            }
            // LSR and MSR writes are factory-test features; ignored.
            reg::LSR | reg::MSR => {}
            reg::SCR => self.scr = value,
            _ => {}
        }
    }
}

impl<S: SerialSink> Uart16550<S> {
    /// A guest read of `data.len()` bytes at register `offset`. Wide accesses split into
    /// byte accesses to consecutive registers, as the ISA bus does for an 8-bit device.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut off = offset;
        for b in data.iter_mut() {
            *b = self.read_reg(off);
            off = off.wrapping_add(1);
        }
    }

    /// A guest write of `data` at register `offset` (split as [`Uart16550::read`]).
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut off = offset;
        for &b in data {
            self.write_reg(off, b);
            off = off.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_sink_hands_on_whole_lines() {
        std::thread_local! {
            static LINES: core::cell::RefCell<std::vec::Vec<std::vec::Vec<u8>>> =
                const { core::cell::RefCell::new(std::vec::Vec::new()) };
        }
        fn collect(line: &[u8]) {
            LINES.with(|l| l.borrow_mut().push(line.to_vec()));
        }
        let mut sink = super::LineSink::new(collect);
        for &b in b"one\ntw" {
            super::SerialSink::write_byte(&mut sink, b);
        }
        LINES.with(|l| assert_eq!(*l.borrow(), [b"one\n".to_vec()]));
        // Idle: the unfinished line goes too (a prompt), then nothing more.
        super::SerialSink::flush(&mut sink);
        super::SerialSink::flush(&mut sink);
        LINES.with(|l| assert_eq!(*l.borrow(), [b"one\n".to_vec(), b"tw".to_vec()]));
        // A line longer than the buffer goes out in full buffers.
        for _ in 0..200 {
            super::SerialSink::write_byte(&mut sink, b'x');
        }
        LINES.with(|l| assert_eq!(l.borrow().last().map(|x| x.len()), Some(160)));
    }

    use super::{
        reg, Uart16550, FCR_CLEAR_RX, FCR_ENABLE, IER_MS, IER_RDA, IER_RLS, IER_THRE, IIR_FIFO,
        IIR_MS, IIR_NONE, IIR_RDA, IIR_RLS, IIR_THRE, IIR_TIMEOUT, LCR_DLAB, LSR_DR, LSR_OE,
        LSR_TEMT, LSR_THRE, MCR_DTR, MCR_LOOP, MCR_OUT1, MCR_OUT2, MCR_RTS, MSR_CTS, MSR_DCD,
        MSR_DCTS, MSR_DDCD, MSR_DDSR, MSR_DSR, MSR_RI, MSR_TERI,
    };

    fn uart() -> Uart16550<Vec<u8>> {
        Uart16550::new(Vec::new())
    }

    fn rd(u: &mut Uart16550<Vec<u8>>, off: u64) -> u8 {
        let mut b = [0];
        u.read(off, &mut b);
        b[0]
    }

    fn wr(u: &mut Uart16550<Vec<u8>>, off: u64, v: u8) {
        u.write(off, &[v]);
    }

    #[test]
    fn reset_state() {
        let mut u = uart();
        assert_eq!(rd(&mut u, reg::IER), 0);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_NONE);
        assert_eq!(rd(&mut u, reg::LCR), 0);
        assert_eq!(rd(&mut u, reg::MCR), 0);
        assert_eq!(rd(&mut u, reg::LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(rd(&mut u, reg::MSR), MSR_CTS | MSR_DSR | MSR_DCD);
        assert!(!u.irq_level());
    }

    #[test]
    fn thr_goes_to_the_sink() {
        let mut u = uart();
        for &b in b"ok\n" {
            wr(&mut u, reg::DATA, b);
        }
        assert_eq!(u.sink(), b"ok\n");
        assert_eq!(rd(&mut u, reg::LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn dlab_selects_the_divisor_latch() {
        let mut u = uart();
        wr(&mut u, reg::LCR, LCR_DLAB | 0x03);
        wr(&mut u, reg::DATA, 0x01);
        wr(&mut u, reg::IER, 0x00);
        assert_eq!(u.divisor(), 1);
        assert_eq!(u.baud(), Some(115_200));
        assert_eq!(rd(&mut u, reg::DATA), 0x01);
        assert_eq!(rd(&mut u, reg::IER), 0x00);
        wr(&mut u, reg::IER, 0x02);
        assert_eq!(u.divisor(), 0x0201);
        // With DLAB set nothing is transmitted and IER is untouched.
        assert!(u.sink().is_empty());
        wr(&mut u, reg::LCR, 0x03);
        assert_eq!(rd(&mut u, reg::IER), 0);
        assert_eq!(rd(&mut u, reg::LCR), 0x03);
        wr(&mut u, reg::LCR, LCR_DLAB);
        wr(&mut u, reg::DATA, 0);
        wr(&mut u, reg::IER, 0);
        assert_eq!(u.baud(), None);
    }

    #[test]
    fn ier_keeps_only_the_low_nibble() {
        let mut u = uart();
        wr(&mut u, reg::IER, 0xff);
        assert_eq!(rd(&mut u, reg::IER), 0x0f);
    }

    /// Turning the THRE interrupt off ends a burst: a line sink passes on the prompt it
    /// held back; turning it on, or writing IER again with it off, flushes nothing.
    #[test]
    fn turning_thre_off_flushes_the_unfinished_line() {
        use std::sync::Mutex;
        static OUT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
        let mut u =
            Uart16550::new(crate::LineSink::new(|line| OUT.lock().unwrap().push(line.to_vec())));
        u.write(reg::IER, &[IER_THRE]);
        for b in b"~ # " {
            u.write(reg::DATA, &[*b]);
        }
        assert!(OUT.lock().unwrap().is_empty(), "held back: no newline yet");
        u.write(reg::IER, &[IER_RDA]);
        assert_eq!(*OUT.lock().unwrap(), [b"~ # ".to_vec()]);
        u.write(reg::DATA, b"x");
        u.write(reg::IER, &[IER_RDA]);
        assert_eq!(OUT.lock().unwrap().len(), 1, "THRE was off already");
    }

    #[test]
    fn scratch_register_holds_a_value() {
        let mut u = uart();
        wr(&mut u, reg::SCR, 0xa5);
        assert_eq!(rd(&mut u, reg::SCR), 0xa5);
        wr(&mut u, reg::SCR, 0x5a);
        assert_eq!(rd(&mut u, reg::SCR), 0x5a);
    }

    #[test]
    fn fcr_enables_fifos_and_shows_in_iir() {
        let mut u = uart();
        wr(&mut u, reg::IIR_FCR, FCR_ENABLE);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_FIFO | IIR_NONE);
        for i in 0..16 {
            assert!(u.receive(i));
        }
        assert!(!u.receive(16), "a full FIFO refuses instead of overrunning");
        assert_eq!(u.rx_space(), 0);
        wr(&mut u, reg::IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(rd(&mut u, reg::LSR) & LSR_DR, 0);
        assert_eq!(u.rx_space(), 16);
        // Turning the FIFOs off leaves a one-byte holding register.
        wr(&mut u, reg::IIR_FCR, 0);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_NONE);
        assert!(u.receive(1));
        assert!(!u.receive(2));
    }

    #[test]
    fn receive_sets_dr_and_rbr_drains_in_order() {
        let mut u = uart();
        wr(&mut u, reg::IIR_FCR, FCR_ENABLE);
        assert!(u.receive(b'a'));
        assert!(u.receive(b'b'));
        assert_eq!(rd(&mut u, reg::LSR) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut u, reg::DATA), b'a');
        assert_eq!(rd(&mut u, reg::DATA), b'b');
        assert_eq!(rd(&mut u, reg::LSR) & LSR_DR, 0);
    }

    #[test]
    fn rx_interrupt_by_trigger_level_or_timeout() {
        let mut u = uart();
        wr(&mut u, reg::IER, IER_RDA);
        assert!(!u.irq_level());
        // Without FIFOs one byte is "data available".
        u.receive(1);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_RDA);
        assert!(u.irq_level());
        rd(&mut u, reg::DATA);
        assert!(!u.irq_level());
        // Trigger level 4: below it the timeout indication, at it data available.
        wr(&mut u, reg::IIR_FCR, FCR_ENABLE | 0x40);
        u.receive(1);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_FIFO | IIR_TIMEOUT);
        for i in 0..3 {
            u.receive(i);
        }
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_FIFO | IIR_RDA);
        for _ in 0..4 {
            rd(&mut u, reg::DATA);
        }
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_FIFO | IIR_NONE);
        assert!(!u.irq_level());
    }

    #[test]
    fn thre_interrupt_rules() {
        let mut u = uart();
        // Enabling ETBEI with THR empty raises THRE at once.
        wr(&mut u, reg::IER, IER_THRE);
        assert!(u.irq_level());
        // Reading IIR while THRE is reported clears it.
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_THRE);
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_NONE);
        // Rewriting IER with ETBEI already set does not re-raise it ...
        wr(&mut u, reg::IER, IER_THRE);
        assert!(!u.irq_level());
        // ... but toggling it off and on does (Linux's THRE test).
        wr(&mut u, reg::IER, 0);
        wr(&mut u, reg::IER, IER_THRE);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_THRE);
        // Every transmitted byte empties THR again.
        wr(&mut u, reg::DATA, b'x');
        assert!(u.irq_level());
        // Masking hides it without losing it.
        wr(&mut u, reg::IER, 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn rda_outranks_thre() {
        let mut u = uart();
        wr(&mut u, reg::IER, IER_THRE | IER_RDA);
        u.receive(7);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_RDA);
        // Reading IIR while RDA is reported leaves THRE pending.
        rd(&mut u, reg::DATA);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_THRE);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_NONE);
    }

    #[test]
    fn loopback_wires_mcr_to_msr_and_thr_to_rbr() {
        let mut u = uart();
        // Linux's 8250 probe: loopback with RTS and OUT2 must read CTS and DCD only.
        wr(&mut u, reg::MCR, MCR_LOOP | 0x0a);
        assert_eq!(rd(&mut u, reg::MSR) & 0xf0, MSR_CTS | MSR_DCD);
        wr(&mut u, reg::MCR, MCR_LOOP | MCR_DTR | MCR_OUT1);
        assert_eq!(rd(&mut u, reg::MSR) & 0xf0, MSR_DSR | MSR_RI);
        wr(&mut u, reg::DATA, 0x42);
        assert!(u.sink().is_empty(), "loopback output stays inside the chip");
        assert_eq!(rd(&mut u, reg::LSR) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut u, reg::DATA), 0x42);
        assert!(!u.receive(1), "the receiver is off the line in loopback");
        wr(&mut u, reg::MCR, MCR_OUT2);
        wr(&mut u, reg::DATA, b'!');
        assert_eq!(u.sink(), b"!");
    }

    #[test]
    fn loopback_overrun_sets_oe_and_line_status_interrupt() {
        let mut u = uart();
        wr(&mut u, reg::IER, IER_RLS);
        wr(&mut u, reg::MCR, MCR_LOOP);
        wr(&mut u, reg::DATA, 1);
        wr(&mut u, reg::DATA, 2);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_RLS);
        assert_eq!(rd(&mut u, reg::LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        // Reading LSR clears the error and the interrupt.
        assert_eq!(rd(&mut u, reg::LSR) & LSR_OE, 0);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_NONE);
        assert_eq!(rd(&mut u, reg::DATA), 1);
    }

    #[test]
    fn modem_status_deltas_and_interrupt() {
        let mut u = uart();
        wr(&mut u, reg::IER, IER_MS);
        // Entering loopback with all outputs low drops CTS, DSR and DCD.
        wr(&mut u, reg::MCR, MCR_LOOP);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_MS);
        assert_eq!(rd(&mut u, reg::MSR), MSR_DCTS | MSR_DDSR | MSR_DDCD);
        assert_eq!(rd(&mut u, reg::IIR_FCR), IIR_NONE);
        // RI: rising edge is not flagged, the trailing edge is.
        wr(&mut u, reg::MCR, MCR_LOOP | MCR_OUT1);
        assert_eq!(rd(&mut u, reg::MSR), MSR_RI);
        wr(&mut u, reg::MCR, MCR_LOOP);
        assert_eq!(rd(&mut u, reg::MSR), MSR_TERI);
        wr(&mut u, reg::MCR, MCR_LOOP | MCR_RTS);
        assert_eq!(rd(&mut u, reg::MSR), MSR_DCTS | MSR_CTS);
        assert_eq!(rd(&mut u, reg::MSR), MSR_CTS);
    }

    #[test]
    fn mcr_keeps_five_bits() {
        let mut u = uart();
        wr(&mut u, reg::MCR, 0xff);
        assert_eq!(rd(&mut u, reg::MCR), 0x1f);
    }

    #[test]
    fn wide_accesses_touch_consecutive_registers() {
        let mut u = uart();
        u.write(reg::LCR, &[0x03, 0x0b]);
        assert_eq!(rd(&mut u, reg::LCR), 0x03);
        assert_eq!(rd(&mut u, reg::MCR), 0x0b);
        let mut w = [0u8; 4];
        u.read(reg::LCR, &mut w);
        assert_eq!(w, [0x03, 0x0b, LSR_THRE | LSR_TEMT, MSR_CTS | MSR_DSR | MSR_DCD]);
        // Past the last register reads float high and writes vanish.
        u.write(8, &[1]);
        assert_eq!(rd(&mut u, 8), 0xff);
        assert_eq!(rd(&mut u, u64::MAX), 0xff);
    }
}
