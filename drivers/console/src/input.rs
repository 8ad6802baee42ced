//! What COM1 receives, between the driver's two threads.
//!
//! The interrupt thread is the only one that waits on IRQ 4: it reads every received
//! byte into an [`InputRing`] and tells the transmitter (which waits on a notification
//! of its own) that an interrupt came. The serving thread takes bytes out when the input's
//! owner asks. One producer, one consumer: the ring is two counters and a byte array of
//! atomics, so neither thread ever waits for the other, and a full ring drops the byte
//! and counts it rather than stall the UART.

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::uart::{reg, Hardware};

/// Bytes the ring holds.
pub const RING: usize = 256;
/// Most register reads one interrupt makes: a UART that never reports itself idle (an
/// absent one reads as all ones) cannot keep the interrupt thread spinning.
pub const MAX_READS: usize = 64;

/// Line status: a received byte is waiting.
pub const LSR_DATA_READY: u8 = 1 << 0;
/// Interrupt identification: no interrupt is pending.
pub const IIR_NONE: u8 = 1 << 0;
/// Interrupt identification: the pending cause (bits 3:1).
const IIR_CAUSE: u8 = 0x0e;
/// Causes: line status, received data, character timeout, modem status.
const CAUSE_LINE_STATUS: u8 = 0x06;
const CAUSE_RX: u8 = 0x04;
const CAUSE_TIMEOUT: u8 = 0x0c;
const CAUSE_MODEM: u8 = 0x00;
/// Modem status register (read clears its interrupt).
const MSR: u16 = 6;

/// Received bytes, single producer (the interrupt thread), single consumer (the serving
/// thread).
pub struct InputRing {
    bytes: [AtomicU8; RING],
    /// Bytes ever taken out (the consumer's counter).
    head: AtomicUsize,
    /// Bytes ever put in (the producer's counter).
    tail: AtomicUsize,
    dropped: AtomicU64,
}

impl Default for InputRing {
    fn default() -> Self {
        Self::new()
    }
}

impl InputRing {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            bytes: [const { AtomicU8::new(0) }; RING],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Put `byte` in (the producer only); false, and counted, if the ring is full.
    pub fn push(&self, byte: u8) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= RING {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if let Some(b) = self.bytes.get(tail % RING) {
            b.store(byte, Ordering::Relaxed);
        }
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Take up to `out.len()` bytes out (the consumer only); returns how many.
    pub fn pop_into(&self, out: &mut [u8]) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(out.len());
        for (i, d) in out.iter_mut().take(n).enumerate() {
            if let Some(b) = self.bytes.get(head.wrapping_add(i) % RING) {
                *d = b.load(Ordering::Relaxed);
            }
        }
        self.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Whether nothing waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Acquire) == self.head.load(Ordering::Relaxed)
    }

    /// Bytes dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Serve one interrupt: read the identification register until the UART has nothing
/// pending (so its interrupt line falls and the next event is a fresh edge), moving every
/// received byte into `ring`. Reading the register also clears a transmitter-empty
/// interrupt, which the transmitter checks in the line status itself. Returns how many
/// bytes were received.
pub fn service<H: Hardware>(hw: &mut H, ring: &InputRing) -> usize {
    let mut received = 0usize;
    let mut reads = 0usize;
    while reads < MAX_READS {
        let iir = hw.read(reg::IIR);
        reads = reads.saturating_add(1);
        if iir & IIR_NONE != 0 {
            break;
        }
        match iir & IIR_CAUSE {
            CAUSE_RX | CAUSE_TIMEOUT | CAUSE_LINE_STATUS => {
                while reads < MAX_READS && hw.read(reg::LSR) & LSR_DATA_READY != 0 {
                    ring.push(hw.read(reg::RBR));
                    received = received.saturating_add(1);
                    reads = reads.saturating_add(2);
                }
                reads = reads.saturating_add(1);
            }
            CAUSE_MODEM => {
                let _ = hw.read(MSR);
                reads = reads.saturating_add(1);
            }
            // Transmitter empty: cleared by the read above.
            _ => {}
        }
    }
    received
}

#[cfg(test)]
mod tests {
    use super::{service, InputRing, LSR_DATA_READY, MAX_READS, RING};
    use crate::uart::{reg, Hardware};
    use std::collections::VecDeque;

    #[test]
    fn the_ring_keeps_order_and_counts_what_it_drops() {
        let r = InputRing::new();
        assert!(r.is_empty());
        for i in 0..RING + 3 {
            assert_eq!(r.push(i as u8), i < RING);
        }
        assert_eq!(r.dropped(), 3);
        let mut out = [0u8; 32];
        let mut all = Vec::new();
        loop {
            let n = r.pop_into(&mut out);
            if n == 0 {
                break;
            }
            all.extend_from_slice(&out[..n]);
        }
        assert_eq!(all, (0..RING).map(|i| i as u8).collect::<Vec<_>>());
        // The counters wrap past the array: order holds on the second lap.
        assert!(r.push(7) && r.push(8));
        assert_eq!(r.pop_into(&mut out[..1]), 1);
        assert_eq!((out[0], r.pop_into(&mut out), out[0]), (7, 1, 8));
        assert!(r.is_empty());
    }

    /// A UART with bytes waiting and, optionally, a transmitter-empty interrupt.
    #[derive(Default)]
    struct Rx {
        waiting: VecDeque<u8>,
        thr_pending: bool,
        absent: bool,
        reads: usize,
    }

    impl Hardware for Rx {
        fn read(&mut self, offset: u16) -> u8 {
            self.reads += 1;
            if self.absent {
                return 0xff;
            }
            match offset {
                reg::IIR if !self.waiting.is_empty() => 0x04,
                reg::IIR if self.thr_pending => {
                    self.thr_pending = false;
                    0x02
                }
                reg::IIR => 0x01,
                reg::LSR => u8::from(!self.waiting.is_empty()) * LSR_DATA_READY,
                reg::RBR => self.waiting.pop_front().unwrap_or(0),
                _ => 0,
            }
        }
        fn write(&mut self, _: u16, _: u8) {}
        fn wait_interrupt(&mut self) {}
    }

    #[test]
    fn an_interrupt_moves_every_received_byte_and_leaves_the_uart_idle() {
        let mut hw = Rx {
            waiting: b"uname -r\n".iter().copied().collect(),
            thr_pending: true,
            ..Rx::default()
        };
        let ring = InputRing::new();
        assert_eq!(service(&mut hw, &ring), 9);
        assert!(!hw.thr_pending, "the transmitter's interrupt is cleared too");
        let mut out = [0u8; 16];
        let n = ring.pop_into(&mut out);
        assert_eq!(&out[..n], b"uname -r\n");
    }

    #[test]
    fn an_absent_uart_cannot_keep_the_thread_spinning() {
        let mut hw = Rx { absent: true, ..Rx::default() };
        let ring = InputRing::new();
        service(&mut hw, &ring);
        assert!(hw.reads <= MAX_READS + 3, "{} reads", hw.reads);
    }
}
