//! The local APIC timer: the initial- and current-count registers, the divide
//! configuration and IA32_TSC_DEADLINE, with time taken from the guest's TSC.
//!
//! Like the PIT, the timer never reads a clock: the caller passes the guest TSC, and a
//! running count is stored as the bus time it started at. Bus time is a pure function of
//! the TSC, `floor(tsc × bus_hz / tsc_hz)` in 128-bit arithmetic, so no remainder is
//! carried and any number of calls adds up exactly; a periodic count re-anchors by whole
//! periods of bus clocks, so it never drifts either. The other direction
//! ([`TimerClock::tsc_at`]) rounds up, so a deadline computed from it is never early.
//!
//! The divider's phase starts at the write of the initial count (on hardware it is a
//! free-running prescaler): a count of N with divisor D expires N × D bus clocks later.

use core::num::{NonZeroU128, NonZeroU64};

/// The LVT timer register's mode field (bits 18:17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// 00b: count down once from the initial count.
    OneShot,
    /// 01b: count down and reload from the initial count.
    Periodic,
    /// 10b: fire when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
    /// 11b: reserved; the timer does not run (as in KVM).
    Reserved,
}

impl TimerMode {
    /// The mode an LVT timer value selects.
    pub const fn from_lvt(lvt: u32) -> Self {
        match (lvt >> 17) & 3 {
            0 => Self::OneShot,
            1 => Self::Periodic,
            2 => Self::TscDeadline,
            _ => Self::Reserved,
        }
    }

    /// Whether the initial-count register drives the timer in this mode.
    const fn counts_down(self) -> bool {
        matches!(self, Self::OneShot | Self::Periodic)
    }
}

/// The rates that relate the guest's TSC to the APIC's bus clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerClock {
    tsc_hz: NonZeroU64,
    bus_hz: NonZeroU64,
}

impl TimerClock {
    /// A 1 GHz TSC and bus clock: for a VM whose TSC rate is unknown (its time does not
    /// run, but the model stays consistent).
    pub const NOMINAL: Self = {
        let hz = NonZeroU64::MIN.saturating_add(999_999_999);
        Self { tsc_hz: hz, bus_hz: hz }
    };

    /// A TSC of `tsc_hz` and a bus clock of `bus_hz`; `None` if either is 0. A bus clock
    /// no faster than the TSC (as on every real CPU) keeps bus time within 64 bits for
    /// the TSC's whole range; a faster one saturates near the end of it.
    pub fn new(tsc_hz: u64, bus_hz: u64) -> Option<Self> {
        Some(Self { tsc_hz: NonZeroU64::new(tsc_hz)?, bus_hz: NonZeroU64::new(bus_hz)? })
    }

    /// The bus clock's rate, which a hypervisor CPUID leaf may report.
    pub fn bus_hz(&self) -> u64 {
        self.bus_hz.get()
    }

    /// Whole bus clocks elapsed at guest TSC `tsc`.
    pub fn bus_at(&self, tsc: u64) -> u64 {
        let b = u128::from(tsc).saturating_mul(u128::from(self.bus_hz.get()))
            / NonZeroU128::from(self.tsc_hz);
        u64::try_from(b).unwrap_or(u64::MAX)
    }

    /// The least guest TSC at which `bus` bus clocks have elapsed.
    pub fn tsc_at(&self, bus: u64) -> u64 {
        let t = u128::from(bus)
            .saturating_mul(u128::from(self.tsc_hz.get()))
            .div_ceil(u128::from(self.bus_hz.get()));
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

/// The timer's registers and running state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    clock: TimerClock,
    /// Initial-count register.
    initial: u32,
    /// Divide-configuration register, bits 3, 1 and 0.
    dcr: u32,
    /// While a count runs in one-shot or periodic mode: the bus time its current period
    /// began at.
    start: Option<u64>,
    /// IA32_TSC_DEADLINE; 0 is disarmed.
    deadline: u64,
}

/// The divide-configuration register's writable bits.
pub const DCR_MASK: u32 = 0b1011;

impl Timer {
    /// A timer after reset: no count, divide by 2, no deadline.
    pub const fn new(clock: TimerClock) -> Self {
        Self { clock, initial: 0, dcr: 0, start: None, deadline: 0 }
    }

    /// The clock the timer runs on.
    pub fn clock(&self) -> &TimerClock {
        &self.clock
    }

    /// The initial-count register.
    pub fn initial(&self) -> u32 {
        self.initial
    }

    /// The divide-configuration register.
    pub fn divide_config(&self) -> u32 {
        self.dcr
    }

    /// The divisor the divide configuration selects (SDM: bits 3,1,0 = 000b divide by 2,
    /// 001b by 4, ... 110b by 128, 111b by 1).
    pub fn divisor(&self) -> NonZeroU64 {
        let code = ((self.dcr & 0b1000) >> 1) | (self.dcr & 0b11);
        let div = if code == 7 { 1 } else { 2u64 << code };
        NonZeroU64::new(div).unwrap_or(NonZeroU64::MIN)
    }

    /// Bus clocks per expiry of the current count.
    fn period(&self) -> u64 {
        u64::from(self.initial).saturating_mul(self.divisor().get())
    }

    /// The current-count register at guest TSC `now`: 0 when no count runs and always
    /// in TSC-deadline mode (SDM 11.5.4.1).
    pub fn current_count(&self, mode: TimerMode, now: u64) -> u32 {
        let Some(start) = self.start.filter(|_| mode.counts_down()) else { return 0 };
        let ticks = self.clock.bus_at(now).saturating_sub(start) / self.divisor();
        let initial = u64::from(self.initial);
        let left = match mode {
            TimerMode::Periodic => initial.saturating_sub(ticks.checked_rem(initial).unwrap_or(0)),
            _ => initial.saturating_sub(ticks),
        };
        u32::try_from(left).unwrap_or(u32::MAX)
    }

    /// A write of the initial-count register at guest TSC `now`: a non-zero count starts
    /// counting, 0 stops the timer. Ignored in TSC-deadline mode (SDM 11.5.4.1).
    pub fn set_initial(&mut self, mode: TimerMode, count: u32, now: u64) {
        if mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = count;
        self.start = (count != 0).then(|| self.clock.bus_at(now));
    }

    /// A write of the divide configuration at guest TSC `now`. A running count keeps its
    /// current value and goes on at the new rate, as KVM does (the SDM leaves it open).
    pub fn set_divide(&mut self, value: u32, now: u64) {
        let bus = self.clock.bus_at(now);
        let elapsed = self.start.map(|s| {
            let ticks = bus.saturating_sub(s) / self.divisor();
            ticks.checked_rem(u64::from(self.initial)).unwrap_or(0)
        });
        self.dcr = value & DCR_MASK;
        if let Some(ticks) = elapsed {
            self.start = Some(bus.saturating_sub(ticks.saturating_mul(self.divisor().get())));
        }
    }

    /// The LVT timer's mode changes from `old` to `new`: a transition into or out of
    /// TSC-deadline mode disarms the timer (SDM 11.5.4.1), clearing the initial count
    /// and the deadline as KVM does. One-shot and periodic share the running count.
    pub fn change_mode(&mut self, old: TimerMode, new: TimerMode) {
        if old != new && (old == TimerMode::TscDeadline || new == TimerMode::TscDeadline) {
            self.initial = 0;
            self.start = None;
            self.deadline = 0;
        }
    }

    /// IA32_TSC_DEADLINE as read: the armed deadline in TSC-deadline mode, else 0.
    pub fn deadline(&self, mode: TimerMode) -> u64 {
        if mode == TimerMode::TscDeadline {
            self.deadline
        } else {
            0
        }
    }

    /// A write of IA32_TSC_DEADLINE: arms at `value`, disarms with 0; ignored outside
    /// TSC-deadline mode (SDM 11.5.4.1). A deadline already past fires at the caller's
    /// next [`Timer::expire`].
    pub fn set_deadline(&mut self, mode: TimerMode, value: u64) {
        if mode == TimerMode::TscDeadline {
            self.deadline = value;
        }
    }

    /// The guest TSC of the next expiry, if one is coming.
    pub fn next_expiry(&self, mode: TimerMode) -> Option<u64> {
        match mode {
            TimerMode::OneShot | TimerMode::Periodic => {
                self.start.map(|s| self.clock.tsc_at(s.saturating_add(self.period())))
            }
            TimerMode::TscDeadline => (self.deadline != 0).then_some(self.deadline),
            TimerMode::Reserved => None,
        }
    }

    /// Bring the timer to guest TSC `now`: whether it expired since the last call. A
    /// one-shot count ends; a periodic one re-anchors at its last expiry (expiries
    /// missed in between coalesce into one, as they would in a single IRR bit); a
    /// deadline disarms.
    pub fn expire(&mut self, mode: TimerMode, now: u64) -> bool {
        match mode {
            TimerMode::OneShot | TimerMode::Periodic => {
                let Some(start) = self.start else { return false };
                let period = self.period();
                let elapsed = self.clock.bus_at(now).saturating_sub(start);
                if period == 0 || elapsed < period {
                    return false;
                }
                self.start = if mode == TimerMode::Periodic {
                    let whole = elapsed.checked_div(period).unwrap_or(0).saturating_mul(period);
                    Some(start.saturating_add(whole))
                } else {
                    None
                };
                true
            }
            TimerMode::TscDeadline => {
                if self.deadline == 0 || now < self.deadline {
                    return false;
                }
                self.deadline = 0;
                true
            }
            TimerMode::Reserved => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Timer, TimerClock, TimerMode};

    /// A 2 GHz TSC and a 100 MHz bus: 20 TSC ticks per bus clock.
    fn timer() -> Timer {
        Timer::new(TimerClock::new(2_000_000_000, 100_000_000).unwrap())
    }

    #[test]
    fn divide_configuration_follows_the_sdm_table() {
        let mut t = timer();
        // SDM Figure 11-10: bits 3,1,0.
        let table =
            [(0b0000, 2), (0b0001, 4), (0b0010, 8), (0b0011, 16), (0b1000, 32), (0b1001, 64)];
        for (dcr, div) in table {
            t.set_divide(dcr, 0);
            assert_eq!(t.divisor().get(), div, "{dcr:#b}");
        }
        t.set_divide(0b1010, 0);
        assert_eq!(t.divisor().get(), 128);
        t.set_divide(0b1011, 0);
        assert_eq!(t.divisor().get(), 1);
        t.set_divide(0xffff_fff4, 0);
        assert_eq!(t.divide_config(), 0, "bit 2 and bits 31:4 are reserved");
    }

    #[test]
    fn clock_conversion_is_exact_and_deadlines_round_up() {
        let c = TimerClock::new(3_000_000_000, 1_000_000_000).unwrap();
        assert_eq!(c.bus_at(3), 1);
        assert_eq!(c.bus_at(5), 1);
        assert_eq!(c.tsc_at(1), 3);
        let odd = TimerClock::new(2_999_999_999, 100_000_000).unwrap();
        assert_eq!(odd.tsc_at(1), 30, "29.99... rounds up");
        assert_eq!(odd.bus_at(odd.tsc_at(12_345)), 12_345);
        assert_eq!(odd.bus_at(u64::MAX), 614_891_469_328_615_543, "no overflow");
        assert_eq!(TimerClock::new(0, 1), None);
        assert_eq!(TimerClock::new(1, 0), None);
    }

    #[test]
    fn a_divide_change_keeps_the_current_count() {
        let mut t = timer();
        t.set_initial(TimerMode::OneShot, 1000, 0);
        // Divide by 2: a count every 40 TSC ticks; 100 counts in.
        assert_eq!(t.current_count(TimerMode::OneShot, 4000), 900);
        t.set_divide(0b1011, 4000);
        assert_eq!(t.current_count(TimerMode::OneShot, 4000), 900);
        // Divide by 1 now: a count every 20 ticks.
        assert_eq!(t.current_count(TimerMode::OneShot, 4000 + 20 * 900 - 1), 1);
        assert_eq!(t.next_expiry(TimerMode::OneShot), Some(4000 + 20 * 900));
    }

    #[test]
    fn the_reserved_mode_never_fires() {
        let mut t = timer();
        assert_eq!(TimerMode::from_lvt(3 << 17), TimerMode::Reserved);
        t.set_initial(TimerMode::Reserved, 5, 0);
        assert!(!t.expire(TimerMode::Reserved, u64::MAX));
        assert_eq!(t.next_expiry(TimerMode::Reserved), None);
    }
}
