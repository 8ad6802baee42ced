//! Guest time: the guest's TSC as the host's plus an offset, and the exact conversion
//! between TSC ticks and the PIT's 1,193,182 Hz input clock.
//!
//! The kernel measures the host TSC's rate and publishes it in the vCPU state page
//! ([`protocols::vcpu_page::Clock`]); every exit carries the host TSC it was taken at. The
//! guest's elapsed time is therefore known at each exit without the VMM reading a clock:
//! [`GuestClock::advance_to`] turns the guest TSC since the last call into PIT clocks,
//! carrying the remainder (in 1/`tsc_hz` of a PIT clock) so that the sum over any number
//! of calls is exactly `floor(elapsed TSC × PIT_HZ / tsc_hz)`: no drift, however long the
//! guest runs. The other direction ([`GuestClock::tsc_until`]) rounds up, so a deadline
//! computed from it is never early.
//!
//! A halted guest does not wait in real time: the VMM skips to the next timer edge
//! ([`GuestClock::skip`]), and the guest's TSC must jump with it, or the guest would see
//! a timer interrupt with no time behind it. The skip raises the TSC offset, which the VMM
//! writes into the VMCS.

use crate::devices::pit8254::PIT_HZ;
use protocols::vcpu_page::Clock;

/// The guest's clock, where the kernel knows the TSC's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestClock {
    /// TSC ticks per second, never 0.
    tsc_hz: u64,
    /// The VMX-preemption timer counts once every 2^shift TSC ticks.
    shift: u8,
    /// Guest TSC minus host TSC (wrapping), as the VMCS's TSC offset holds it.
    offset: u64,
    /// The guest TSC up to which time has been counted; `None` until the first exit.
    at: Option<u64>,
    /// `(TSC counted × PIT_HZ) mod tsc_hz`: the part of a PIT clock already elapsed.
    carry: u64,
}

impl GuestClock {
    /// A clock at the rate `clock` gives; `None` when the kernel could not measure it.
    pub fn new(clock: &Clock) -> Option<Self> {
        clock.known().then_some(Self {
            tsc_hz: clock.tsc_hz,
            shift: clock.preemption_timer_shift,
            offset: 0,
            at: None,
            carry: 0,
        })
    }

    /// TSC ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }

    /// The TSC offset the guest runs with.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The guest TSC at host TSC `host_tsc`.
    pub fn guest_tsc(&self, host_tsc: u64) -> u64 {
        host_tsc.wrapping_add(self.offset)
    }

    /// The guest TSC time has been counted up to (`None` before the first exit).
    pub fn counted_to(&self) -> Option<u64> {
        self.at
    }

    /// Count time up to host TSC `host_tsc`: the PIT clocks that passed since the last
    /// call. The first call anchors the clock and returns 0; a TSC at or before the last
    /// one counted (exits are stamped in order, so only after a skip the guest has not
    /// caught up with yet) passes no time.
    pub fn advance_to(&mut self, host_tsc: u64) -> u64 {
        let now = self.guest_tsc(host_tsc);
        let Some(at) = self.at else {
            self.at = Some(now);
            return 0;
        };
        let Some(elapsed) = now.checked_sub(at).filter(|&e| e > 0) else { return 0 };
        self.at = Some(now);
        self.count(elapsed)
    }

    /// Add `elapsed` TSC ticks to the counted time; the whole PIT clocks they complete.
    fn count(&mut self, elapsed: u64) -> u64 {
        let hz = u128::from(self.tsc_hz);
        let total = u128::from(elapsed)
            .saturating_mul(u128::from(PIT_HZ))
            .saturating_add(u128::from(self.carry));
        // The remainder is below `tsc_hz`, a u64; the quotient fits unless `elapsed`
        // spans more than 2^64 PIT clocks (millennia), which saturates.
        self.carry = total.checked_rem(hz).map_or(0, |r| r as u64);
        u64::try_from(total.checked_div(hz).unwrap_or(0)).unwrap_or(u64::MAX)
    }

    /// TSC ticks from the time counted until `clocks` more PIT clocks have passed: the
    /// least `t` with `floor((t × PIT_HZ + carry) / tsc_hz) >= clocks` (0 for 0 clocks).
    pub fn tsc_until(&self, clocks: u64) -> u64 {
        let need = u128::from(clocks)
            .saturating_mul(u128::from(self.tsc_hz))
            .saturating_sub(u128::from(self.carry));
        u64::try_from(need.div_ceil(u128::from(PIT_HZ))).unwrap_or(u64::MAX)
    }

    /// The guest TSC at which `clocks` more PIT clocks will have passed (`None` before
    /// the first exit).
    pub fn deadline(&self, clocks: u64) -> Option<u64> {
        self.at.map(|at| at.saturating_add(self.tsc_until(clocks)))
    }

    /// Jump `clocks` PIT clocks ahead, as if the guest had waited for them: the guest's
    /// TSC moves by the same time, so the offset rises. Returns the new offset, for the
    /// VMCS.
    pub fn skip(&mut self, clocks: u64) -> u64 {
        // By `tsc_until`'s definition these ticks complete exactly `clocks` PIT clocks.
        self.skip_ticks(self.tsc_until(clocks)).0
    }

    /// Jump `ticks` TSC ticks ahead (to an APIC timer's expiry, say): returns the new
    /// offset and the whole PIT clocks the jump completes.
    pub fn skip_ticks(&mut self, ticks: u64) -> (u64, u64) {
        let clocks = self.count(ticks);
        self.at = self.at.map(|at| at.saturating_add(ticks));
        self.offset = self.offset.wrapping_add(ticks);
        (self.offset, clocks)
    }

    /// The guest's TSC offset was set to `offset` by other means (a test hypercall): the
    /// jump is no passage of time, so the time counted moves with it.
    pub fn rebase(&mut self, offset: u64) {
        let jump = offset.wrapping_sub(self.offset);
        self.at = self.at.map(|at| at.wrapping_add(jump));
        self.offset = offset;
    }

    /// The VMX-preemption-timer value that spans `clocks` PIT clocks from the start of a
    /// period (no carry): TSC ticks rounded up, then timer units rounded up, at least 1
    /// (0 would exit at once) and at most `u32::MAX` (the field's width).
    pub fn preemption_ticks(&self, clocks: u64) -> u32 {
        let tsc =
            u128::from(clocks).saturating_mul(u128::from(self.tsc_hz)).div_ceil(u128::from(PIT_HZ));
        let units = tsc.div_ceil(1u128 << self.shift.min(31));
        u32::try_from(units).unwrap_or(u32::MAX).max(1)
    }

    /// The VMX-preemption-timer value that spans `ticks` TSC ticks: rounded up, at least
    /// 1 and at most `u32::MAX`.
    pub fn preemption_units(&self, ticks: u64) -> u32 {
        let units = u128::from(ticks).div_ceil(1u128 << self.shift.min(31));
        u32::try_from(units).unwrap_or(u32::MAX).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::{GuestClock, PIT_HZ};
    use protocols::vcpu_page::Clock;

    fn clock(tsc_hz: u64, shift: u8) -> GuestClock {
        let c = Clock { tsc_hz, preemption_timer_shift: shift, ..Clock::default() };
        GuestClock::new(&c).unwrap()
    }

    #[test]
    fn an_unknown_rate_is_no_clock() {
        assert_eq!(GuestClock::new(&Clock::default()), None);
    }

    #[test]
    fn the_first_exit_anchors() {
        let mut c = clock(3_000_000_000, 0);
        assert_eq!(c.deadline(1), None);
        assert_eq!(c.advance_to(1 << 40), 0);
        assert_eq!(c.counted_to(), Some(1 << 40));
        assert_eq!(c.advance_to(1 << 40), 0, "no time");
        assert_eq!(c.advance_to(1 << 39), 0, "never backwards");
        assert_eq!(c.counted_to(), Some(1 << 40));
    }

    /// Hours of exits at odd intervals count exactly the PIT clocks of the whole span.
    #[test]
    fn long_spans_convert_exactly_without_drift() {
        for hz in [2_112_000_000u64, 2_999_999_999, 1_193_182, 7_000_000_001] {
            let mut c = clock(hz, 0);
            let start = 12_345_678_901u64;
            c.advance_to(start);
            let mut now = start;
            let mut clocks = 0u64;
            let mut step = 1u64;
            // About three hours, in 4,000 uneven steps.
            let span = hz * 3 * 3600;
            while now - start < span {
                step = step
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                now += (step >> 1) % (span / 2000) + 1;
                clocks += c.advance_to(now);
            }
            let exact = u128::from(now - start) * u128::from(PIT_HZ) / u128::from(hz);
            assert_eq!(u128::from(clocks), exact, "{hz} Hz");
        }
    }

    #[test]
    fn tsc_until_rounds_up_to_the_clock_that_completes() {
        let mut c = clock(2_000_000_000, 0);
        c.advance_to(0);
        // One PIT clock is 1676.19... TSC ticks.
        assert_eq!(c.tsc_until(1), 1677);
        assert_eq!(c.tsc_until(0), 0);
        assert_eq!(c.tsc_until(PIT_HZ), 2_000_000_000, "a second is a second");
        assert_eq!(c.advance_to(1676), 0);
        assert_eq!(c.tsc_until(1), 1, "the carry counts");
        assert_eq!(c.advance_to(1677), 1);
        assert_eq!(c.deadline(1), Some(1677 + c.tsc_until(1)));
        assert_eq!(c.tsc_until(u64::MAX), u64::MAX, "saturates");
    }

    #[test]
    fn skipping_ahead_raises_the_offset_by_the_time_skipped() {
        let mut c = clock(2_000_000_000, 0);
        c.advance_to(1_000);
        // A 250 Hz period: 4772 PIT clocks, 7,998,779.7... TSC ticks.
        let offset = c.skip(4772);
        assert_eq!(offset, 7_998_780);
        assert_eq!(c.guest_tsc(1_000), 1_000 + 7_998_780);
        assert_eq!(c.counted_to(), Some(1_000 + 7_998_780));
        // The guest resumes where the skip left it: no time counted twice.
        assert_eq!(c.advance_to(1_000), 0);
        // A second later (host time) is one second of PIT clocks later, give or take the
        // rounding of the skip.
        let clocks = c.advance_to(1_000 + 2_000_000_000);
        assert_eq!(clocks, PIT_HZ);
        // A test hypercall's offset moves the counted time, passing none.
        c.rebase(1 << 40);
        assert_eq!(c.advance_to(1_000 + 2_000_000_000), 0);
        assert_eq!(c.advance_to(1_000 + 4_000_000_000), PIT_HZ);
    }

    #[test]
    fn preemption_ticks_round_up_and_clamp() {
        let c = clock(2_000_000_000, 5);
        // 4772 PIT clocks = 7,998,780 TSC ticks (rounded up) = 249,961.9 -> 249,962 units.
        assert_eq!(c.preemption_ticks(4772), 249_962);
        assert_eq!(c.preemption_ticks(0), 1, "never 0: that would exit at once");
        assert_eq!(clock(4_000_000_000, 0).preemption_ticks(0x1_0000 * 1000), u32::MAX);
        assert_eq!(clock(1_193_182, 0).preemption_ticks(7), 7);
    }
}
