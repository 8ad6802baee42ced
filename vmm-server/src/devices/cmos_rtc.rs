//! The MC146818 real-time clock and CMOS RAM behind ports 0x70 (index) and 0x71 (data).
//!
//! Wall time is the Unix time the VMM hands in before each read ([`CmosRtc::set_host_time`]:
//! the platform gives the VM's start time plus the guest time its PIT has counted),
//! plus an offset the guest changes by writing the clock registers, so the model never
//! reads a clock itself and tests are deterministic. An update is never in progress
//! (register A's UIP reads 0): reads are instantaneous, which is exactly what the UIP
//! protocol guards against, and Linux's boot-time read loops on UIP. The periodic,
//! alarm and update-ended interrupts are not modelled; register C reads 0.

use crate::bus::BusDevice;

/// Offset of the index port (0x70) in the device's window.
pub const INDEX: u64 = 0;
/// Offset of the data port (0x71) in the device's window.
pub const DATA: u64 = 1;

/// Register A: 32.768 kHz time base, 1024 Hz rate, as firmware programs it.
const REG_A_DEFAULT: u8 = 0x26;
/// Register B: 24-hour mode.
pub const REG_B_24H: u8 = 0x02;
/// Register B: binary (not BCD) data mode.
pub const REG_B_BINARY: u8 = 0x04;
/// Register B: SET, updates halted while the guest writes the clock.
pub const REG_B_SET: u8 = 0x80;
/// Register D: valid RAM and time.
const REG_D_VRT: u8 = 0x80;
/// The century byte (IBM PC convention).
pub const CENTURY: u8 = 0x32;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;

/// Broken-down civil time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, e.g. 2024.
    pub year: i64,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59.
    pub second: u8,
    /// 0 = Sunday.
    pub weekday: u8,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years).
// Only `era` is unbounded and it goes through saturating operations; every other
// intermediate is confined to one 400-year era (yoe < 400, doy < 366, doe < 146_097).
#[allow(clippy::arithmetic_side_effects)]
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let m = i64::from(month.clamp(1, 12));
    let d = i64::from(day.clamp(1, 31));
    let y = if m <= 2 { year.saturating_sub(1) } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9).rem_euclid(12);
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.saturating_mul(146_097).saturating_add(doe).saturating_sub(719_468)
}

/// The civil date and time of a Unix timestamp.
// As in `days_from_civil`: outside the saturating `era` terms all values are bounded
// (doe < 146_097, mp < 12, rem < 86_400).
#[allow(clippy::arithmetic_side_effects)]
pub fn civil_from_unix(secs: i64) -> DateTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = era.saturating_mul(400).saturating_add(yoe).saturating_add(i64::from(month <= 2));
    DateTime {
        year,
        month,
        day,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
        // 1970-01-01 was a Thursday.
        weekday: (days.rem_euclid(7) as u8 + 4) % 7,
    }
}

/// The Unix timestamp of a civil date and time.
// The time-of-day sum is at most 255 * 3600 + 255 * 60 + 255.
#[allow(clippy::arithmetic_side_effects)]
pub fn unix_from_civil(t: &DateTime) -> i64 {
    days_from_civil(t.year, t.month, t.day)
        .saturating_mul(86_400)
        .saturating_add(i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second))
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4).wrapping_mul(10).wrapping_add(v & 0x0f)
}

/// The RTC and its 128 bytes of CMOS RAM.
#[derive(Clone, Debug)]
pub struct CmosRtc {
    ram: [u8; 128],
    index: u8,
    host_time: i64,
    /// Guest time minus host time, in seconds.
    offset: i64,
    nmi_disabled: bool,
}

impl CmosRtc {
    /// An RTC showing `host_unix_secs`, in BCD 24-hour mode, with zeroed CMOS RAM.
    pub fn new(host_unix_secs: i64) -> Self {
        let mut rtc = Self {
            ram: [0; 128],
            index: 0,
            host_time: host_unix_secs,
            offset: 0,
            nmi_disabled: false,
        };
        rtc.set_ram(REG_A, REG_A_DEFAULT);
        rtc.set_ram(REG_B, REG_B_24H);
        rtc.set_ram(REG_D, REG_D_VRT);
        rtc
    }

    /// Tell the RTC the host's current Unix time.
    pub fn set_host_time(&mut self, host_unix_secs: i64) {
        self.host_time = host_unix_secs;
    }

    /// The time the guest sees, as a Unix timestamp.
    pub fn guest_time(&self) -> i64 {
        self.host_time.saturating_add(self.offset)
    }

    /// Whether the guest last set bit 7 of the index port (NMI disable).
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// Store a CMOS RAM byte (firmware-owned data such as memory sizes) before boot.
    pub fn set_ram(&mut self, index: u8, value: u8) {
        if let Some(b) = self.ram.get_mut(usize::from(index)) {
            *b = value;
        }
    }

    fn reg_b(&self) -> u8 {
        self.ram.get(usize::from(REG_B)).copied().unwrap_or(REG_B_24H)
    }

    /// Encode a clock value in the guest's chosen data mode.
    fn encode(&self, v: u8) -> u8 {
        if self.reg_b() & REG_B_BINARY != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.reg_b() & REG_B_BINARY != 0 {
            v
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.reg_b() & REG_B_24H != 0 {
            return self.encode(hour);
        }
        let pm = hour >= 12;
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if pm { 0x80 } else { 0 }
    }

    fn decode_hour(&self, raw: u8) -> u8 {
        if self.reg_b() & REG_B_24H != 0 {
            return self.decode(raw);
        }
        let h12 = self.decode(raw & 0x7f) % 12;
        if raw & 0x80 != 0 {
            h12.wrapping_add(12)
        } else {
            h12
        }
    }

    fn read_reg(&self, index: u8) -> u8 {
        let t = civil_from_unix(self.guest_time());
        match index {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            WEEKDAY => self.encode(t.weekday.wrapping_add(1)),
            DAY => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(t.year.rem_euclid(100) as u8),
            CENTURY => self.encode(t.year.div_euclid(100).clamp(0, 99) as u8),
            REG_C => 0,
            _ => self.ram.get(usize::from(index)).copied().unwrap_or(0xff),
        }
    }

    fn write_reg(&mut self, index: u8, value: u8) {
        let mut t = civil_from_unix(self.guest_time());
        let v = self.decode(value);
        match index {
            SECONDS => t.second = v.min(59),
            MINUTES => t.minute = v.min(59),
            HOURS => t.hour = self.decode_hour(value).min(23),
            DAY => t.day = v.clamp(1, 31),
            MONTH => t.month = v.clamp(1, 12),
            YEAR => {
                t.year =
                    t.year.div_euclid(100).saturating_mul(100).saturating_add(i64::from(v.min(99)))
            }
            CENTURY => {
                t.year =
                    i64::from(v.min(99)).saturating_mul(100).saturating_add(t.year.rem_euclid(100))
            }
            // The weekday follows from the date; writes are accepted and ignored.
            WEEKDAY => return,
            // UIP is read-only.
            REG_A => {
                if let Some(b) = self.ram.get_mut(usize::from(REG_A)) {
                    *b = value & 0x7f;
                }
                return;
            }
            REG_C | REG_D => return,
            _ => {
                if let Some(b) = self.ram.get_mut(usize::from(index)) {
                    *b = value;
                }
                return;
            }
        }
        self.offset = unix_from_civil(&t).saturating_sub(self.host_time);
    }
}

impl BusDevice for CmosRtc {
    /// Offsets [`INDEX`] (reads back 0xff: write-only) and [`DATA`]; one byte per access.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            DATA => self.read_reg(self.index),
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
            INDEX => {
                self.nmi_disabled = value & 0x80 != 0;
                self.index = value & 0x7f;
            }
            DATA => self.write_reg(self.index, value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        civil_from_unix, unix_from_civil, BusDevice, CmosRtc, DateTime, DATA, INDEX, REG_B_24H,
        REG_B_BINARY,
    };

    fn rd(r: &mut CmosRtc, index: u8) -> u8 {
        r.write(INDEX, &[index]);
        let mut b = [0];
        r.read(DATA, &mut b);
        b[0]
    }

    fn wr(r: &mut CmosRtc, index: u8, v: u8) {
        r.write(INDEX, &[index]);
        r.write(DATA, &[v]);
    }

    /// 2024-02-29 13:45:07 UTC, a Thursday.
    const LEAP_DAY: i64 = 1_709_214_307;

    #[test]
    fn calendar_conversion_round_trips() {
        let t = civil_from_unix(LEAP_DAY);
        assert_eq!(
            t,
            DateTime { year: 2024, month: 2, day: 29, hour: 13, minute: 45, second: 7, weekday: 4 }
        );
        assert_eq!(unix_from_civil(&t), LEAP_DAY);
        assert_eq!(civil_from_unix(0).weekday, 4);
        assert_eq!(civil_from_unix(-1).year, 1969);
        for secs in [0, 951_782_400, 4_102_444_800, -86_400 * 365 * 300, LEAP_DAY] {
            assert_eq!(unix_from_civil(&civil_from_unix(secs)), secs);
        }
    }

    #[test]
    fn reads_time_in_bcd_24h() {
        let mut r = CmosRtc::new(LEAP_DAY);
        assert_eq!(rd(&mut r, 0x00), 0x07);
        assert_eq!(rd(&mut r, 0x02), 0x45);
        assert_eq!(rd(&mut r, 0x04), 0x13);
        assert_eq!(rd(&mut r, 0x06), 0x05, "Thursday is day 5, Sunday = 1");
        assert_eq!(rd(&mut r, 0x07), 0x29);
        assert_eq!(rd(&mut r, 0x08), 0x02);
        assert_eq!(rd(&mut r, 0x09), 0x24);
        assert_eq!(rd(&mut r, 0x32), 0x20);
        assert_eq!(rd(&mut r, 0x0a) & 0x80, 0, "never in update");
        assert_eq!(rd(&mut r, 0x0d), 0x80);
        r.set_host_time(LEAP_DAY + 60);
        assert_eq!(rd(&mut r, 0x02), 0x46);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut r = CmosRtc::new(LEAP_DAY);
        wr(&mut r, 0x0b, REG_B_BINARY);
        assert_eq!(rd(&mut r, 0x04), 0x81, "1 PM");
        assert_eq!(rd(&mut r, 0x02), 45);
        wr(&mut r, 0x0b, REG_B_BINARY | REG_B_24H);
        assert_eq!(rd(&mut r, 0x04), 13);
    }

    #[test]
    fn guest_writes_move_its_clock_only() {
        let mut r = CmosRtc::new(LEAP_DAY);
        wr(&mut r, 0x0b, 0x80 | REG_B_24H);
        wr(&mut r, 0x09, 0x99);
        wr(&mut r, 0x32, 0x19);
        wr(&mut r, 0x04, 0x23);
        wr(&mut r, 0x0b, REG_B_24H);
        assert_eq!(rd(&mut r, 0x09), 0x99);
        assert_eq!(rd(&mut r, 0x32), 0x19);
        assert_eq!(rd(&mut r, 0x04), 0x23);
        r.set_host_time(LEAP_DAY + 3600);
        assert_eq!(rd(&mut r, 0x04), 0x00, "the offset persists as host time moves");
    }

    #[test]
    fn cmos_ram_and_nmi_bit() {
        let mut r = CmosRtc::new(0);
        wr(&mut r, 0x40, 0xa5);
        assert_eq!(rd(&mut r, 0x40), 0xa5);
        r.write(INDEX, &[0x80 | 0x40]);
        assert!(r.nmi_disabled());
        let mut b = [0];
        r.read(DATA, &mut b);
        assert_eq!(b[0], 0xa5);
        r.set_ram(0x7f, 1);
        assert_eq!(rd(&mut r, 0x7f), 1);
        wr(&mut r, 0x0c, 0xff);
        assert_eq!(rd(&mut r, 0x0c), 0);
        r.read(INDEX, &mut b);
        assert_eq!(b[0], 0xff);
        // Garbage BCD is clamped, not trusted.
        wr(&mut r, 0x08, 0xff);
        wr(&mut r, 0x07, 0x00);
        let _ = rd(&mut r, 0x08);
        let _ = CmosRtc::new(i64::MAX).guest_time();
        let _ = civil_from_unix(i64::MIN);
    }
}
