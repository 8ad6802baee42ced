//! The PC's two cascaded 8259A interrupt controllers.
//!
//! Each [`Pic8259`] implements the initialization sequence (ICW1-ICW4), OCW1-OCW3,
//! IRR/ISR/IMR, rotating priority, (specific) EOI, auto-EOI, poll mode, special mask and
//! special fully nested modes, in 8086 mode only (the 8080 call-vector format is not
//! modelled: no x86 guest uses it). [`DualPic`] wires the slave's INT output to the
//! master's IR2 and offers the VMM the INTA cycle as two calls: `pending_vector` to decide
//! whether to inject (or open an interrupt window), `acknowledge` when it does inject.
//!
//! Device interrupt lines are levels the VMM sets with [`DualPic::set_irq`]. In edge mode a
//! rising edge latches IRR until INTA even if the line falls again, so a device that pulses
//! its line between two exits is never lost (the datasheet leaves that case undefined).

/// Port offsets within a chip's two-port window (0x20/0x21 master, 0xa0/0xa1 slave).
pub mod port {
    /// ICW1, OCW2, OCW3 on write; IRR, ISR or the poll word on read.
    pub const COMMAND: u64 = 0;
    /// ICW2-ICW4 during initialization, OCW1 (IMR) afterwards.
    pub const DATA: u64 = 1;
}

/// The master's input that the slave's INT output drives.
pub const CASCADE_IRQ: u8 = 2;

/// Where a chip is in its initialization sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Init {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug)]
pub struct Pic8259 {
    irr: u8,
    isr: u8,
    imr: u8,
    /// Input levels last seen, for edge detection.
    lines: u8,
    /// ICW2 bits 7:3.
    vector_base: u8,
    init: Init,
    /// ICW1.IC4: an ICW4 follows.
    needs_icw4: bool,
    /// ICW1.SNGL: no cascade, so no ICW3.
    single: bool,
    /// ICW1.LTIM.
    level_triggered: bool,
    /// ICW3: the slave mask on a master, the slave ID on a slave.
    icw3: u8,
    /// ICW4.AEOI.
    auto_eoi: bool,
    /// ICW4.SFNM.
    special_fully_nested: bool,
    /// OCW2 rotate-in-auto-EOI.
    rotate_on_auto_eoi: bool,
    /// OCW3 SMM.
    special_mask: bool,
    /// OCW3 RIS: command-port reads return ISR instead of IRR.
    read_isr: bool,
    /// OCW3 P: the next command-port read is a poll.
    poll: bool,
    /// The IR with the highest priority (0 unless rotated).
    highest: u8,
}

impl Default for Pic8259 {
    fn default() -> Self {
        Self::new()
    }
}

/// `1 << irq` for an IR number taken modulo 8.
const fn bit(irq: u8) -> u8 {
    1 << (irq & 7)
}

impl Pic8259 {
    /// A chip as after power-on: uninitialised, everything unmasked, vectors from 0.
    pub const fn new() -> Self {
        Self {
            irr: 0,
            isr: 0,
            imr: 0,
            lines: 0,
            vector_base: 0,
            init: Init::Ready,
            needs_icw4: false,
            single: false,
            level_triggered: false,
            icw3: 0,
            auto_eoi: false,
            special_fully_nested: false,
            rotate_on_auto_eoi: false,
            special_mask: false,
            read_isr: false,
            poll: false,
            highest: 0,
        }
    }

    /// Interrupt request register.
    pub fn irr(&self) -> u8 {
        self.irr
    }

    /// In-service register.
    pub fn isr(&self) -> u8 {
        self.isr
    }

    /// Interrupt mask register (OCW1).
    pub fn imr(&self) -> u8 {
        self.imr
    }

    /// ICW2's vector base (bits 7:3).
    pub fn vector_base(&self) -> u8 {
        self.vector_base
    }

    /// True once ICW1 has been followed by all the ICWs it announced.
    pub fn initialized(&self) -> bool {
        self.init == Init::Ready
    }

    /// Drive input `irq` (0-7) to `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        let b = bit(irq);
        if self.level_triggered {
            if level {
                self.irr |= b;
            } else {
                self.irr &= !b;
            }
        } else if level && self.lines & b == 0 {
            self.irr |= b;
        }
        if level {
            self.lines |= b;
        } else {
            self.lines &= !b;
        }
    }

    /// Whether driving input `irq` to `level` changes nothing: an edge-triggered input
    /// already at that level (in level mode IRR follows the line on every call).
    fn holds(&self, irq: u8, level: bool) -> bool {
        !self.level_triggered && (self.lines & bit(irq) != 0) == level
    }

    /// Priority rank (0 = highest) of the best IR set in `mask`. Bit `r` of the mask
    /// rotated by the highest-priority IR is the IR of rank `r`, so the lowest set bit is
    /// the answer (this runs several times per VM exit).
    fn best(&self, mask: u8) -> Option<u8> {
        let ranked = mask.rotate_right(u32::from(self.highest & 7));
        (ranked != 0).then(|| ranked.trailing_zeros() as u8)
    }

    fn rank_to_irq(&self, rank: u8) -> u8 {
        rank.wrapping_add(self.highest) & 7
    }

    /// The IR this chip would present at the next INTA, honouring IMR, ISR and the
    /// special mask and special fully nested modes. `is_master` enables the latter.
    fn pending_irq(&self, is_master: bool) -> Option<u8> {
        let request = self.best(self.irr & !self.imr)?;
        let in_service = if self.special_mask { self.isr & !self.imr } else { self.isr };
        let irq = self.rank_to_irq(request);
        match self.best(in_service) {
            None => Some(irq),
            Some(current) if request < current => Some(irq),
            // SFNM: a slave input in service does not block further requests from it.
            Some(current)
                if request == current
                    && is_master
                    && self.special_fully_nested
                    && self.cascades(irq) =>
            {
                Some(irq)
            }
            Some(_) => None,
        }
    }

    /// True when `irq` has a slave behind it (master in cascade mode).
    fn cascades(&self, irq: u8) -> bool {
        !self.single && self.icw3 & bit(irq) != 0
    }

    /// The INTA cycle's effect on IRR and ISR for `irq`.
    fn ack(&mut self, irq: u8) {
        let b = bit(irq);
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.highest = irq.wrapping_add(1) & 7;
            }
        } else {
            self.isr |= b;
        }
        // In level mode IRR keeps following the line.
        if !self.level_triggered {
            self.irr &= !b;
        }
    }

    /// A poll (OCW3.P then a read): acknowledges like INTA and returns bit 7 set with the
    /// IR in bits 2:0, or 0 when nothing is pending.
    fn poll_word(&mut self) -> u8 {
        match self.pending_irq(false) {
            Some(irq) => {
                self.ack(irq);
                0x80 | irq
            }
            None => 0,
        }
    }

    /// Read one of the chip's two ports.
    pub fn read(&mut self, offset: u64) -> u8 {
        match offset {
            port::COMMAND if self.poll => {
                self.poll = false;
                self.poll_word()
            }
            port::COMMAND if self.read_isr => self.isr,
            port::COMMAND => self.irr,
            port::DATA => self.imr,
            _ => 0xff,
        }
    }

    /// Write one of the chip's two ports.
    pub fn write(&mut self, offset: u64, value: u8) {
        match offset {
            port::COMMAND if value & 0x10 != 0 => self.icw1(value),
            port::COMMAND if value & 0x08 != 0 => self.ocw3(value),
            port::COMMAND => self.ocw2(value),
            port::DATA => self.write_data(value),
            _ => {}
        }
    }

    fn icw1(&mut self, value: u8) {
        self.needs_icw4 = value & 0x01 != 0;
        self.single = value & 0x02 != 0;
        self.level_triggered = value & 0x08 != 0;
        self.imr = 0;
        self.isr = 0;
        // The edge detector restarts from the current levels: a line already high must
        // fall and rise again before it requests (in level mode it requests at once).
        self.irr = if self.level_triggered { self.lines } else { 0 };
        self.highest = 0;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.rotate_on_auto_eoi = false;
        if !self.needs_icw4 {
            self.auto_eoi = false;
            self.special_fully_nested = false;
        }
        self.init = Init::Icw2;
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            Init::Icw2 => {
                self.vector_base = value & 0xf8;
                self.init = if !self.single {
                    Init::Icw3
                } else if self.needs_icw4 {
                    Init::Icw4
                } else {
                    Init::Ready
                };
            }
            Init::Icw3 => {
                self.icw3 = value;
                self.init = if self.needs_icw4 { Init::Icw4 } else { Init::Ready };
            }
            Init::Icw4 => {
                self.auto_eoi = value & 0x02 != 0;
                self.special_fully_nested = value & 0x10 != 0;
                self.init = Init::Ready;
            }
            Init::Ready => self.imr = value,
        }
    }

    fn ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            // Non-specific EOI, optionally rotating.
            0b001 | 0b101 => {
                if let Some(rank) = self.best(self.isr) {
                    let irq = self.rank_to_irq(rank);
                    self.isr &= !bit(irq);
                    if value >> 5 == 0b101 {
                        self.highest = irq.wrapping_add(1) & 7;
                    }
                }
            }
            0b011 => self.isr &= !bit(level),
            0b111 => {
                self.isr &= !bit(level);
                self.highest = level.wrapping_add(1) & 7;
            }
            0b110 => self.highest = level.wrapping_add(1) & 7,
            0b100 => self.rotate_on_auto_eoi = true,
            0b000 => self.rotate_on_auto_eoi = false,
            // 0b010: no operation.
            _ => {}
        }
    }

    fn ocw3(&mut self, value: u8) {
        if value & 0x04 != 0 {
            self.poll = true;
        }
        if value & 0x02 != 0 {
            self.read_isr = value & 0x01 != 0;
        }
        if value & 0x40 != 0 {
            self.special_mask = value & 0x20 != 0;
        }
    }
}

/// Which chip of the pair a port access addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chip {
    /// Ports 0x20-0x21, IRQ 0-7.
    Master,
    /// Ports 0xa0-0xa1, IRQ 8-15.
    Slave,
}

/// The master/slave pair of a PC/AT.
#[derive(Clone, Debug, Default)]
pub struct DualPic {
    master: Pic8259,
    slave: Pic8259,
}

impl DualPic {
    /// Both chips in their power-on state.
    pub const fn new() -> Self {
        Self { master: Pic8259::new(), slave: Pic8259::new() }
    }

    /// The master chip (for inspection).
    pub fn master(&self) -> &Pic8259 {
        &self.master
    }

    /// The slave chip (for inspection).
    pub fn slave(&self) -> &Pic8259 {
        &self.slave
    }

    /// Drive ISA IRQ line `irq` (0-15) to `level`. IRQ 2 does not exist on an AT (the
    /// cascade uses it) and is redirected to IRQ 9, as the AT bus wires it; lines above 15
    /// are ignored.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        let (chip, input) = match irq {
            CASCADE_IRQ => (&mut self.slave, 1),
            0..=7 => (&mut self.master, irq),
            8..=15 => (&mut self.slave, irq & 7),
            _ => return,
        };
        // The devices' lines are resynchronised after every access; most of those change
        // nothing, and then neither chip does (every other change resyncs the cascade).
        if chip.holds(input, level) {
            return;
        }
        chip.set_irq(input, level);
        self.sync_cascade();
    }

    /// Raise and lower `irq`: one edge, for sources the VMM sees as events (PIT ticks).
    pub fn pulse_irq(&mut self, irq: u8) {
        self.set_irq(irq, true);
        self.set_irq(irq, false);
    }

    fn sync_cascade(&mut self) {
        let out = self.slave.pending_irq(false).is_some();
        self.master.set_irq(CASCADE_IRQ, out);
    }

    /// The master's INT output: an interrupt is waiting for the CPU.
    pub fn output(&self) -> bool {
        self.master.pending_irq(true).is_some()
    }

    /// The vector the next INTA would return, if the master's INT output is active.
    pub fn pending_vector(&self) -> Option<u8> {
        let irq = self.master.pending_irq(true)?;
        if self.master.cascades(irq) {
            let slave_irq = self.slave.pending_irq(false).unwrap_or(7);
            Some(self.slave.vector_base | slave_irq)
        } else {
            Some(self.master.vector_base | irq)
        }
    }

    /// Run an INTA cycle: move the winning request to ISR (on both chips for a slave
    /// interrupt) and return its vector. With nothing pending the chips answer IR7 without
    /// touching ISR, the 8259A's spurious interrupt.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.pending_irq(true) {
            None => self.master.vector_base | 7,
            Some(irq) => {
                self.master.ack(irq);
                if self.master.cascades(irq) {
                    let vector = match self.slave.pending_irq(false) {
                        Some(slave_irq) => {
                            self.slave.ack(slave_irq);
                            self.slave.vector_base | slave_irq
                        }
                        None => self.slave.vector_base | 7,
                    };
                    // The slave drops INT during INTA; a request still waiting on it then
                    // raises a fresh edge on the master's IR2.
                    self.master.set_irq(irq, false);
                    vector
                } else {
                    self.master.vector_base | irq
                }
            }
        };
        self.sync_cascade();
        vector
    }

    /// Read a port of `chip`.
    pub fn read(&mut self, chip: Chip, offset: u64) -> u8 {
        let value = match chip {
            Chip::Master => self.master.read(offset),
            Chip::Slave => self.slave.read(offset),
        };
        // A poll acknowledges, which can change the slave's output.
        self.sync_cascade();
        value
    }

    /// Write a port of `chip`.
    pub fn write(&mut self, chip: Chip, offset: u64, value: u8) {
        match chip {
            Chip::Master => self.master.write(offset, value),
            Chip::Slave => self.slave.write(offset, value),
        }
        self.sync_cascade();
    }

    /// Byte-wise port read for a bus: each byte addresses the next port.
    pub fn read_bytes(&mut self, chip: Chip, offset: u64, data: &mut [u8]) {
        let mut off = offset;
        for b in data.iter_mut() {
            *b = self.read(chip, off);
            off = off.wrapping_add(1);
        }
    }

    /// Byte-wise port write for a bus: each byte addresses the next port.
    pub fn write_bytes(&mut self, chip: Chip, offset: u64, data: &[u8]) {
        let mut off = offset;
        for &b in data {
            self.write(chip, off, b);
            off = off.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{bit, port, Chip, DualPic, Pic8259};

    /// An edge-triggered line driven again to the level it has changes nothing, so it is
    /// skipped; in level mode IRR follows the line on every call.
    #[test]
    fn redriving_a_line_at_its_level_changes_nothing() {
        let mut p = pic(false);
        p.set_irq(4, true);
        let before = (p.master().irr, p.master().lines, p.pending_vector());
        p.set_irq(4, true);
        assert_eq!((p.master().irr, p.master().lines, p.pending_vector()), before);
        assert_eq!(p.acknowledge(), before.2.unwrap());
        p.set_irq(4, true);
        assert_eq!(p.master().irr & 1 << 4, 0, "no new edge while the line stays high");
        p.set_irq(4, false);
        p.set_irq(4, true);
        assert_ne!(p.master().irr & 1 << 4, 0, "a new edge");
    }

    /// The best-request search by rotation is the priority order's definition: the first
    /// rank, counting from the highest-priority IR, whose IR is set.
    #[test]
    fn best_is_the_first_set_ir_in_priority_order() {
        let mut chip = Pic8259::default();
        for highest in 0..8u8 {
            chip.highest = highest;
            for mask in 0..=255u8 {
                let naive = (0u8..8).find(|&rank| mask & bit(rank.wrapping_add(highest)) != 0);
                assert_eq!(chip.best(mask), naive, "mask {mask:#x}, highest {highest}");
            }
        }
    }

    /// Linux's (and every PC BIOS's) initialization: edge, cascade, 8086 mode.
    fn pic(auto_eoi: bool) -> DualPic {
        let icw4 = if auto_eoi { 0x03 } else { 0x01 };
        let mut p = DualPic::new();
        for (chip, base, icw3) in [(Chip::Master, 0x30, 0x04), (Chip::Slave, 0x38, 0x02)] {
            p.write(chip, port::COMMAND, 0x11);
            p.write(chip, port::DATA, base);
            p.write(chip, port::DATA, icw3);
            p.write(chip, port::DATA, icw4);
            assert!(if chip == Chip::Master { p.master() } else { p.slave() }.initialized());
        }
        p
    }

    fn eoi(p: &mut DualPic, chip: Chip) {
        p.write(chip, port::COMMAND, 0x20);
    }

    #[test]
    fn init_sequence_sets_vectors_and_unmasks() {
        let mut p = pic(false);
        assert_eq!(p.master().vector_base(), 0x30);
        assert_eq!(p.slave().vector_base(), 0x38);
        assert_eq!(p.read(Chip::Master, port::DATA), 0);
        p.write(Chip::Master, port::DATA, 0xfb);
        assert_eq!(p.read(Chip::Master, port::DATA), 0xfb);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn single_mode_skips_icw3_and_no_icw4_clears_aeoi() {
        let mut p = DualPic::new();
        p.write(Chip::Master, port::COMMAND, 0x13); // SNGL, IC4
        p.write(Chip::Master, port::DATA, 0x08);
        p.write(Chip::Master, port::DATA, 0x03); // ICW4 with AEOI
        assert!(p.master().initialized());
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x08);
        assert_eq!(p.master().isr(), 0, "auto-EOI");
        p.write(Chip::Master, port::COMMAND, 0x12); // SNGL, no ICW4
        p.write(Chip::Master, port::DATA, 0x08);
        assert!(p.master().initialized());
        // In single mode IR2 is an ordinary input and the master supplies the vector.
        p.set_irq(0, false);
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x08);
        assert_eq!(p.master().isr(), 1, "ICW4 functions reset without IC4");
    }

    #[test]
    fn inta_moves_irr_to_isr_and_eoi_clears() {
        let mut p = pic(false);
        p.set_irq(0, true);
        assert_eq!(p.master().irr(), 0x01);
        assert_eq!(p.pending_vector(), Some(0x30));
        assert_eq!(p.acknowledge(), 0x30);
        assert_eq!((p.master().irr(), p.master().isr()), (0, 1));
        // Holding the line high is no new edge.
        p.set_irq(0, true);
        assert_eq!(p.pending_vector(), None);
        eoi(&mut p, Chip::Master);
        assert_eq!(p.master().isr(), 0);
        p.set_irq(0, false);
        p.set_irq(0, true);
        assert_eq!(p.pending_vector(), Some(0x30));
    }

    #[test]
    fn an_edge_is_latched_until_inta() {
        let mut p = pic(false);
        p.pulse_irq(4);
        assert_eq!(p.pending_vector(), Some(0x34));
        assert_eq!(p.acknowledge(), 0x34);
    }

    #[test]
    fn fixed_priority_and_nesting() {
        let mut p = pic(false);
        p.set_irq(3, true);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31);
        // IR3 is lower than IR1 in service: blocked.
        assert_eq!(p.pending_vector(), None);
        // IR0 is higher: it nests.
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x30);
        assert_eq!(p.master().isr(), 0x03);
        // Non-specific EOI clears the highest in service (IR0), then IR1.
        eoi(&mut p, Chip::Master);
        assert_eq!(p.master().isr(), 0x02);
        assert_eq!(p.pending_vector(), None);
        eoi(&mut p, Chip::Master);
        assert_eq!(p.acknowledge(), 0x33);
    }

    #[test]
    fn imr_masks_requests_without_losing_them() {
        let mut p = pic(false);
        p.write(Chip::Master, port::DATA, 0x10);
        p.set_irq(4, true);
        assert_eq!(p.pending_vector(), None);
        assert_eq!(p.master().irr(), 0x10);
        p.write(Chip::Master, port::DATA, 0x00);
        assert_eq!(p.pending_vector(), Some(0x34));
    }

    #[test]
    fn specific_eoi_clears_only_the_named_level() {
        let mut p = pic(false);
        p.set_irq(1, true);
        p.acknowledge();
        p.set_irq(0, true);
        p.acknowledge();
        p.write(Chip::Master, port::COMMAND, 0x60 | 1);
        assert_eq!(p.master().isr(), 0x01);
    }

    #[test]
    fn cascade_delivers_slave_vectors_and_needs_two_eois() {
        let mut p = pic(false);
        p.set_irq(12, true);
        assert_eq!(p.master().irr() & 0x04, 0x04);
        assert_eq!(p.pending_vector(), Some(0x3c));
        assert_eq!(p.acknowledge(), 0x3c);
        assert_eq!(p.master().isr(), 0x04);
        assert_eq!(p.slave().isr(), 0x10);
        // Master IR1 outranks IR2 in service; IR3 does not.
        p.set_irq(3, true);
        assert_eq!(p.pending_vector(), None);
        eoi(&mut p, Chip::Slave);
        eoi(&mut p, Chip::Master);
        assert_eq!(p.pending_vector(), Some(0x33));
    }

    #[test]
    fn irq2_is_redirected_to_irq9() {
        let mut p = pic(false);
        p.set_irq(2, true);
        assert_eq!(p.acknowledge(), 0x39);
    }

    #[test]
    fn second_slave_request_raises_a_new_cascade_edge() {
        let mut p = pic(true);
        p.set_irq(8, true);
        p.set_irq(9, true);
        assert_eq!(p.acknowledge(), 0x38);
        assert_eq!(p.pending_vector(), Some(0x39));
        assert_eq!(p.acknowledge(), 0x39);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn spurious_interrupts_answer_ir7() {
        let mut p = pic(false);
        assert_eq!(p.acknowledge(), 0x37);
        assert_eq!(p.master().isr(), 0);
        // Master IR2 latched, then the slave's request is masked before INTA.
        p.set_irq(10, true);
        p.write(Chip::Slave, port::DATA, 0x04);
        assert_eq!(p.pending_vector(), Some(0x3f));
        assert_eq!(p.acknowledge(), 0x3f);
        assert_eq!(p.slave().isr(), 0);
    }

    #[test]
    fn auto_eoi_never_sets_isr() {
        let mut p = pic(true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x35);
        assert_eq!(p.master().isr(), 0);
        p.set_irq(6, true);
        assert_eq!(p.pending_vector(), Some(0x36));
    }

    #[test]
    fn rotation_commands() {
        let mut p = pic(false);
        // Set priority: IR4 lowest, so IR5 is highest.
        p.write(Chip::Master, port::COMMAND, 0xc0 | 4);
        p.set_irq(4, true);
        p.set_irq(5, true);
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x35);
        // Rotate on non-specific EOI: IR5 becomes lowest, IR6 highest; IR0 beats IR4.
        p.write(Chip::Master, port::COMMAND, 0xa0);
        assert_eq!(p.master().isr(), 0);
        assert_eq!(p.acknowledge(), 0x30);
        // Rotate on specific EOI for IR0: IR1 becomes highest, IR4 still waits its turn.
        p.write(Chip::Master, port::COMMAND, 0xe0);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31);
        eoi(&mut p, Chip::Master);
        assert_eq!(p.acknowledge(), 0x34);
    }

    #[test]
    fn rotate_in_auto_eoi_mode() {
        let mut p = pic(true);
        p.write(Chip::Master, port::COMMAND, 0x80);
        p.set_irq(0, true);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x30);
        p.set_irq(0, false);
        p.set_irq(0, true);
        // IR0 just got lowest priority.
        assert_eq!(p.acknowledge(), 0x31);
        p.write(Chip::Master, port::COMMAND, 0x00);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x33);
        assert_eq!(p.acknowledge(), 0x30, "no more rotation");
    }

    #[test]
    fn ocw3_selects_irr_or_isr_reads() {
        let mut p = pic(false);
        p.set_irq(1, true);
        p.set_irq(6, true);
        p.acknowledge();
        assert_eq!(p.read(Chip::Master, port::COMMAND), 0x40, "IRR by default");
        p.write(Chip::Master, port::COMMAND, 0x0b);
        assert_eq!(p.read(Chip::Master, port::COMMAND), 0x02);
        p.write(Chip::Master, port::COMMAND, 0x08); // RR=0: no change
        assert_eq!(p.read(Chip::Master, port::COMMAND), 0x02);
        p.write(Chip::Master, port::COMMAND, 0x0a);
        assert_eq!(p.read(Chip::Master, port::COMMAND), 0x40);
    }

    #[test]
    fn poll_mode_acknowledges() {
        let mut p = pic(false);
        p.set_irq(3, true);
        p.write(Chip::Master, port::COMMAND, 0x0c);
        assert_eq!(p.read(Chip::Master, port::COMMAND), 0x83);
        assert_eq!(p.master().isr(), 0x08);
        p.write(Chip::Master, port::COMMAND, 0x0c);
        assert_eq!(p.read(Chip::Master, port::COMMAND), 0x00);
        // The poll is one-shot: the next read is IRR again.
        assert_eq!(p.read(Chip::Master, port::COMMAND), 0x00);
    }

    #[test]
    fn special_mask_mode_lets_lower_levels_through() {
        let mut p = pic(false);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31);
        p.set_irq(5, true);
        assert_eq!(p.pending_vector(), None);
        // Mask IR1 and enter special mask mode: IR5 may now interrupt IR1's handler.
        p.write(Chip::Master, port::DATA, 0x02);
        p.write(Chip::Master, port::COMMAND, 0x68);
        assert_eq!(p.pending_vector(), Some(0x35));
        p.write(Chip::Master, port::COMMAND, 0x48);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn special_fully_nested_allows_higher_slave_requests() {
        let mut p = DualPic::new();
        for (chip, base, icw3, icw4) in
            [(Chip::Master, 0x30, 0x04, 0x11), (Chip::Slave, 0x38, 0x02, 0x01)]
        {
            p.write(chip, port::COMMAND, 0x11);
            p.write(chip, port::DATA, base);
            p.write(chip, port::DATA, icw3);
            p.write(chip, port::DATA, icw4);
        }
        p.set_irq(12, true);
        assert_eq!(p.acknowledge(), 0x3c);
        p.set_irq(9, true);
        assert_eq!(p.acknowledge(), 0x39);
        assert_eq!(p.slave().isr(), 0x12);
        // Lower master inputs stay blocked behind IR2.
        p.set_irq(4, true);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn level_triggered_irr_follows_the_line() {
        let mut p = DualPic::new();
        p.write(Chip::Master, port::COMMAND, 0x19); // LTIM, cascade, IC4
        p.write(Chip::Master, port::DATA, 0x30);
        p.write(Chip::Master, port::DATA, 0x04);
        p.write(Chip::Master, port::DATA, 0x01);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x35);
        assert_eq!(p.master().irr() & 0x20, 0x20, "still asserted");
        eoi(&mut p, Chip::Master);
        assert_eq!(p.pending_vector(), Some(0x35));
        p.set_irq(5, false);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn icw1_resets_masks_and_service_state() {
        let mut p = pic(false);
        p.write(Chip::Master, port::DATA, 0xff);
        p.write(Chip::Master, port::DATA, 0x00);
        p.set_irq(1, true);
        p.acknowledge();
        p.set_irq(7, true);
        p.write(Chip::Master, port::COMMAND, 0x11);
        assert!(!p.master().initialized());
        assert_eq!((p.master().isr(), p.master().irr(), p.master().imr()), (0, 0, 0));
        // Still-high lines need a new edge after initialization.
        p.write(Chip::Master, port::DATA, 0x40);
        p.write(Chip::Master, port::DATA, 0x04);
        p.write(Chip::Master, port::DATA, 0x01);
        p.set_irq(7, true);
        assert_eq!(p.pending_vector(), None);
        p.set_irq(7, false);
        p.set_irq(7, true);
        assert_eq!(p.pending_vector(), Some(0x47));
    }

    #[test]
    fn out_of_range_inputs_are_harmless() {
        let mut p = pic(false);
        p.set_irq(16, true);
        p.set_irq(255, true);
        assert_eq!(p.read(Chip::Master, 2), 0xff);
        p.write(Chip::Slave, u64::MAX, 0xff);
        let mut w = [0u8; 2];
        p.read_bytes(Chip::Master, 0, &mut w);
        assert_eq!(w, [0, 0]);
        assert_eq!(p.pending_vector(), None);
    }
}
