//! The boot's one reference interval, 10 ms, against which the local APIC timer and the
//! TSC are measured: the ACPI PM timer where the FADT declares one (it needs no legacy
//! hardware and runs on UEFI-only machines), else PIT channel 2.

use super::cpu::{port_in, rdtsc};
use super::pit;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::acpi::PmTimer;
use protocols::io::PortWidth;

/// The PM timer as `port | bits << 16` (0: none, the PIT is the reference).
static PM_TIMER: AtomicU32 = AtomicU32::new(0);
/// TSC ticks per second as the last window measured them (0: unknown).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// PM timer counts in 10 ms.
const PM_COUNTS_10MS: u32 = (PmTimer::HZ / 100) as u32;
/// Reads of the PM timer before a window that never closes is given up.
const MAX_POLLS: u32 = 100_000_000;

/// Measure against `timer` from now on.
pub fn use_pm_timer(timer: PmTimer) {
    PM_TIMER.store(u32::from(timer.port) | u32::from(timer.bits) << 16, Relaxed);
}

fn pm_timer() -> Option<PmTimer> {
    let v = PM_TIMER.load(Relaxed);
    (v != 0).then_some(PmTimer { port: v as u16, bits: (v >> 16) as u8 })
}

/// What the windows are measured with, for the boot log.
pub fn name() -> &'static str {
    if pm_timer().is_some() {
        "the ACPI PM timer"
    } else {
        "PIT channel 2"
    }
}

/// Run one 10 ms window, calling `open` as it opens, and measure the TSC across it;
/// `false` if the reference never advanced (the wait is bounded, so a dead timer cannot
/// hang the boot).
pub fn window_10ms(open: impl FnOnce()) -> bool {
    let Some(timer) = pm_timer() else {
        let ticks = pit::window_10ms(open);
        let hz = ticks.map_or(0, |t| u128::from(t) * u128::from(pit::HZ) / pit::COUNTS_10MS);
        TSC_HZ.store(u64::try_from(hz).unwrap_or(0), Relaxed);
        return ticks.is_some();
    };
    // SAFETY: the FADT names the port as the PM timer, a read-only counter.
    let read = || unsafe { port_in(timer.port, PortWidth::Dword) };
    let start = read();
    open();
    let tsc = rdtsc();
    for _ in 0..MAX_POLLS {
        let counts = timer.elapsed(start, read());
        if counts >= PM_COUNTS_10MS {
            let ticks = u128::from(rdtsc().wrapping_sub(tsc));
            let hz = ticks * u128::from(PmTimer::HZ) / u128::from(counts);
            TSC_HZ.store(u64::try_from(hz).unwrap_or(0), Relaxed);
            return true;
        }
    }
    false
}

/// TSC ticks per second as the last window measured them (0: unknown).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Relaxed)
}

/// Wait until `done` holds or `us` microseconds pass (by the TSC as measured, or a bounded
/// spin where it is unknown); whether `done` held.
pub fn wait_us(us: u64, mut done: impl FnMut() -> bool) -> bool {
    let hz = tsc_hz();
    let ticks = if hz == 0 { us.saturating_mul(1_000) } else { hz / 1_000_000 * us };
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < ticks {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// Wait `us` microseconds.
pub fn delay_us(us: u64) {
    wait_us(us, || false);
}
