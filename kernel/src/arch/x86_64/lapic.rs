//! The local APIC timer as the scheduling tick, calibrated against the boot's reference
//! interval (the ACPI PM timer or the PIT). Where the CPU has no local APIC (or it sits
//! outside the physical window), the PIT's IRQ 0 stays the tick.

use super::cpu::{self, rdmsr, wrmsr};
use super::memory::{self, PHYSMAP_SIZE, PHYS_OFFSET};
use super::reference;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Vector of the timer interrupt.
pub const TIMER_VECTOR: u64 = 0x30;
/// Vector of spurious interrupts (never acknowledged).
pub const SPURIOUS_VECTOR: u64 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const ID: u64 = 0x20;
const EOI: u64 = 0xb0;
const ICR_LOW: u64 = 0x300;
/// ICR destination shorthand: this CPU.
const ICR_SELF: u32 = 1 << 18;
const SPURIOUS: u64 = 0xf0;
const LVT_TIMER: u64 = 0x320;
const INITIAL_COUNT: u64 = 0x380;
const CURRENT_COUNT: u64 = 0x390;
const DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;

/// Virtual address of the registers (0: no local APIC timer in use).
static REGS: AtomicU64 = AtomicU64::new(0);

fn write(reg: u64, value: u32) {
    let base = REGS.load(Relaxed);
    // SAFETY: `base` maps the local APIC's register page uncached (set up in `start`);
    // the register offsets are architectural.
    unsafe { ((base + reg) as *mut u32).write_volatile(value) }
}

fn read(reg: u64) -> u32 {
    let base = REGS.load(Relaxed);
    // SAFETY: as for `write`.
    unsafe { ((base + reg) as *const u32).read_volatile() }
}

/// Count local-APIC timer ticks during the 10 ms reference window (which also measures
/// the TSC).
fn calibrate() -> u32 {
    // A reference that never advances leaves whatever the bounded wait took: some tick.
    let _ = reference::window_10ms(|| write(INITIAL_COUNT, u32::MAX));
    let elapsed = u32::MAX - read(CURRENT_COUNT);
    write(INITIAL_COUNT, 0);
    elapsed
}

/// Start the local APIC timer at 100 Hz; false if there is none to use.
pub fn start() -> bool {
    if cpu::cpuid(1, 0).3 & (1 << 9) == 0 {
        return false;
    }
    // SAFETY: IA32_APIC_BASE exists whenever CPUID reports a local APIC.
    let msr = unsafe { rdmsr(IA32_APIC_BASE) };
    let phys = msr & 0x000f_ffff_ffff_f000;
    if phys >= PHYSMAP_SIZE {
        return false;
    }
    // SAFETY: setting the global enable bit only enables the APIC already reported.
    unsafe { wrmsr(IA32_APIC_BASE, msr | APIC_GLOBAL_ENABLE) }
    memory::uncache(phys);
    REGS.store(PHYS_OFFSET + phys, Relaxed);
    write(SPURIOUS, 0x100 | SPURIOUS_VECTOR as u32);
    write(DIVIDE, 0x3); // divide by 16
    write(LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    let per_tick = calibrate();
    if per_tick == 0 {
        REGS.store(0, Relaxed);
        return false;
    }
    write(LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR as u32);
    write(INITIAL_COUNT, per_tick);
    crate::kprintln!(
        "kernel: tick from the local APIC timer ({per_tick} counts per 10 ms of {})",
        reference::name()
    );
    true
}

/// This CPU's local APIC ID (0 without a local APIC in use).
pub fn id() -> u32 {
    if REGS.load(Relaxed) == 0 {
        return 0;
    }
    read(ID) >> 24
}

/// Raise `vector` on this CPU (fixed delivery, edge).
pub fn self_ipi(vector: u8) {
    if REGS.load(Relaxed) != 0 {
        write(ICR_LOW, ICR_SELF | u32::from(vector));
    }
}

/// Acknowledge the timer interrupt.
pub fn eoi() {
    if REGS.load(Relaxed) != 0 {
        write(EOI, 0);
    }
}
