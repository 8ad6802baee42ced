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
/// IA32_APIC_BASE.EXTD: x2APIC mode, in which the register page does not answer.
const X2APIC_MODE: u64 = 1 << 10;
const ID: u64 = 0x20;
const EOI: u64 = 0xb0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
/// ICR delivery modes (level assert): INIT and STARTUP.
const ICR_INIT: u32 = 0b101 << 8 | 1 << 14;
const ICR_STARTUP: u32 = 0b110 << 8 | 1 << 14;
/// ICR level: assert (every IPI but INIT de-assert).
const ICR_ASSERT: u32 = 1 << 14;
/// ICR delivery status: the IPI has not been sent yet.
const ICR_PENDING: u32 = 1 << 12;
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
/// Timer counts per tick, as calibrated on the boot CPU (every CPU's timer runs at the
/// bus rate).
static PER_TICK: AtomicU64 = AtomicU64::new(0);

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

/// Enable this CPU's local APIC in xAPIC mode (the kernel drives it through its register
/// page). Firmware may have left it in x2APIC mode, which cannot go to xAPIC mode
/// directly: it goes through disabled (SDM vol. 3, 11.12.5), which resets its state.
///
/// # Safety
/// `msr` is this CPU's IA32_APIC_BASE, and nothing on this CPU uses the APIC meanwhile.
unsafe fn xapic_mode(msr: u64) {
    if msr & X2APIC_MODE != 0 {
        // SAFETY: clearing EN and EXTD together is the architectural way out of x2APIC.
        unsafe { wrmsr(IA32_APIC_BASE, msr & !(X2APIC_MODE | APIC_GLOBAL_ENABLE)) }
    }
    // SAFETY: enabling the APIC the CPU reports, in xAPIC mode.
    unsafe { wrmsr(IA32_APIC_BASE, (msr & !X2APIC_MODE) | APIC_GLOBAL_ENABLE) }
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
    // SAFETY: this is the boot CPU's IA32_APIC_BASE; nothing uses the APIC yet.
    unsafe { xapic_mode(msr) }
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
    PER_TICK.store(u64::from(per_tick), Relaxed);
    write(LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR as u32);
    write(INITIAL_COUNT, per_tick);
    crate::kprintln!(
        "kernel: tick from the local APIC timer ({per_tick} counts per 10 ms of {})",
        reference::name()
    );
    true
}

/// Whether the local APIC is in use (its ID and IPIs mean something).
pub fn in_use() -> bool {
    REGS.load(Relaxed) != 0
}

/// This CPU's local APIC ID (0 without a local APIC in use).
pub fn id() -> u32 {
    if !in_use() {
        return 0;
    }
    read(ID) >> 24
}

/// This CPU's local APIC on, with the timer masked (a started CPU's; the boot CPU's is
/// set up by [`start`]).
pub fn enable_here() {
    // SAFETY: the boot CPU found a local APIC, and every CPU of one machine has one.
    let msr = unsafe { rdmsr(IA32_APIC_BASE) };
    // SAFETY: as in `start`.
    unsafe { xapic_mode(msr) }
    write(SPURIOUS, 0x100 | SPURIOUS_VECTOR as u32);
    write(LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
}

/// Start this CPU's timer at the boot CPU's rate (a started CPU's tick).
pub fn start_timer_here() {
    let per_tick = PER_TICK.load(Relaxed) as u32;
    if !in_use() || per_tick == 0 {
        return;
    }
    write(DIVIDE, 0x3); // divide by 16, as calibrated
    write(LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR as u32);
    write(INITIAL_COUNT, per_tick);
}

/// Send the IPI `low` to the CPU with APIC ID `apic_id` and wait (bounded) until it left.
fn send(apic_id: u32, low: u32) {
    write(ICR_HIGH, apic_id << 24);
    write(ICR_LOW, low);
    for _ in 0..1_000_000 {
        if read(ICR_LOW) & ICR_PENDING == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// INIT to the CPU with APIC ID `apic_id`: it resets and waits for a STARTUP.
pub fn send_init(apic_id: u32) {
    send(apic_id, ICR_INIT);
}

/// STARTUP to the CPU with APIC ID `apic_id`: it starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send(apic_id, ICR_STARTUP | u32::from(page));
}

/// Raise `vector` on the CPU with APIC ID `apic_id` (fixed delivery, edge).
pub fn send_fixed(apic_id: u32, vector: u8) {
    if in_use() {
        send(apic_id, ICR_ASSERT | u32::from(vector));
    }
}

/// Raise `vector` on this CPU (fixed delivery, edge).
pub fn self_ipi(vector: u8) {
    if in_use() {
        write(ICR_LOW, ICR_SELF | u32::from(vector));
    }
}

/// Acknowledge the timer interrupt.
pub fn eoi() {
    if in_use() {
        write(EOI, 0);
    }
}
