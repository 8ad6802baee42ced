//! The I/O APIC as the route of device IRQs where the MADT lists one: each ISA IRQ goes
//! to its input (the MADT's overrides applied) as vector `PIC_BASE + irq` to the boot
//! CPU, masked until a driver's IrqHandler unmasks it. Trigger mode and polarity come
//! from the override (ISA lines: edge, active high). The 8259s stay masked throughout.
//!
//! The kernel masks a driver's line each time it fires, until the driver acknowledges.
//! An 8259 latches an edge that comes while its line is masked; an I/O APIC drops it,
//! and a device that raised its line once (a UART with a byte to send) would then never
//! be heard again. So an edge-triggered line is masked here in software: once unmasked
//! it stays open at the I/O APIC, an edge while the driver has not acknowledged is kept,
//! and the acknowledgement replays it to this CPU as a self-IPI of the same vector. A line
//! stays closed at the I/O APIC until a driver first unmasks it (a line no driver wants
//! costs nothing); that first unmask also raises the vector once, since an edge may have
//! come while it was closed and the driver checks its device on any interrupt anyway.
//! Level-triggered lines are masked at the I/O APIC, where the level is kept anyway.

use super::lapic;
use super::memory::{self, PHYSMAP_SIZE, PHYS_OFFSET};
use super::pic::PIC_BASE;
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering::Relaxed};
use kernel::acpi::Platform;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const VERSION: u32 = 0x01;
const REDIRECTION_TABLE: u32 = 0x10;
const MASKED: u32 = 1 << 16;
const LEVEL: u32 = 1 << 15;
const ACTIVE_LOW: u32 = 1 << 13;
/// No input: the ISA IRQ does not reach this I/O APIC.
const NONE: u8 = u8::MAX;
const ISA_IRQS: usize = 16;

/// Virtual address of the registers (0: the 8259s route device IRQs).
static REGS: AtomicU64 = AtomicU64::new(0);
/// The input each ISA IRQ arrives on.
static INPUT: [AtomicU8; ISA_IRQS] = [const { AtomicU8::new(NONE) }; ISA_IRQS];
/// The edge-triggered lines (a bit per ISA IRQ).
static EDGE: AtomicU16 = AtomicU16::new(0);
/// The edge-triggered lines masked in software.
static HELD: AtomicU16 = AtomicU16::new(0);
/// The edge-triggered lines a driver has unmasked at least once (open at the I/O APIC).
static OPENED: AtomicU16 = AtomicU16::new(0);
/// The edges that came while their line was held, to replay on unmask.
static KEPT: AtomicU16 = AtomicU16::new(0);

fn write(reg: u32, value: u32) {
    let base = REGS.load(Relaxed);
    // SAFETY: `base` maps the I/O APIC's register window uncached (set up in `start`);
    // IOREGSEL and IOWIN are its architectural registers.
    unsafe {
        ((base + IOREGSEL) as *mut u32).write_volatile(reg);
        ((base + IOWIN) as *mut u32).write_volatile(value);
    }
}

fn read(reg: u32) -> u32 {
    let base = REGS.load(Relaxed);
    // SAFETY: as for `write`.
    unsafe {
        ((base + IOREGSEL) as *mut u32).write_volatile(reg);
        ((base + IOWIN) as *const u32).read_volatile()
    }
}

/// Whether device IRQs go through the I/O APIC.
pub fn in_use() -> bool {
    REGS.load(Relaxed) != 0
}

/// Route the ISA IRQs through the I/O APIC whose inputs start at GSI 0, to the CPU with
/// local APIC ID `boot_cpu`; false (nothing changed) if there is none the kernel can use.
pub fn start(platform: &Platform, boot_cpu: u32) -> bool {
    let Some(io) = platform.io_apics.iter().find(|io| io.gsi_base == 0) else { return false };
    let phys = u64::from(io.address);
    if phys >= PHYSMAP_SIZE || boot_cpu > 0xff {
        return false;
    }
    memory::uncache(phys);
    REGS.store(PHYS_OFFSET + phys, Relaxed);
    let last_input = (read(VERSION) >> 16) & 0xff;
    for irq in 0..ISA_IRQS as u8 {
        let Some(route) = platform.isa_route(irq).filter(|r| r.gsi <= last_input) else {
            continue;
        };
        let gsi = route.gsi;
        let mut low = MASKED | u32::from(PIC_BASE + irq);
        if route.level {
            low |= LEVEL;
        } else {
            EDGE.fetch_or(1 << irq, Relaxed);
        }
        if route.active_low {
            low |= ACTIVE_LOW;
        }
        write(REDIRECTION_TABLE + 2 * gsi + 1, boot_cpu << 24);
        write(REDIRECTION_TABLE + 2 * gsi, low);
        INPUT[usize::from(irq)].store(gsi as u8, Relaxed);
    }
    true
}

fn set_mask(irq: u8, masked: bool) {
    let Some(input) = INPUT.get(usize::from(irq)).map(|i| i.load(Relaxed)) else { return };
    if input == NONE {
        return;
    }
    let reg = REDIRECTION_TABLE + 2 * u32::from(input);
    let low = read(reg);
    write(reg, if masked { low | MASKED } else { low & !MASKED });
}

fn bit(irq: u8) -> u16 {
    1u16.checked_shl(u32::from(irq)).unwrap_or(0)
}

/// Mask ISA IRQ `irq`.
pub fn mask(irq: u8) {
    if EDGE.load(Relaxed) & bit(irq) != 0 {
        HELD.fetch_or(bit(irq), Relaxed);
    } else {
        set_mask(irq, true);
    }
}

/// Unmask ISA IRQ `irq`, replaying an edge that came while it was held.
pub fn unmask(irq: u8) {
    let edge = EDGE.load(Relaxed) & bit(irq) != 0;
    let first = edge && OPENED.fetch_or(bit(irq), Relaxed) & bit(irq) == 0;
    set_mask(irq, false);
    let held = HELD.fetch_and(!bit(irq), Relaxed) & bit(irq) != 0;
    if first || (held && KEPT.fetch_and(!bit(irq), Relaxed) & bit(irq) != 0) {
        lapic::self_ipi(PIC_BASE + irq);
    }
}

/// Line `irq` fired (the local APIC has been acknowledged): whether to deliver it now,
/// or keep it for the unmask because the line is held.
pub fn fired(irq: u8) -> bool {
    if HELD.load(Relaxed) & bit(irq) != 0 && EDGE.load(Relaxed) & bit(irq) != 0 {
        KEPT.fetch_or(bit(irq), Relaxed);
        return false;
    }
    true
}
