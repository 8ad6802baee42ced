//! The ACPI fixed-hardware PM registers (ACPI 6 §4.8) the FADT declares: the PM1a event
//! block (status and enable), the PM1a control block and the PM timer, one port window
//! at [`BASE_PORT`] laid out as a PIIX4-style chipset does (0x600 event, 0x604 control,
//! 0x608 timer), so the guest powers off the VM the ACPI way and calibrates against a
//! timer that never drifts from the PIT.
//!
//! The system is always in ACPI mode (the FADT's SMI_CMD is 0): SCI_EN reads 1 and cannot
//! be cleared. Writing SLP_EN with SLP_TYP = [`SLP_TYP_S5`] (the value the DSDT's `\_S5_`
//! gives) latches a power-off request for the VMM ([`AcpiPm::take_power_off`]); the
//! other sleep types name no state the DSDT offers and are ignored, so a guest that tries
//! one simply keeps running.
//!
//! No SCI is ever raised: there is no power or sleep button, no RTC wake and no GPE, and
//! the one status bit that moves on its own (TMR_STS, on each toggle of the timer's top
//! bit) is only there for a guest that polls it. Enable bits the ACPI spec defines are
//! kept as written so that drivers which enable an event and read it back (ACPICA does
//! for the global lock, Linux's RTC driver for the RTC event) see the hardware answer and
//! log no errors.
//!
//! The timer is the VMM's clock, not a host clock: the VMM calls [`AcpiPm::set_time`]
//! with its PIT input clocks before an access, and the timer reads
//! `3 × pit_clocks mod 2^TIMER_BITS` (3 × 1.193182 MHz is the 3.579545 MHz PM timer
//! rate, to the PIT constant's rounding).

use crate::bus::BusDevice;

/// The first port of the window.
pub const BASE_PORT: u16 = protocols::devices::ACPI_PM_PORT;
/// Offset of the PM1a event block (PM1_STS, then PM1_EN).
pub const PM1_EVT: u16 = 0;
/// Bytes of the PM1a event block: two 16-bit registers.
pub const PM1_EVT_LEN: u8 = 4;
/// Offset of the PM1a control block (PM1_CNT).
pub const PM1_CNT: u16 = 4;
/// Bytes of the PM1a control block.
pub const PM1_CNT_LEN: u8 = 2;
/// Offset of the PM timer (PM_TMR).
pub const PM_TMR: u16 = 8;
/// Bytes of the PM timer register.
pub const PM_TMR_LEN: u8 = 4;
/// Bytes of the whole window (offsets 6-7 are a hole that reads all ones).
pub const WINDOW_LEN: u64 = protocols::devices::ACPI_PM_PORTS as u64;

/// Width of the PM timer: 32 bits, so the FADT sets TMR_VAL_EXT and a guest that reads the
/// timer twice a few seconds apart sees no wrap (2^32 ticks are 20 minutes).
pub const TIMER_BITS: u32 = 32;
/// PM timer ticks per PIT input clock: the PM timer runs at exactly three times the PIT's
/// rate (both derive from the PC's 14.31818 MHz crystal: ÷4 and ÷12).
pub const TICKS_PER_PIT_CLOCK: u64 = 3;
/// The timer's value is the tick count masked to [`TIMER_BITS`].
const TIMER_MASK: u64 = u64::MAX >> (64 - TIMER_BITS);

/// The SLP_TYP value of S5 (soft off), as the DSDT's `\_S5_` package gives it.
pub const SLP_TYP_S5: u8 = 5;

/// PM1_STS and PM1_EN bits (ACPI 6 tables 4.16 and 4.17).
pub mod pm1 {
    /// TMR_STS / TMR_EN: the timer's top bit toggled.
    pub const TMR: u16 = 1 << 0;
    /// BM_STS: bus master activity (status only).
    pub const BM_STS: u16 = 1 << 4;
    /// GBL_STS / GBL_EN: the firmware released the global lock.
    pub const GBL: u16 = 1 << 5;
    /// PWRBTN_STS / PWRBTN_EN: the fixed power button.
    pub const PWRBTN: u16 = 1 << 8;
    /// SLPBTN_STS / SLPBTN_EN: the fixed sleep button.
    pub const SLPBTN: u16 = 1 << 9;
    /// RTC_STS / RTC_EN: the RTC alarm.
    pub const RTC: u16 = 1 << 10;
    /// PCIEXP_WAKE_STS (status only here: PCIEXP_WAKE_DIS is not kept).
    pub const PCIEXP_WAKE_STS: u16 = 1 << 14;
    /// WAK_STS: the system woke from a sleep state (status only).
    pub const WAK_STS: u16 = 1 << 15;
    /// Every status bit the spec defines: a guest may write any of them to clear it.
    pub const STATUS_BITS: u16 =
        TMR | BM_STS | GBL | PWRBTN | SLPBTN | RTC | PCIEXP_WAKE_STS | WAK_STS;
    /// The enable bits kept as written; the others read 0.
    pub const ENABLE_BITS: u16 = TMR | GBL | PWRBTN | SLPBTN | RTC;
}

/// PM1_CNT bits (ACPI 6 table 4.18).
pub mod cnt {
    /// SCI_EN: SCI (ACPI mode) rather than SMI; always 1 here.
    pub const SCI_EN: u16 = 1 << 0;
    /// BM_RLD: bus master requests end C3 (kept, has no effect).
    pub const BM_RLD: u16 = 1 << 1;
    /// GBL_RLS: the OS released the global lock to the firmware (write-only, no firmware).
    pub const GBL_RLS: u16 = 1 << 2;
    /// The shift of SLP_TYP, a 3-bit field.
    pub const SLP_TYP_SHIFT: u32 = 10;
    /// SLP_TYP: the sleep type SLP_EN enters.
    pub const SLP_TYP: u16 = 0b111 << SLP_TYP_SHIFT;
    /// SLP_EN: enter the sleep type in SLP_TYP (write-only, reads 0).
    pub const SLP_EN: u16 = 1 << 13;
    /// The bits kept as written.
    pub const KEPT: u16 = BM_RLD | SLP_TYP;
}

/// The PM register block of one VM.
#[derive(Clone, Debug, Default)]
pub struct AcpiPm {
    status: u16,
    enable: u16,
    /// The kept PM1_CNT bits ([`cnt::KEPT`]).
    control: u16,
    /// PM timer ticks at the time last set, `3 × pit_clocks` modulo 2^64 (the timer's
    /// width divides 64, so truncating this is the timer).
    ticks: u64,
    power_off: bool,
}

impl AcpiPm {
    /// The block at reset: no status, nothing enabled, the timer at 0.
    pub const fn new() -> Self {
        Self { status: 0, enable: 0, control: 0, ticks: 0, power_off: false }
    }

    /// Tell the block the VM's time, in PIT input clocks since start; call it before each
    /// access so that the timer moves between two reads. TMR_STS is set when the
    /// timer's top bit has toggled since the last call.
    pub fn set_time(&mut self, pit_clocks: u64) {
        let ticks = pit_clocks.wrapping_mul(TICKS_PER_PIT_CLOCK);
        // The top bit toggled when the count crossed a multiple of half the range.
        let half = TIMER_MASK / 2 + 1;
        if ticks / half != self.ticks / half {
            self.status |= pm1::TMR;
        }
        self.ticks = ticks;
    }

    /// What PM_TMR reads now.
    pub fn timer(&self) -> u32 {
        u32::try_from(self.ticks & TIMER_MASK).unwrap_or(u32::MAX)
    }

    /// Whether the guest asked for S5 (soft off) since the last call (clears it).
    pub fn take_power_off(&mut self) -> bool {
        core::mem::take(&mut self.power_off)
    }

    /// PM1_STS.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// PM1_EN.
    pub fn enable(&self) -> u16 {
        self.enable
    }

    /// PM1_CNT as the guest reads it.
    pub fn control(&self) -> u16 {
        self.control | cnt::SCI_EN
    }

    /// The byte at `offset` of the window.
    fn read_byte(&self, offset: u64) -> u8 {
        let pm1_evt = u64::from(PM1_EVT);
        let pm1_cnt = u64::from(PM1_CNT);
        let pm_tmr = u64::from(PM_TMR);
        let byte = |word: u16, index: u64| word.to_le_bytes().get(index as usize).copied();
        let value = match offset {
            o if o.wrapping_sub(pm1_evt) < 2 => byte(self.status, o.wrapping_sub(pm1_evt)),
            o if o.wrapping_sub(pm1_evt) < u64::from(PM1_EVT_LEN) => {
                byte(self.enable, o.wrapping_sub(pm1_evt).wrapping_sub(2))
            }
            o if o.wrapping_sub(pm1_cnt) < u64::from(PM1_CNT_LEN) => {
                byte(self.control(), o.wrapping_sub(pm1_cnt))
            }
            o if o.wrapping_sub(pm_tmr) < u64::from(PM_TMR_LEN) => {
                self.timer().to_le_bytes().get(o.wrapping_sub(pm_tmr) as usize).copied()
            }
            _ => None,
        };
        value.unwrap_or(0xff)
    }

    /// Accept the byte the guest writes at `offset`: registers take their bytes one at a
    /// time, merged into the rest of the register, as the chipset's byte lanes do.
    fn write_byte(&mut self, offset: u64, value: u8) {
        let pm1_evt = u64::from(PM1_EVT);
        let pm1_cnt = u64::from(PM1_CNT);
        // The byte in its lane of the 16-bit register (even offsets are the low byte).
        let lane = |o: u64, byte: u8| {
            if o & 1 == 0 {
                u16::from_le_bytes([byte, 0])
            } else {
                u16::from_le_bytes([0, byte])
            }
        };
        let bits = |o: u64| lane(o, value);
        let mask = |o: u64| lane(o, 0xff);
        match offset {
            o if o.wrapping_sub(pm1_evt) < 2 => self.status &= !(bits(o) & pm1::STATUS_BITS),
            o if o.wrapping_sub(pm1_evt) < u64::from(PM1_EVT_LEN) => {
                self.enable = (self.enable & !mask(o)) | (bits(o) & pm1::ENABLE_BITS);
            }
            o if o.wrapping_sub(pm1_cnt) < u64::from(PM1_CNT_LEN) => {
                let written = (self.control & !mask(o)) | (bits(o) & mask(o));
                self.control = written & cnt::KEPT;
                // SLP_TYP and SLP_EN share the high byte, so one byte write is the whole
                // request; a low-byte write never carries SLP_EN.
                let slp_typ = (written & cnt::SLP_TYP) >> cnt::SLP_TYP_SHIFT;
                if written & cnt::SLP_EN != 0 && slp_typ == u16::from(SLP_TYP_S5) {
                    self.power_off = true;
                }
            }
            // The timer is read-only and the rest of the window is a hole.
            _ => {}
        }
    }
}

impl BusDevice for AcpiPm {
    /// Each byte reads from the register it falls in (the timer at the time last set);
    /// bytes outside the registers read 0xFF.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut at = offset;
        for byte in data.iter_mut() {
            *byte = self.read_byte(at);
            at = at.wrapping_add(1);
        }
    }

    /// Each byte merges into the register it falls in; bytes outside them are dropped.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut at = offset;
        for &byte in data {
            self.write_byte(at, byte);
            at = at.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cnt, pm1, AcpiPm, BusDevice, SLP_TYP_S5, TIMER_BITS};
    use crate::devices::pit8254::PIT_HZ;

    fn read(pm: &mut AcpiPm, offset: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        pm.read(offset, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    /// A PM1_CNT value requesting sleep type `typ`.
    fn sleep(typ: u16) -> u16 {
        (typ << cnt::SLP_TYP_SHIFT) | cnt::SLP_EN
    }

    #[test]
    fn the_timer_counts_three_ticks_per_pit_clock_and_wraps_at_32_bits() {
        assert_eq!(TIMER_BITS, 32);
        let mut pm = AcpiPm::new();
        assert_eq!(read(&mut pm, 8, 4), 0);
        pm.set_time(1);
        assert_eq!(read(&mut pm, 8, 4), 3);
        pm.set_time(PIT_HZ);
        assert_eq!(read(&mut pm, 8, 4), 3 * PIT_HZ, "one second is 3,579,546 ticks");
        assert_eq!(3 * PIT_HZ, 3_579_546);
        // The counter wraps: 2^32 / 3 PIT clocks is 1,431,655,765.33.
        pm.set_time(1_431_655_765);
        assert_eq!(pm.timer(), 0xffff_ffff);
        pm.set_time(1_431_655_766);
        assert_eq!(pm.timer(), 2);
        // Far in the future the product wraps at 2^64, which 2^32 divides.
        pm.set_time(u64::MAX);
        assert_eq!(pm.timer(), u64::MAX.wrapping_mul(3) as u32);
        // Bytes and words of the register, and writes to it are dropped.
        pm.set_time(0x0123_4567);
        let t = (0x0123_4567u64 * 3) & 0xffff_ffff;
        assert_eq!(read(&mut pm, 8, 2), t & 0xffff);
        assert_eq!(read(&mut pm, 10, 2), t >> 16);
        assert_eq!(read(&mut pm, 11, 1), t >> 24);
        pm.write(8, &[0, 0, 0, 0]);
        assert_eq!(read(&mut pm, 8, 4), t);
    }

    #[test]
    fn tmr_sts_is_set_when_the_top_bit_toggles_and_cleared_by_writing_one() {
        let mut pm = AcpiPm::new();
        pm.set_time(100);
        assert_eq!(pm.status(), 0);
        // 2^31 ticks is 715,827,882.67 PIT clocks: the top bit sets there...
        pm.set_time(715_827_882);
        assert_eq!(pm.status(), 0);
        pm.set_time(715_827_883);
        assert_eq!(read(&mut pm, 0, 2), u64::from(pm1::TMR));
        // ...write-1-to-clear: a zero leaves it, a one clears it.
        pm.write(0, &[0, 0]);
        assert_eq!(pm.status(), pm1::TMR);
        pm.write(0, &[0xff, 0xff]);
        assert_eq!(pm.status(), 0);
        // ...and again when it clears at the wrap.
        pm.set_time(1_431_655_766);
        assert_eq!(pm.status(), pm1::TMR);
        pm.write(0, &[1]);
        assert_eq!(pm.status(), 0);
        pm.set_time(1_431_655_767);
        assert_eq!(pm.status(), 0, "no toggle, no status");
    }

    #[test]
    fn enable_bits_that_exist_are_kept_and_bytes_merge() {
        let mut pm = AcpiPm::new();
        pm.write(2, &0xffffu16.to_le_bytes());
        assert_eq!(pm.enable(), pm1::ENABLE_BITS);
        assert_eq!(
            read(&mut pm, 2, 2),
            u64::from(pm1::TMR | pm1::GBL | pm1::PWRBTN | pm1::SLPBTN | pm1::RTC)
        );
        // A byte write changes only its byte.
        pm.write(3, &[0]);
        assert_eq!(pm.enable(), pm1::TMR | pm1::GBL);
        pm.write(2, &[0]);
        assert_eq!(pm.enable(), 0);
        pm.write(3, &[(pm1::PWRBTN >> 8) as u8]);
        assert_eq!(pm.enable(), pm1::PWRBTN);
        // A 32-bit access covers status and enable together.
        assert_eq!(read(&mut pm, 0, 4), u64::from(pm1::PWRBTN) << 16);
        // Writing enable bits never raises status, and no event sets any.
        pm.write(0, &[0, 0, 0xff, 0xff]);
        assert_eq!((pm.status(), pm.enable()), (0, pm1::ENABLE_BITS));
    }

    #[test]
    fn sci_en_always_reads_one_and_slp_en_reads_zero() {
        let mut pm = AcpiPm::new();
        assert_eq!(read(&mut pm, 4, 2), u64::from(cnt::SCI_EN));
        pm.write(4, &0u16.to_le_bytes());
        assert_eq!(pm.control(), cnt::SCI_EN, "ACPI mode cannot be left");
        pm.write(4, &0xffffu16.to_le_bytes());
        // SLP_TYP 7 with SLP_EN: not S5, ignored, but the type is kept.
        assert_eq!(pm.control(), cnt::SCI_EN | cnt::BM_RLD | cnt::SLP_TYP);
        assert!(!pm.take_power_off());
        assert_eq!(read(&mut pm, 5, 1), u64::from(cnt::SLP_TYP >> 8));
        pm.write(5, &[0]);
        assert_eq!(pm.control(), cnt::SCI_EN | cnt::BM_RLD);
        pm.write(4, &[0]);
        assert_eq!(pm.control(), cnt::SCI_EN);
    }

    #[test]
    fn s5_with_slp_en_is_a_power_off_request() {
        let mut pm = AcpiPm::new();
        // ACPICA's sequence: SLP_TYP first, then SLP_TYP | SLP_EN, SCI_EN preserved.
        let typ = u16::from(SLP_TYP_S5) << cnt::SLP_TYP_SHIFT;
        pm.write(4, &(cnt::SCI_EN | typ).to_le_bytes());
        assert!(!pm.take_power_off(), "SLP_TYP alone does nothing");
        pm.write(4, &(cnt::SCI_EN | sleep(5)).to_le_bytes());
        assert!(pm.take_power_off());
        assert!(!pm.take_power_off(), "taken once");
        assert_eq!(pm.control(), cnt::SCI_EN | typ, "SLP_EN is not kept");
        // The high byte alone carries the whole request.
        pm.write(5, &[(sleep(5) >> 8) as u8]);
        assert!(pm.take_power_off());
        // Other sleep types are ignored; so is SLP_EN in a low-byte write.
        for typ in [0, 1, 2, 3, 4, 6, 7] {
            pm.write(4, &sleep(typ).to_le_bytes());
            assert!(!pm.take_power_off(), "SLP_TYP {typ}");
        }
        pm.write(4, &[0xff]);
        assert!(!pm.take_power_off());
    }

    #[test]
    fn the_hole_and_offsets_past_the_window_read_all_ones_and_drop_writes() {
        let mut pm = AcpiPm::new();
        pm.set_time(5);
        for offset in [6, 7, 12, 13, 0x100, u64::MAX] {
            assert_eq!(read(&mut pm, offset, 1), 0xff, "offset {offset:#x}");
            pm.write(offset, &[0xff]);
        }
        assert_eq!((pm.status(), pm.enable(), pm.control()), (0, 0, cnt::SCI_EN));
        assert!(!pm.take_power_off());
        // An access straddling PM1_CNT and the hole reads each byte where it falls.
        assert_eq!(read(&mut pm, 4, 4), 0xffff_0001);
        // An access wrapping the address space does not panic.
        let mut b = [0u8; 4];
        pm.read(u64::MAX - 1, &mut b);
        assert_eq!(b, [0xff, 0xff, 0x00, 0x00]);
        pm.write(u64::MAX, &[0xff, 0xff, 0xff]);
        assert_eq!(pm.status(), 0);
        pm.read(0, &mut []);
        pm.write(0, &[]);
    }
}
