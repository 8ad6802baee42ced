//! ACPI table layouts (ACPI 6.4 chapter 5), as both sides name them: the VMM writes
//! tables for its guests with them, and the kernel reads the machine's with them. Only
//! facts of the specification live here; what a table says is each side's business.

/// The Root System Description Pointer (§5.2.5.3).
pub mod rsdp {
    /// Bytes of a revision-2 RSDP.
    pub const LEN: usize = 36;
    /// Bytes the first checksum covers (the ACPI 1.0 structure).
    pub const V1_LEN: usize = 20;
    /// Its signature.
    pub const SIGNATURE: [u8; 8] = *b"RSD PTR ";

    /// Field offsets.
    pub mod offset {
        /// The signature.
        pub const SIGNATURE: usize = 0;
        /// The checksum of the first 20 bytes.
        pub const CHECKSUM: usize = 8;
        /// The OEM ID.
        pub const OEM_ID: usize = 9;
        /// The revision.
        pub const REVISION: usize = 15;
        /// The RSDT's 32-bit address.
        pub const RSDT_ADDRESS: usize = 16;
        /// The structure's length.
        pub const LENGTH: usize = 20;
        /// The XSDT's 64-bit address.
        pub const XSDT_ADDRESS: usize = 24;
        /// The checksum of all 36 bytes.
        pub const EXTENDED_CHECKSUM: usize = 32;
    }
}

/// The header every system description table starts with (§5.2.6), and the root tables.
pub mod sdt {
    /// Bytes of the header.
    pub const HEADER_LEN: usize = 36;
    /// The XSDT's signature (64-bit entries).
    pub const XSDT_SIGNATURE: [u8; 4] = *b"XSDT";
    /// The RSDT's signature (32-bit entries).
    pub const RSDT_SIGNATURE: [u8; 4] = *b"RSDT";

    /// Header field offsets.
    pub mod offset {
        /// The 4-byte signature.
        pub const SIGNATURE: usize = 0;
        /// The table's length in bytes, header included.
        pub const LENGTH: usize = 4;
        /// The table's revision.
        pub const REVISION: usize = 8;
        /// The byte that makes the table sum to zero.
        pub const CHECKSUM: usize = 9;
        /// The OEM ID.
        pub const OEM_ID: usize = 10;
        /// The OEM table ID.
        pub const OEM_TABLE_ID: usize = 16;
        /// The OEM revision.
        pub const OEM_REVISION: usize = 24;
        /// The creator ID.
        pub const CREATOR_ID: usize = 28;
        /// The creator revision.
        pub const CREATOR_REVISION: usize = 32;
    }
}

/// The Multiple APIC Description Table (§5.2.12).
pub mod madt {
    /// Its signature.
    pub const SIGNATURE: [u8; 4] = *b"APIC";
    /// Flags: the system also has a PC-AT-compatible dual 8259 setup.
    pub const PCAT_COMPAT: u32 = 1 << 0;
    /// Local APIC flags: the processor is usable.
    pub const LAPIC_ENABLED: u32 = 1 << 0;
    /// Bytes of the fixed part after the header: the local APIC address and the flags.
    pub const FIXED_LEN: usize = 8;

    /// An I/O APIC entry's fields.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IoApic {
        /// Its APIC ID.
        pub id: u8,
        /// Its registers' physical (for a guest: guest-physical) address.
        pub address: u32,
        /// The global system interrupt of its input 0.
        pub gsi_base: u32,
    }

    /// Interrupt controller structure types and lengths.
    pub mod entry {
        /// Processor Local APIC.
        pub const LOCAL_APIC: u8 = 0;
        /// Its length.
        pub const LOCAL_APIC_LEN: usize = 8;
        /// I/O APIC.
        pub const IO_APIC: u8 = 1;
        /// Its length.
        pub const IO_APIC_LEN: usize = 12;
        /// Interrupt Source Override.
        pub const INTERRUPT_OVERRIDE: u8 = 2;
        /// Its length.
        pub const INTERRUPT_OVERRIDE_LEN: usize = 10;
        /// Local APIC Address Override: a 64-bit address for every local APIC.
        pub const LAPIC_ADDRESS_OVERRIDE: u8 = 5;
        /// Processor Local x2APIC: a CPU whose APIC ID does not fit a byte.
        pub const LOCAL_X2APIC: u8 = 9;
        /// Local APIC NMI.
        pub const LOCAL_APIC_NMI: u8 = 4;
        /// Its length.
        pub const LOCAL_APIC_NMI_LEN: usize = 6;
    }
}

/// The Fixed ACPI Description Table (§5.2.9).
pub mod fadt {
    /// Its signature.
    pub const SIGNATURE: [u8; 4] = *b"FACP";

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
}
