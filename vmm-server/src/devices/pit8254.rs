//! The 8254 programmable interval timer (ports 0x40-0x43) and the PIT bits of port 0x61.
//!
//! Time is an explicit tick count (1.193182 MHz input clock) advanced by
//! [`Pit8254::advance`], never read from a host clock, so every result is deterministic
//! and testable; the VMM converts host time into ticks. A running counter is stored as
//! its start tick and initial count, and count, OUT and the number of OUT rising edges in
//! an interval are computed arithmetically per mode, so advancing by a second costs the
//! same as advancing by one tick. The rising edges of channel 0 are what the VMM turns
//! into IRQ 0 ([`Pit8254::take_rising_edges`]).
//!
//! Modes 0-5 are modelled (6 and 7 alias 2 and 3), binary and BCD, LSB/MSB/word access,
//! the counter-latch and read-back commands, and the gate (wired high for channels 0 and 1,
//! port 0x61 bit 0 for channel 2). Simplification: a count is loaded into the counting
//! element at the write itself, not on the following clock edge, so a mode 0 count of N
//! fires after N ticks rather than N + 1.

use crate::bus::BusDevice;

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// Port offsets from 0x40.
pub mod port {
    /// Channel 0 data (IRQ 0).
    pub const CHANNEL0: u64 = 0;
    /// Channel 1 data (DRAM refresh on old PCs).
    pub const CHANNEL1: u64 = 1;
    /// Channel 2 data (speaker, calibration loops).
    pub const CHANNEL2: u64 = 2;
    /// Mode/command register (write-only).
    pub const COMMAND: u64 = 3;
}

/// Port 0x61 bit 0: channel 2 gate.
pub const PORT_B_GATE2: u8 = 0x01;
/// Port 0x61 bit 1: speaker data enable.
pub const PORT_B_SPEAKER: u8 = 0x02;
/// Port 0x61 bit 4: refresh request, toggling.
pub const PORT_B_REFRESH: u8 = 0x10;
/// Port 0x61 bit 5: channel 2 OUT.
pub const PORT_B_OUT2: u8 = 0x20;

/// How the data port transfers the 16-bit count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Lsb,
    Msb,
    Word,
}

/// The counting element's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// No count since the control word; OUT holds the mode's initial level.
    Idle { out: bool },
    /// A count is loaded but waits for a gate rising edge (modes 1, 2, 3, 5).
    Armed { initial: u32 },
    /// Counting since tick `start` from `initial`.
    Counting { start: u64, initial: u32 },
    /// Gate low in mode 0 or 4: counting is suspended `elapsed` ticks in.
    Frozen { elapsed: u64, initial: u32 },
}

/// A latched count being read out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Latch {
    value: u16,
    /// Word access only: the LSB has been read, the MSB is next.
    msb_next: bool,
}

#[derive(Clone, Debug)]
struct Channel {
    /// Normalised mode 0-5.
    mode: u8,
    /// Control word bits 5:0 as written, for the read-back status byte.
    control: u8,
    access: Access,
    bcd: bool,
    /// The count register as last written (raw: binary or BCD digits).
    cr: u16,
    write_msb_next: bool,
    read_msb_next: bool,
    run: Run,
    /// Modes 2 and 3: a count written while running takes over at this period boundary.
    pending: Option<(u64, u32)>,
    latch: Option<Latch>,
    status: Option<u8>,
    gate: bool,
    /// Rising edges of OUT not yet taken by the VMM.
    edges: u64,
}

/// Decode four BCD digits; out-of-range digits count at face value rather than failing.
fn from_bcd(raw: u16) -> u32 {
    let d = |shift: u32| u32::from((raw >> shift) & 0xf);
    d(12)
        .wrapping_mul(1000)
        .wrapping_add(d(8).wrapping_mul(100))
        .wrapping_add(d(4).wrapping_mul(10))
        .wrapping_add(d(0))
}

/// `a % n`, with 0 for the impossible `n == 0` (counts are never zero once decoded).
fn rem(a: u64, n: u64) -> u64 {
    a.checked_rem(n).unwrap_or(0)
}

/// `a / n`, with 0 for the impossible `n == 0`.
fn div(a: u64, n: u64) -> u64 {
    a.checked_div(n).unwrap_or(0)
}

/// Encode a value below 10000 as four BCD digits.
fn to_bcd(value: u32) -> u16 {
    let mut v = value % 10_000;
    let mut out = 0u16;
    for shift in [0u32, 4, 8, 12] {
        out |= ((v % 10) as u16) << shift;
        v /= 10;
    }
    out
}

impl Channel {
    const fn new() -> Self {
        Self {
            mode: 0,
            control: 0,
            access: Access::Lsb,
            bcd: false,
            cr: 0,
            write_msb_next: false,
            read_msb_next: false,
            run: Run::Idle { out: false },
            pending: None,
            latch: None,
            status: None,
            gate: true,
            edges: 0,
        }
    }

    /// Counter modulus: 2^16 binary, 10^4 BCD.
    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// The initial count N the CR encodes; 0 stands for the modulus.
    fn initial(&self) -> u32 {
        let n = if self.bcd { from_bcd(self.cr) } else { u32::from(self.cr) };
        if n == 0 {
            self.modulus() as u32
        } else {
            n
        }
    }

    /// Elapsed ticks and initial count, if counting or frozen.
    fn progress(&self, now: u64) -> Option<(u64, u32)> {
        match self.run {
            Run::Counting { start, initial } => Some((now.saturating_sub(start), initial)),
            Run::Frozen { elapsed, initial } => Some((elapsed, initial)),
            Run::Idle { .. } | Run::Armed { .. } => None,
        }
    }

    /// OUT at `d` ticks into a count of `n`.
    fn out_at(&self, d: u64, n: u32) -> bool {
        let n = u64::from(n);
        match self.mode {
            0 | 1 => d >= n,
            2 => n < 2 || rem(d, n) != n.wrapping_sub(1),
            3 => rem(d, n) < n.div_ceil(2),
            _ => d != n,
        }
    }

    /// The counting element at `d` ticks into a count of `n`, as a binary value.
    fn count_at(&self, d: u64, n: u32) -> u64 {
        let m = self.modulus();
        let n = u64::from(n);
        match self.mode {
            2 => rem(n.wrapping_sub(rem(d, n)), m),
            3 => {
                // Decrements by two; each half period starts from N rounded down to even.
                let high = n.div_ceil(2);
                let p = rem(d, n);
                let q = if p < high { p } else { p.wrapping_sub(high) };
                rem((n & !1).wrapping_sub(q.wrapping_mul(2)), m)
            }
            // Modes 0, 1, 4, 5 keep counting down through zero, wrapping at the modulus.
            _ => rem(n.wrapping_add(m).wrapping_sub(rem(d, m)), m),
        }
    }

    /// Rising edges of OUT at elapsed ticks in `(d0, d1]` of a count of `n`.
    fn edges_in(&self, d0: u64, d1: u64, n: u32) -> u64 {
        let n = u64::from(n);
        let once = |at: u64| u64::from(d0 < at && at <= d1);
        match self.mode {
            0 | 1 => once(n),
            2 | 3 if n >= 2 => div(d1, n).saturating_sub(div(d0, n)),
            2 | 3 => 0,
            _ => once(n.saturating_add(1)),
        }
    }

    /// Apply a pending mode 2/3 reload whose boundary has been reached.
    fn settle(&mut self, now: u64) {
        if let Some((boundary, initial)) = self.pending {
            if now >= boundary {
                self.run = Run::Counting { start: boundary, initial };
                self.pending = None;
            }
        }
    }

    fn out(&self, now: u64) -> bool {
        match self.run {
            Run::Idle { out } => out,
            Run::Armed { .. } => true,
            // Gate low in modes 2 and 3 forces OUT high; other modes just stop.
            Run::Counting { .. } | Run::Frozen { .. }
                if !self.gate && matches!(self.mode, 2 | 3) =>
            {
                true
            }
            Run::Counting { .. } | Run::Frozen { .. } => {
                self.progress(now).is_some_and(|(d, n)| self.out_at(d, n))
            }
        }
    }

    /// Move time from `t0` to `t1`, collecting OUT rising edges.
    fn advance(&mut self, t0: u64, t1: u64) {
        let mut from = t0;
        if let Some((boundary, _)) = self.pending {
            if boundary <= t1 {
                self.collect_edges(from, boundary);
                self.settle(boundary);
                from = boundary;
            }
        }
        self.collect_edges(from, t1);
    }

    fn collect_edges(&mut self, t0: u64, t1: u64) {
        if let Run::Counting { start, initial } = self.run {
            let e = self.edges_in(t0.saturating_sub(start), t1.saturating_sub(start), initial);
            self.edges = self.edges.saturating_add(e);
        }
    }

    /// Ticks from `now` until OUT next rises, if it will without further programming.
    fn next_edge_in(&self, now: u64) -> Option<u64> {
        let Run::Counting { start, initial } = self.run else { return None };
        let d = now.saturating_sub(start);
        let n = u64::from(initial);
        let at = match self.mode {
            0 | 1 => n,
            2 | 3 if n >= 2 => div(d, n).saturating_add(1).saturating_mul(n),
            2 | 3 => return None,
            _ => n.saturating_add(1),
        };
        at.checked_sub(d).filter(|&t| t > 0)
    }

    /// Ticks between OUT rising edges (periodic modes), or of the whole count (one-shot
    /// modes, until their edge has passed): a span that does not change while the count
    /// runs, unlike [`Channel::next_edge_in`].
    fn period(&self, now: u64) -> Option<u64> {
        let Run::Counting { initial, .. } = self.run else { return None };
        let n = u64::from(initial);
        match self.mode {
            2 | 3 if n >= 2 => Some(n),
            2 | 3 => None,
            0 | 1 => self.next_edge_in(now).map(|_| n),
            _ => self.next_edge_in(now).map(|_| n.saturating_add(1)),
        }
    }

    /// The value a read or latch sees now, in the counter's own coding.
    fn current_count(&self, now: u64) -> u16 {
        let binary = match self.progress(now) {
            Some((d, n)) => self.count_at(d, n),
            None => {
                // Not counting: the element still holds the count last written.
                return self.cr;
            }
        };
        if self.bcd {
            to_bcd(binary as u32)
        } else {
            binary as u16
        }
    }

    fn null_count(&self, now: u64) -> bool {
        match (self.pending, self.run) {
            (Some((boundary, _)), _) => now < boundary,
            (None, Run::Armed { .. }) => true,
            (None, Run::Idle { .. }) => self.write_msb_next,
            _ => false,
        }
    }

    fn status_byte(&self, now: u64) -> u8 {
        let mut s = self.control & 0x3f;
        if self.out(now) {
            s |= 0x80;
        }
        if self.null_count(now) {
            s |= 0x40;
        }
        s
    }

    fn control_word(&mut self, value: u8) {
        self.control = value & 0x3f;
        self.access = match (value >> 4) & 3 {
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::Word,
        };
        let mode = (value >> 1) & 7;
        self.mode = if mode >= 6 { mode & 3 } else { mode };
        self.bcd = value & 1 != 0;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latch = None;
        self.status = None;
        self.pending = None;
        // OUT goes low in mode 0 and high in every other mode.
        self.run = Run::Idle { out: self.mode != 0 };
    }

    fn latch_count(&mut self, now: u64) {
        if self.latch.is_none() {
            self.latch = Some(Latch { value: self.current_count(now), msb_next: false });
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.status.is_none() {
            self.status = Some(self.status_byte(now));
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(status) = self.status.take() {
            return status;
        }
        if let Some(latch) = self.latch {
            let [lo, hi] = latch.value.to_le_bytes();
            return match self.access {
                Access::Lsb => {
                    self.latch = None;
                    lo
                }
                Access::Msb => {
                    self.latch = None;
                    hi
                }
                Access::Word if latch.msb_next => {
                    self.latch = None;
                    hi
                }
                Access::Word => {
                    self.latch = Some(Latch { msb_next: true, ..latch });
                    lo
                }
            };
        }
        let [lo, hi] = self.current_count(now).to_le_bytes();
        match self.access {
            Access::Lsb => lo,
            Access::Msb => hi,
            Access::Word => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    lo
                } else {
                    hi
                }
            }
        }
    }

    fn write(&mut self, now: u64, value: u8) {
        match self.access {
            Access::Lsb => self.cr = u16::from(value),
            Access::Msb => self.cr = u16::from(value) << 8,
            Access::Word if !self.write_msb_next => {
                self.cr = (self.cr & 0xff00) | u16::from(value);
                self.write_msb_next = true;
                // Mode 0: the first byte stops the count and drops OUT at once.
                if self.mode == 0 {
                    self.run = Run::Idle { out: false };
                    self.pending = None;
                }
                return;
            }
            Access::Word => {
                self.cr = (self.cr & 0x00ff) | (u16::from(value) << 8);
                self.write_msb_next = false;
            }
        }
        self.load(now);
    }

    /// A complete count has been written.
    fn load(&mut self, now: u64) {
        self.settle(now);
        let initial = self.initial();
        match self.mode {
            0 | 4 => {
                self.pending = None;
                self.run = if self.gate {
                    Run::Counting { start: now, initial }
                } else {
                    Run::Frozen { elapsed: 0, initial }
                };
            }
            2 | 3 => match self.run {
                // A new count takes over at the end of the current period.
                Run::Counting { start, initial: old } => {
                    let old = u64::from(old);
                    let d = now.saturating_sub(start);
                    let boundary =
                        start.saturating_add(div(d, old).saturating_add(1).saturating_mul(old));
                    self.pending = Some((boundary, initial));
                }
                _ if self.gate => self.run = Run::Counting { start: now, initial },
                _ => self.run = Run::Armed { initial },
            },
            // Modes 1 and 5 wait for a gate trigger; a running count is not disturbed.
            _ => {
                if !matches!(self.run, Run::Counting { .. }) {
                    self.run = Run::Armed { initial };
                }
            }
        }
    }

    fn set_gate(&mut self, now: u64, level: bool) {
        self.settle(now);
        let rising = level && !self.gate;
        let falling = !level && self.gate;
        self.gate = level;
        match (self.mode, self.run) {
            (0 | 4, Run::Counting { start, initial }) if falling => {
                self.run = Run::Frozen { elapsed: now.saturating_sub(start), initial };
            }
            (0 | 4, Run::Frozen { elapsed, initial }) if rising => {
                self.run = Run::Counting { start: now.saturating_sub(elapsed), initial };
            }
            (2 | 3, Run::Counting { initial, .. }) if falling => {
                self.pending = None;
                self.run = Run::Armed { initial };
            }
            (1 | 2 | 3 | 5, Run::Armed { .. } | Run::Counting { .. }) if rising => {
                self.pending = None;
                self.run = Run::Counting { start: now, initial: self.initial() };
            }
            _ => {}
        }
    }
}

/// Three 8254 channels plus port 0x61's timer bits.
#[derive(Clone, Debug)]
pub struct Pit8254 {
    channels: [Channel; 3],
    now: u64,
    /// Port 0x61 bits as last written (gate, speaker, NMI controls).
    port_b: u8,
    refresh: bool,
}

impl Default for Pit8254 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit8254 {
    /// A PIT at tick 0 with all channels unprogrammed.
    pub const fn new() -> Self {
        Self {
            channels: [Channel::new(), Channel::new(), Channel::new()],
            now: 0,
            port_b: 0,
            refresh: false,
        }
    }

    /// Ticks since creation.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Let `ticks` input clocks pass.
    pub fn advance(&mut self, ticks: u64) {
        let t0 = self.now;
        let t1 = t0.saturating_add(ticks);
        for ch in &mut self.channels {
            ch.advance(t0, t1);
        }
        self.now = t1;
    }

    /// OUT of `channel` (0-2); false for other numbers.
    pub fn out(&self, channel: usize) -> bool {
        self.channels.get(channel).is_some_and(|c| c.out(self.now))
    }

    /// The OUT rising edges of `channel` since the last call (0 for other numbers).
    pub fn take_rising_edges(&mut self, channel: usize) -> u64 {
        self.channels.get_mut(channel).map_or(0, |c| core::mem::take(&mut c.edges))
    }

    /// Ticks until OUT of `channel` next rises, if it is counting towards an edge: how
    /// long a VMM may sleep on a halted guest.
    pub fn next_edge_in(&self, channel: usize) -> Option<u64> {
        self.channels.get(channel).and_then(|c| c.next_edge_in(self.now))
    }

    /// The span of `channel`'s edges while it counts towards one: its period in modes 2
    /// and 3, its whole count in the one-shot modes until the edge; `None` when no edge
    /// is coming. It changes only when the guest programs the channel or a one-shot count
    /// ends, so a VMM can arm a timer from it once per programming.
    pub fn period(&self, channel: usize) -> Option<u64> {
        self.channels.get(channel).and_then(|c| c.period(self.now))
    }

    /// Drive the gate of `channel`.
    pub fn set_gate(&mut self, channel: usize, level: bool) {
        let now = self.now;
        if let Some(c) = self.channels.get_mut(channel) {
            c.set_gate(now, level);
        }
    }

    /// Read port 0x61: gate 2, speaker enable, a refresh bit that toggles on every read
    /// (old delay loops wait for it to change) and OUT 2.
    pub fn read_port_b(&mut self) -> u8 {
        self.refresh = !self.refresh;
        let mut v = self.port_b & 0x0f;
        if self.refresh {
            v |= PORT_B_REFRESH;
        }
        if self.out(2) {
            v |= PORT_B_OUT2;
        }
        v
    }

    /// Write port 0x61: bit 0 gates channel 2; the others are kept for read-back.
    pub fn write_port_b(&mut self, value: u8) {
        self.port_b = value;
        self.set_gate(2, value & PORT_B_GATE2 != 0);
    }

    fn read_reg(&mut self, offset: u64) -> u8 {
        let now = self.now;
        let index = usize::try_from(offset).unwrap_or(usize::MAX);
        match self.channels.get_mut(index) {
            Some(c) => {
                c.settle(now);
                c.read(now)
            }
            // The command register is write-only.
            None => 0xff,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u8) {
        let now = self.now;
        if offset != port::COMMAND {
            let index = usize::try_from(offset).unwrap_or(usize::MAX);
            if let Some(c) = self.channels.get_mut(index) {
                c.write(now, value);
            }
            return;
        }
        let select = usize::from(value >> 6);
        if select == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status,
            // bits 3:1 select channels 2:0.
            for (i, c) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                c.settle(now);
                if value & 0x10 == 0 {
                    c.latch_status(now);
                }
                if value & 0x20 == 0 {
                    c.latch_count(now);
                }
            }
        } else if let Some(c) = self.channels.get_mut(select) {
            c.settle(now);
            if value & 0x30 == 0 {
                c.latch_count(now);
            } else {
                c.control_word(value);
            }
        }
    }
}

impl BusDevice for Pit8254 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut off = offset;
        for b in data.iter_mut() {
            *b = self.read_reg(off);
            off = off.wrapping_add(1);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut off = offset;
        for &b in data {
            self.write_reg(off, b);
            off = off.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{port, BusDevice, Pit8254, PORT_B_GATE2, PORT_B_OUT2};

    fn wr(p: &mut Pit8254, off: u64, v: u8) {
        p.write(off, &[v]);
    }

    fn rd(p: &mut Pit8254, off: u64) -> u8 {
        let mut b = [0];
        p.read(off, &mut b);
        b[0]
    }

    /// Program `channel` with a word-access control word for `mode` and `count`.
    fn program(p: &mut Pit8254, channel: u8, mode: u8, count: u16) {
        wr(p, port::COMMAND, (channel << 6) | 0x30 | (mode << 1));
        let [lo, hi] = count.to_le_bytes();
        wr(p, u64::from(channel), lo);
        wr(p, u64::from(channel), hi);
    }

    fn read_word(p: &mut Pit8254, channel: u64) -> u16 {
        let lo = rd(p, channel);
        let hi = rd(p, channel);
        u16::from_le_bytes([lo, hi])
    }

    #[test]
    fn mode2_rate_generator_pulses_once_per_period() {
        let mut p = Pit8254::new();
        program(&mut p, 0, 2, 1193);
        assert!(p.out(0));
        assert_eq!(read_word(&mut p, 0), 1193);
        p.advance(1192);
        assert!(!p.out(0), "low for the clock where the count is 1");
        assert_eq!(read_word(&mut p, 0), 1);
        p.advance(1);
        assert!(p.out(0));
        assert_eq!(read_word(&mut p, 0), 1193);
        assert_eq!(p.take_rising_edges(0), 1);
        p.advance(1193 * 10 + 5);
        assert_eq!(p.take_rising_edges(0), 10);
        assert_eq!(p.take_rising_edges(0), 0);
        assert_eq!(p.next_edge_in(0), Some(1188));
    }

    #[test]
    fn periods_stay_put_while_counting_and_end_with_a_one_shot() {
        let mut p = Pit8254::new();
        assert_eq!(p.period(0), None, "unprogrammed");
        program(&mut p, 0, 2, 4772);
        assert_eq!(p.period(0), Some(4772));
        p.advance(10_000);
        assert_eq!(p.period(0), Some(4772));
        program(&mut p, 0, 0, 100);
        assert_eq!(p.period(0), Some(100));
        p.advance(99);
        assert_eq!((p.period(0), p.next_edge_in(0)), (Some(100), Some(1)));
        p.advance(1);
        assert_eq!(p.period(0), None, "the one shot has fired");
        program(&mut p, 0, 4, 10);
        assert_eq!(p.period(0), Some(11));
        assert_eq!(p.period(3), None);
    }

    #[test]
    fn mode0_fires_once_then_wraps() {
        let mut p = Pit8254::new();
        wr(&mut p, port::COMMAND, 0x30);
        assert!(!p.out(0), "the control word drops OUT in mode 0");
        wr(&mut p, 0, 100);
        // The first byte of a word count stops the counter; nothing runs yet.
        assert_eq!(p.next_edge_in(0), None);
        wr(&mut p, 0, 0);
        assert_eq!(p.next_edge_in(0), Some(100));
        p.advance(99);
        assert!(!p.out(0));
        assert_eq!(read_word(&mut p, 0), 1);
        p.advance(1);
        assert!(p.out(0));
        assert_eq!(p.take_rising_edges(0), 1);
        p.advance(1);
        assert_eq!(read_word(&mut p, 0), 0xffff);
        p.advance(100_000);
        assert!(p.out(0), "OUT stays high until reprogrammed");
        assert_eq!(p.take_rising_edges(0), 0);
    }

    #[test]
    fn mode3_square_wave_even_and_odd() {
        let mut p = Pit8254::new();
        program(&mut p, 0, 3, 10);
        let mut levels = Vec::new();
        for _ in 0..10 {
            levels.push(p.out(0));
            p.advance(1);
        }
        assert_eq!(levels, [true, true, true, true, true, false, false, false, false, false]);
        assert_eq!(p.take_rising_edges(0), 1);
        program(&mut p, 0, 3, 5);
        let mut levels = Vec::new();
        for _ in 0..5 {
            levels.push(p.out(0));
            p.advance(1);
        }
        assert_eq!(levels, [true, true, true, false, false]);
        // The count steps by two.
        program(&mut p, 0, 3, 10);
        p.advance(1);
        assert_eq!(read_word(&mut p, 0), 8);
    }

    #[test]
    fn mode4_strobes_low_for_one_clock() {
        let mut p = Pit8254::new();
        program(&mut p, 0, 4, 3);
        assert!(p.out(0));
        p.advance(3);
        assert!(!p.out(0));
        p.advance(1);
        assert!(p.out(0));
        assert_eq!(p.take_rising_edges(0), 1);
        p.advance(70_000);
        assert_eq!(p.take_rising_edges(0), 0);
    }

    #[test]
    fn modes_1_and_5_wait_for_a_gate_trigger() {
        let mut p = Pit8254::new();
        p.write_port_b(0);
        program(&mut p, 2, 1, 10);
        assert!(p.out(2));
        p.advance(50);
        assert!(p.out(2), "nothing happens without a trigger");
        p.write_port_b(PORT_B_GATE2);
        assert!(!p.out(2), "one-shot starts low");
        p.advance(10);
        assert!(p.out(2));
        assert_eq!(p.take_rising_edges(2), 1);
        // Retrigger.
        p.write_port_b(0);
        p.write_port_b(PORT_B_GATE2);
        assert!(!p.out(2));

        program(&mut p, 2, 5, 4);
        p.advance(10);
        assert!(p.out(2));
        p.write_port_b(0);
        p.write_port_b(PORT_B_GATE2);
        p.advance(4);
        assert!(!p.out(2));
        p.advance(1);
        assert!(p.out(2));
    }

    #[test]
    fn gate_suspends_mode0_and_restarts_mode2() {
        let mut p = Pit8254::new();
        p.write_port_b(PORT_B_GATE2);
        program(&mut p, 2, 0, 10);
        p.advance(4);
        p.write_port_b(0);
        p.advance(100);
        assert_eq!(read_word(&mut p, 2), 6, "frozen while the gate is low");
        p.write_port_b(PORT_B_GATE2);
        p.advance(6);
        assert!(p.out(2));

        program(&mut p, 2, 2, 10);
        p.advance(9);
        assert!(!p.out(2));
        p.write_port_b(0);
        assert!(p.out(2), "gate low forces OUT high in mode 2");
        p.advance(100);
        p.write_port_b(PORT_B_GATE2);
        assert_eq!(read_word(&mut p, 2), 10, "gate rising reloads");
    }

    #[test]
    fn linux_style_calibration_loop_terminates() {
        let mut p = Pit8254::new();
        // Gate high, speaker off; channel 2 mode 0 with a 50 ms count.
        let b = p.read_port_b();
        p.write_port_b((b & !0x02) | 0x01);
        wr(&mut p, port::COMMAND, 0xb0);
        let count: u16 = 59_659;
        wr(&mut p, 2, count as u8);
        wr(&mut p, 2, (count >> 8) as u8);
        let mut polls = 0u32;
        while p.read_port_b() & PORT_B_OUT2 == 0 {
            p.advance(1000);
            polls += 1;
            assert!(polls < 100);
        }
        assert_eq!(polls, 60);
    }

    #[test]
    fn port_b_reads_back_and_toggles_refresh() {
        let mut p = Pit8254::new();
        p.write_port_b(0x03);
        let a = p.read_port_b();
        let b = p.read_port_b();
        assert_eq!(a & 0x0f, 0x03);
        assert_ne!(a & 0x10, b & 0x10);
    }

    #[test]
    fn counter_latch_freezes_the_value_read() {
        let mut p = Pit8254::new();
        program(&mut p, 0, 2, 1000);
        p.advance(10);
        wr(&mut p, port::COMMAND, 0x00);
        p.advance(10);
        // A second latch before reading is ignored.
        wr(&mut p, port::COMMAND, 0x00);
        assert_eq!(read_word(&mut p, 0), 990);
        assert_eq!(read_word(&mut p, 0), 980, "live again after the latched word");
    }

    #[test]
    fn byte_access_modes() {
        let mut p = Pit8254::new();
        wr(&mut p, port::COMMAND, 0x10); // LSB only, mode 0
        wr(&mut p, 0, 0x20);
        assert_eq!(rd(&mut p, 0), 0x20);
        assert_eq!(rd(&mut p, 0), 0x20);
        wr(&mut p, port::COMMAND, 0x20); // MSB only, mode 0
        wr(&mut p, 0, 0x01);
        p.advance(1);
        assert_eq!(rd(&mut p, 0), 0x00, "0x0100 - 1 = 0x00ff: MSB is 0");
        assert_eq!(p.next_edge_in(0), Some(255));
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let mut p = Pit8254::new();
        program(&mut p, 1, 2, 50);
        p.advance(5);
        // Count and status of channel 1.
        wr(&mut p, port::COMMAND, 0xc4);
        p.advance(5);
        assert_eq!(rd(&mut p, 1), 0x80 | 0x34, "OUT high, no null count, control word");
        assert_eq!(read_word(&mut p, 1), 45);
        // Status only, for channels 0 and 1; channel 0 was never programmed.
        wr(&mut p, port::COMMAND, 0xe6);
        assert_eq!(rd(&mut p, 0), 0x00);
        assert_eq!(rd(&mut p, 1), 0x80 | 0x34);
        // A half-written word count shows null count.
        wr(&mut p, port::COMMAND, 0x70);
        wr(&mut p, 1, 0x10);
        wr(&mut p, port::COMMAND, 0xe4);
        assert_eq!(rd(&mut p, 1), 0x40 | 0x30);
    }

    #[test]
    fn mode2_count_written_while_running_waits_for_the_period_end() {
        let mut p = Pit8254::new();
        program(&mut p, 0, 2, 100);
        p.advance(30);
        wr(&mut p, 0, 10);
        wr(&mut p, 0, 0);
        wr(&mut p, port::COMMAND, 0xe2);
        assert_eq!(rd(&mut p, 0) & 0x40, 0x40, "null count until the reload");
        assert_eq!(read_word(&mut p, 0), 70);
        p.advance(70);
        assert_eq!(p.take_rising_edges(0), 1);
        assert_eq!(read_word(&mut p, 0), 10);
        p.advance(100);
        assert_eq!(p.take_rising_edges(0), 10);
    }

    #[test]
    fn bcd_counting() {
        let mut p = Pit8254::new();
        wr(&mut p, port::COMMAND, 0x31);
        wr(&mut p, 0, 0x00);
        wr(&mut p, 0, 0x01); // 100 decimal
        p.advance(1);
        assert_eq!(read_word(&mut p, 0), 0x0099);
        p.advance(99);
        assert!(p.out(0));
        p.advance(1);
        assert_eq!(read_word(&mut p, 0), 0x9999);
    }

    #[test]
    fn zero_means_full_range_and_modes_6_7_alias() {
        let mut p = Pit8254::new();
        wr(&mut p, port::COMMAND, 0x3c); // mode 6 = mode 2
        wr(&mut p, 0, 0);
        wr(&mut p, 0, 0);
        p.advance(65_536 * 3);
        assert_eq!(p.take_rising_edges(0), 3);
        wr(&mut p, port::COMMAND, 0x3e); // mode 7 = mode 3
        wr(&mut p, port::COMMAND, 0xe2);
        assert_eq!(rd(&mut p, 0) & 0x3f, 0x3e, "status shows the mode as written");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let mut p = Pit8254::new();
        assert_eq!(rd(&mut p, port::COMMAND), 0xff);
        assert_eq!(rd(&mut p, u64::MAX), 0xff);
        wr(&mut p, 99, 1);
        for mode in 0..8u8 {
            for count in [1u16, 2, 3, 0xffff, 0] {
                wr(&mut p, port::COMMAND, 0x31 | (mode << 1));
                wr(&mut p, 0, count as u8);
                wr(&mut p, 0, (count >> 8) as u8);
                p.advance(7);
                p.advance(u64::MAX);
                let _ = (p.out(0), read_word(&mut p, 0), p.next_edge_in(0));
                p.set_gate(0, false);
                p.set_gate(0, true);
            }
        }
        assert!(!p.out(3));
        assert_eq!(p.take_rising_edges(7), 0);
    }
}
