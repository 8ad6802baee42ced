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

/// Its signature.
pub const SIGNATURE: [u8; 4] = *b"FACP";
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

/// Field offsets (ACPI 6.4 table 5.9; Linux's `struct acpi_table_fadt`).
pub mod offset {
    /// FIRMWARE_CTRL: the FACS's 32-bit address.
    pub const FIRMWARE_CTRL: usize = 36;
    /// DSDT: the DSDT's 32-bit address.
    pub const DSDT: usize = 40;
    /// Reserved (ACPI 1.0's INT_MODEL).
    pub const RESERVED_44: usize = 44;
    /// Preferred_PM_Profile.
    pub const PREFERRED_PM_PROFILE: usize = 45;
    /// SCI_INT: the SCI's interrupt (2 bytes).
    pub const SCI_INT: usize = 46;
    /// SMI_CMD: the port that switches to ACPI mode; 0 without one.
    pub const SMI_CMD: usize = 48;
    /// ACPI_ENABLE.
    pub const ACPI_ENABLE: usize = 52;
    /// ACPI_DISABLE.
    pub const ACPI_DISABLE: usize = 53;
    /// S4BIOS_REQ.
    pub const S4BIOS_REQ: usize = 54;
    /// PSTATE_CNT.
    pub const PSTATE_CNT: usize = 55;
    /// PM1a_EVT_BLK.
    pub const PM1A_EVT_BLK: usize = 56;
    /// PM1b_EVT_BLK.
    pub const PM1B_EVT_BLK: usize = 60;
    /// PM1a_CNT_BLK.
    pub const PM1A_CNT_BLK: usize = 64;
    /// PM1b_CNT_BLK.
    pub const PM1B_CNT_BLK: usize = 68;
    /// PM2_CNT_BLK.
    pub const PM2_CNT_BLK: usize = 72;
    /// PM_TMR_BLK.
    pub const PM_TMR_BLK: usize = 76;
    /// GPE0_BLK.
    pub const GPE0_BLK: usize = 80;
    /// GPE1_BLK.
    pub const GPE1_BLK: usize = 84;
    /// PM1_EVT_LEN.
    pub const PM1_EVT_LEN: usize = 88;
    /// PM1_CNT_LEN.
    pub const PM1_CNT_LEN: usize = 89;
    /// PM2_CNT_LEN.
    pub const PM2_CNT_LEN: usize = 90;
    /// PM_TMR_LEN.
    pub const PM_TMR_LEN: usize = 91;
    /// GPE0_BLK_LEN.
    pub const GPE0_BLK_LEN: usize = 92;
    /// GPE1_BLK_LEN.
    pub const GPE1_BLK_LEN: usize = 93;
    /// GPE1_BASE.
    pub const GPE1_BASE: usize = 94;
    /// CST_CNT.
    pub const CST_CNT: usize = 95;
    /// P_LVL2_LAT (2 bytes).
    pub const P_LVL2_LAT: usize = 96;
    /// P_LVL3_LAT (2 bytes).
    pub const P_LVL3_LAT: usize = 98;
    /// FLUSH_SIZE (2 bytes).
    pub const FLUSH_SIZE: usize = 100;
    /// FLUSH_STRIDE (2 bytes).
    pub const FLUSH_STRIDE: usize = 102;
    /// DUTY_OFFSET.
    pub const DUTY_OFFSET: usize = 104;
    /// DUTY_WIDTH.
    pub const DUTY_WIDTH: usize = 105;
    /// DAY_ALRM.
    pub const DAY_ALRM: usize = 106;
    /// MON_ALRM.
    pub const MON_ALRM: usize = 107;
    /// CENTURY: the CMOS index of the century byte.
    pub const CENTURY: usize = 108;
    /// IAPC_BOOT_ARCH (2 bytes).
    pub const IAPC_BOOT_ARCH: usize = 109;
    /// Reserved.
    pub const RESERVED_111: usize = 111;
    /// Flags (4 bytes).
    pub const FLAGS: usize = 112;
    /// RESET_REG (a generic address).
    pub const RESET_REG: usize = 116;
    /// RESET_VALUE.
    pub const RESET_VALUE: usize = 128;
    /// ARM_BOOT_ARCH (2 bytes).
    pub const ARM_BOOT_ARCH: usize = 129;
    /// FADT Minor Version.
    pub const MINOR_VERSION: usize = 131;
    /// X_FIRMWARE_CTRL (8 bytes).
    pub const X_FIRMWARE_CTRL: usize = 132;
    /// X_DSDT (8 bytes).
    pub const X_DSDT: usize = 140;
    /// X_PM1a_EVT_BLK.
    pub const X_PM1A_EVT_BLK: usize = 148;
    /// X_PM1b_EVT_BLK.
    pub const X_PM1B_EVT_BLK: usize = 160;
    /// X_PM1a_CNT_BLK.
    pub const X_PM1A_CNT_BLK: usize = 172;
    /// X_PM1b_CNT_BLK.
    pub const X_PM1B_CNT_BLK: usize = 184;
    /// X_PM2_CNT_BLK.
    pub const X_PM2_CNT_BLK: usize = 196;
    /// X_PM_TMR_BLK.
    pub const X_PM_TMR_BLK: usize = 208;
    /// X_GPE0_BLK.
    pub const X_GPE0_BLK: usize = 220;
    /// X_GPE1_BLK.
    pub const X_GPE1_BLK: usize = 232;
    /// SLEEP_CONTROL_REG.
    pub const SLEEP_CONTROL_REG: usize = 244;
    /// SLEEP_STATUS_REG.
    pub const SLEEP_STATUS_REG: usize = 256;
    /// Hypervisor Vendor Identity (8 bytes).
    pub const HYPERVISOR_VENDOR_ID: usize = 268;
}

/// Fixed feature flags (ACPI 6.4 table 5.10).
pub mod flags {
    /// WBINVD works (required on x86).
    pub const WBINVD: u32 = 1 << 0;
    /// C1 (HLT) works on all processors.
    pub const PROC_C1: u32 = 1 << 2;
    /// The power button, if any, is a control-method device: no fixed power button.
    pub const PWR_BUTTON: u32 = 1 << 4;
    /// The sleep button, if any, is a control-method device: no fixed sleep button.
    pub const SLP_BUTTON: u32 = 1 << 5;
    /// RTC wake status is not in the fixed register space.
    pub const FIX_RTC: u32 = 1 << 6;
    /// The PM timer is 32 bits (24 without).
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    /// RESET_REG resets the system.
    pub const RESET_REG_SUP: u32 = 1 << 10;
    /// Hardware-reduced ACPI (not set here).
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
}

/// IA-PC boot architecture flags (ACPI 6.4 table 5.11).
pub mod boot_arch {
    /// User-visible devices on the LPC/ISA bus exist (the UART, the RTC).
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    /// An 8042 keyboard controller exists.
    pub const I8042: u16 = 1 << 1;
    /// Probing for VGA is unsafe: there is none.
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    /// MSIs must not be enabled.
    pub const MSI_NOT_SUPPORTED: u16 = 1 << 3;
    /// The OS must not enable PCIe ASPM.
    pub const PCIE_ASPM_CONTROLS: u16 = 1 << 4;
    /// No CMOS RTC.
    pub const CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
}

/// Generic Address Structure (ACPI 6 §5.2.3.2) codes.
pub mod gas {
    /// Bytes of one structure.
    pub const LEN: usize = 12;
    /// Address space: system I/O ports.
    pub const SYSTEM_IO: u8 = 1;
    /// Access size: byte.
    pub const BYTE: u8 = 1;
    /// Access size: word.
    pub const WORD: u8 = 2;
    /// Access size: dword.
    pub const DWORD: u8 = 3;
}

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
