//! Time on the exit path: counting the guest's elapsed time into the PIT and the local
//! APIC's timer, arming the VMX-preemption timer so that a guest computing without exits
//! still comes back for its timer interrupts, and skipping a halted guest ahead to its
//! next timer event.
//!
//! The PIT is lazy: its time only has to be right when the guest can observe it, which
//! is at an access to its ports (or port 0x61, or the RTC, which reads the PIT's time)
//! and at a channel 0 edge, which raises IRQ 0. So an exit costs one comparison
//! ([`GuestTime::due`]) of its TSC stamp with the host TSC of the next edge; only an exit
//! past it counts time (a 128-bit division) and finds the next edge. The APIC timer is
//! lazy the same way: its next expiry joins the deadline, and the APIC is brought to the
//! exit's guest TSC only at a due exit or before the guest touches its registers. Without
//! a clock, or with both timers idle, the deadline is `u64::MAX` and the comparison never
//! succeeds.
//!
//! The preemption timer (pin-based control, value field) is written only when the PIT's
//! channel 0 period changes: its value is the period in timer units, rounded up. Without
//! the "save VMX-preemption timer value" exit control, which this VMM leaves off, every VM
//! entry reloads the value written, so the guest never runs longer than one period
//! without an exit, however many exits come in between, and one write per programming of
//! the PIT suffices. The cost is latency, not loss: an edge is noticed at most one
//! period late, and edges missed in between are counted as coalesced. Writing the time to
//! the next edge instead would be exact but would cost a division and a VMWRITE on every
//! exit. An armed APIC timer (one-shot or TSC-deadline: Linux's) gets the time left to
//! its expiry instead, written where the time is recomputed (at a due exit, after the
//! guest programs a timer): reloaded at each entry, it can only make the exit late by the
//! time between that write and the last entry, never early, and any exit after the
//! expiry delivers it anyway.

use protocols::vcpu_page::Clock;
use protocols::vmcs::ctl::pin;
use protocols::vmcs::Field;
use protocols::vmexit::{ExitMessage, TransferMask};

use crate::clock::GuestClock;
use crate::controls;
use crate::devices::uart16550::SerialSink;
use crate::platform::Platform;
use crate::reply::ReplyBuilder;

/// The sooner of two times that may not come (the PIT's and the APIC timer's).
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What of guest time is one vCPU's: when its exits must count time, and its
/// VMX-preemption timer. (The clock, the PIT and the TSC offset are the VM's.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuTimer {
    /// The host TSC from which an exit must count time: the next channel 0 edge or APIC
    /// timer expiry; 0 until the first exit anchors the clock; `u64::MAX` without a clock
    /// or an event to come.
    deadline: u64,
    /// The VMX-preemption-timer value last written, `None` while the timer is off.
    preemption: Option<u32>,
}

/// The guest time of one VM, with the timer of the vCPU being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestTime {
    /// The clock, where the kernel told the TSC's rate.
    clock: Option<GuestClock>,
    /// What the kernel lets this VMM use.
    host: Clock,
    /// The served vCPU's timer (the others' wait in their `dispatch` state).
    cpu: VcpuTimer,
}

impl GuestTime {
    /// Time kept at the rate `host` gives (none when it is unknown: the PIT then moves
    /// only when a halted guest skips ahead).
    pub fn new(host: &Clock) -> Self {
        let clock = GuestClock::new(host);
        let mut time =
            Self { clock, host: *host, cpu: VcpuTimer { deadline: 0, preemption: None } };
        time.cpu = time.fresh_timer();
        time
    }

    /// A timer for a vCPU that has not run: its first exit counts time.
    pub fn fresh_timer(&self) -> VcpuTimer {
        let deadline = if self.clock.is_some() { 0 } else { u64::MAX };
        VcpuTimer { deadline, preemption: None }
    }

    /// Serve another vCPU: its timer comes in, the served one's goes out into `other`.
    pub fn swap_timer(&mut self, other: &mut VcpuTimer) {
        core::mem::swap(&mut self.cpu, other);
    }

    /// The clock, if one runs.
    pub fn clock(&self) -> Option<&GuestClock> {
        self.clock.as_ref()
    }

    /// The VMX-preemption-timer value the VMCS holds (`None`: the timer is off).
    pub fn preemption_timer(&self) -> Option<u32> {
        self.cpu.preemption
    }

    /// Whether the exit stamped `exit_tsc` must count time: the one test every exit makes.
    #[inline(always)]
    pub fn due(&self, exit_tsc: u64) -> bool {
        exit_tsc >= self.cpu.deadline
    }

    /// Bring the PIT and the APIC timer up to the exit's time (edges raise IRQ 0 in the
    /// PIC, an expiry the APIC's vector), then find the next deadline and arm the
    /// preemption timer for it.
    pub fn tick<S: SerialSink>(
        &mut self,
        msg: &ExitMessage,
        platform: &mut Platform<S>,
        reply: &mut ReplyBuilder,
    ) {
        self.catch_up(msg, platform);
        self.retime(msg, platform, reply);
    }

    /// Bring the PIT and the APIC up to the exit's time, before the guest reads or
    /// programs them.
    pub fn catch_up<S: SerialSink>(&mut self, msg: &ExitMessage, platform: &mut Platform<S>) {
        if let Some(c) = &mut self.clock {
            let clocks = c.advance_to(msg.exit_tsc);
            if clocks > 0 {
                platform.advance_time(clocks);
            }
            if let Some(now) = c.counted_to() {
                platform.lapic.advance(now);
            }
        }
    }

    /// Bring the APIC alone to the exit's guest TSC, before an access to its registers
    /// (the current count reads it; a new count starts from it).
    #[inline]
    pub fn sync_lapic<S: SerialSink>(&self, msg: &ExitMessage, platform: &mut Platform<S>) {
        if let Some(c) = &self.clock {
            platform.lapic.advance(c.guest_tsc(msg.exit_tsc));
        }
    }

    /// After the PIT's channel 0 or the APIC timer may have changed (programmed, or a
    /// count ended): the next deadline, and the preemption timer where its value must
    /// change.
    pub fn retime<S: SerialSink>(
        &mut self,
        msg: &ExitMessage,
        platform: &Platform<S>,
        reply: &mut ReplyBuilder,
    ) {
        let Some(c) = &self.clock else { return };
        let edge = platform.pit.next_edge_in(0).and_then(|t| c.deadline(t));
        let expiry = platform.lapic.next_deadline();
        let next = earliest(edge, expiry);
        self.cpu.deadline = next.map_or(u64::MAX, |g| g.wrapping_sub(c.offset()));
        let period = match platform.pit.period(0) {
            Some(p) if self.host.has_preemption_timer() => Some(c.preemption_ticks(p)),
            _ => None,
        };
        let left = match expiry {
            Some(g) if self.host.has_preemption_timer() => {
                Some(c.preemption_units(g.saturating_sub(c.guest_tsc(msg.exit_tsc))))
            }
            _ => None,
        };
        let want = earliest(period, left);
        // The pin-based controls come from the message; without them nothing is written
        // and the next retime tries again.
        if want == self.cpu.preemption || !msg.transfer.contains(TransferMask::CONTROLS) {
            return;
        }
        let on = msg.controls.pin | pin::PREEMPTION_TIMER;
        match want {
            Some(value) => {
                if msg.controls.pin != on {
                    reply.write(Field::PinBasedControls, on.into());
                }
                reply.write(Field::PreemptionTimerValue, value.into());
            }
            None => reply.write(Field::PinBasedControls, (on & !pin::PREEMPTION_TIMER).into()),
        }
        self.cpu.preemption = want;
    }

    /// A halted guest waits for its next timer event (a PIT edge or the APIC timer's
    /// expiry): jump there at once. With a clock the guest's TSC jumps with it (the TSC
    /// offset rises and is written) so the guest sees the time pass that its interrupt
    /// stands for. Without a next event, one PIT clock.
    pub fn skip_to_next_edge<S: SerialSink>(
        &mut self,
        msg: &ExitMessage,
        platform: &mut Platform<S>,
        reply: &mut ReplyBuilder,
    ) {
        self.catch_up(msg, platform);
        let edge = platform.pit.next_edge_in(0);
        let Some(c) = &mut self.clock else {
            platform.advance_time(edge.unwrap_or(0).max(1));
            return;
        };
        let now = c.counted_to().unwrap_or(0);
        let to_expiry = platform.lapic.next_deadline().map(|g| g.saturating_sub(now));
        // An edge nobody hears (IRQ 0 masked, as Linux leaves the PIT once its APIC timer
        // runs) does not end the wait for an APIC timer that will be heard.
        let heard = platform.pit_routed() || to_expiry.is_none();
        let to_edge = edge.filter(|_| heard).map(|clocks| c.tsc_until(clocks.max(1)));
        let ticks = earliest(to_edge, to_expiry).unwrap_or_else(|| c.tsc_until(1));
        let (offset, clocks) = c.skip_ticks(ticks);
        // Without TSC offsetting (no VT-x CPU lacks it) the guest's TSC stays behind
        // the clock, which then runs ahead of it by the time skipped.
        if self.host.has_tsc_offsetting() {
            let _ = controls::tsc_offset(msg, offset, reply);
        }
        let now = c.counted_to().unwrap_or(0);
        platform.advance_time(clocks);
        platform.lapic.advance(now);
        self.retime(msg, platform, reply);
    }

    /// The guest's TSC offset was set to `offset` by a test hypercall: time does not jump,
    /// so the deadline, in host TSC, stays.
    pub fn rebase(&mut self, offset: u64) {
        if let Some(c) = &mut self.clock {
            c.rebase(offset);
        }
    }
}
