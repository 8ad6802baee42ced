//! The Fixed ACPI Description Table (ACPI 6 §5.2.9), revision 6 (276 bytes, the ACPI 6.x
//! layout Linux 6.1's ACPICA knows): where the PM registers are, the SCI, the DSDT and
//! the FACS, and what legacy hardware the machine has.
//!
//! Not hardware-reduced: Linux keeps the PIT, the 8259 pair and the ISA IRQs only on a
//! full ACPI machine, and power-off goes through PM1a_CNT, which [`crate::devices::acpi_pm`]
//! models. The choices, each for a reason:
//! - SMI_CMD 0: the machine is always in ACPI mode, there is no ACPI_ENABLE handshake.
//! - A FACS is given: ACPICA finds GBL_EN writable and then keeps the global lock in the
//!   FACS; without one it would dereference a missing FACS the first time AML took it.
//!   Only FIRMWARE_CTRL points at it (the FACS lies below 4 GiB; the spec wants one of
//!   the two fields, and ACPICA would install a FACS named by both twice).
//! - The 32-bit PM1a/PM_TMR fields and their X_ generic addresses agree (ACPICA warns on
//!   any mismatch of address or width); no PM1b, PM2 or GPE blocks.
//! - Flags: WBINVD and PROC_C1 (HLT works), no fixed power or sleep button (there is
//!   none), FIX_RTC (no RTC wake in PM1), TMR_VAL_EXT when the PM timer is 32 bits
//!   ([`crate::devices::acpi_pm::TIMER_BITS`]), RESET_REG_SUP when a reset register is
//!   given. C2 and C3 latencies say "not supported".
//! - IAPC_BOOT_ARCH: legacy ISA devices exist, an 8042 and the CMOS RTC where the VM has
//!   them ([`AcpiConfig::boot_arch`]); no VGA, no MSI, no ASPM.
//! - CENTURY names the CMOS century byte the RTC model keeps.

use super::sdt::{self, put};
use super::AcpiConfig;
use crate::devices::{acpi_pm, cmos_rtc};

/// The major version: ACPI 6.
pub const REVISION: u8 = 6;
/// The minor version (offset 131): ACPI 6.4, errata 0 in bits 7:4.
pub const MINOR_VERSION: u8 = 4;
/// Bytes of a revision-6 FADT.
pub const LEN: usize = 276;
/// P_LVL2_LAT above 100 µs: C2 is not supported.
pub const P_LVL2_LAT_NONE: u16 = 101;
/// P_LVL3_LAT above 1000 µs: C3 is not supported.
pub const P_LVL3_LAT_NONE: u16 = 1001;
/// The hypervisor vendor identity (ACPI 6.0+): the project's name.
pub const HYPERVISOR_VENDOR_ID: [u8; 8] = *b"CAPVMM\0\0";

pub use protocols::acpi::fadt::{boot_arch, flags, gas, offset, SIGNATURE};

/// The PM register blocks' ports. Their lengths are the PM device's
/// ([`acpi_pm::PM1_EVT_LEN`] and the others), not configurable, so the table and the
/// device cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmPorts {
    /// PM1a_EVT_BLK: PM1_STS then PM1_EN.
    pub pm1a_evt: u16,
    /// PM1a_CNT_BLK: PM1_CNT.
    pub pm1a_cnt: u16,
    /// PM_TMR_BLK: the PM timer.
    pub pm_tmr: u16,
}

impl PmPorts {
    /// The blocks of [`acpi_pm::AcpiPm`] at its standard window, 0x600.
    pub const STANDARD: Self = Self {
        pm1a_evt: acpi_pm::BASE_PORT + acpi_pm::PM1_EVT,
        pm1a_cnt: acpi_pm::BASE_PORT + acpi_pm::PM1_CNT,
        pm_tmr: acpi_pm::BASE_PORT + acpi_pm::PM_TMR,
    };
}

/// A byte-wide I/O port that resets the machine when `value` is written to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetRegister {
    /// The port.
    pub port: u16,
    /// The byte to write.
    pub value: u8,
}

impl ResetRegister {
    /// The i8042's command port and its "pulse reset line" command, which the VMM's
    /// [`crate::devices::i8042`] already turns into a reset request.
    pub const I8042: Self = Self { port: 0x64, value: 0xfe };
}

/// The generic address of `len` bytes of I/O ports at `port`, accessed `access` at a time.
fn io(port: u16, len: u8, access: u8) -> [u8; gas::LEN] {
    let mut g = [0u8; gas::LEN];
    put(&mut g, 0, &[gas::SYSTEM_IO, len.saturating_mul(8), 0, access]);
    put(&mut g, 4, &u64::from(port).to_le_bytes());
    g
}

/// The flags field for `config`.
pub fn flags_for(config: &AcpiConfig<'_>) -> u32 {
    let mut f =
        flags::WBINVD | flags::PROC_C1 | flags::PWR_BUTTON | flags::SLP_BUTTON | flags::FIX_RTC;
    if acpi_pm::TIMER_BITS == 32 {
        f |= flags::TMR_VAL_EXT;
    }
    if config.reset.is_some() {
        f |= flags::RESET_REG_SUP;
    }
    f
}

/// The IA-PC boot architecture flags of the standard PC (an 8042, an RTC).
pub const BOOT_ARCH: u16 = boot_arch::LEGACY_DEVICES
    | boot_arch::I8042
    | boot_arch::VGA_NOT_PRESENT
    | boot_arch::MSI_NOT_SUPPORTED
    | boot_arch::PCIE_ASPM_CONTROLS;

/// Write the FADT into `out` (exactly [`LEN`] bytes) for `config`, with the DSDT and the
/// FACS at these guest-physical addresses.
pub fn write(out: &mut [u8], config: &AcpiConfig<'_>, dsdt: u32, facs: u32) {
    out.fill(0);
    sdt::write_header(out, SIGNATURE, REVISION);
    let pm = &config.pm;
    put(out, offset::FIRMWARE_CTRL, &facs.to_le_bytes());
    put(out, offset::DSDT, &dsdt.to_le_bytes());
    put(out, offset::SCI_INT, &u16::from(config.sci_irq).to_le_bytes());
    // SMI_CMD, ACPI_ENABLE/DISABLE, S4BIOS_REQ, PSTATE_CNT stay 0: always in ACPI mode.
    put(out, offset::PM1A_EVT_BLK, &u32::from(pm.pm1a_evt).to_le_bytes());
    put(out, offset::PM1A_CNT_BLK, &u32::from(pm.pm1a_cnt).to_le_bytes());
    put(out, offset::PM_TMR_BLK, &u32::from(pm.pm_tmr).to_le_bytes());
    put(out, offset::PM1_EVT_LEN, &[acpi_pm::PM1_EVT_LEN]);
    put(out, offset::PM1_CNT_LEN, &[acpi_pm::PM1_CNT_LEN]);
    put(out, offset::PM_TMR_LEN, &[acpi_pm::PM_TMR_LEN]);
    put(out, offset::P_LVL2_LAT, &P_LVL2_LAT_NONE.to_le_bytes());
    put(out, offset::P_LVL3_LAT, &P_LVL3_LAT_NONE.to_le_bytes());
    put(out, offset::CENTURY, &[cmos_rtc::CENTURY]);
    put(out, offset::IAPC_BOOT_ARCH, &config.boot_arch.to_le_bytes());
    put(out, offset::FLAGS, &flags_for(config).to_le_bytes());
    if let Some(reset) = config.reset {
        put(out, offset::RESET_REG, &io(reset.port, 1, gas::BYTE));
        put(out, offset::RESET_VALUE, &[reset.value]);
    }
    put(out, offset::MINOR_VERSION, &[MINOR_VERSION]);
    put(out, offset::X_DSDT, &u64::from(dsdt).to_le_bytes());
    // The PM1 registers are 16 bits wide, the timer 32.
    put(out, offset::X_PM1A_EVT_BLK, &io(pm.pm1a_evt, acpi_pm::PM1_EVT_LEN, gas::WORD));
    put(out, offset::X_PM1A_CNT_BLK, &io(pm.pm1a_cnt, acpi_pm::PM1_CNT_LEN, gas::WORD));
    put(out, offset::X_PM_TMR_BLK, &io(pm.pm_tmr, acpi_pm::PM_TMR_LEN, gas::DWORD));
    put(out, offset::HYPERVISOR_VENDOR_ID, &HYPERVISOR_VENDOR_ID);
    sdt::seal(out);
}
