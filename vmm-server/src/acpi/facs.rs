//! The Firmware ACPI Control Structure (ACPI 6 §5.2.10): 64 bytes, 64-byte aligned, with
//! the global lock and the waking vectors. Nothing here sleeps or wakes, so the vectors
//! stay zero; the FACS exists for the global lock, which ACPICA keeps in it once the PM1
//! block shows a writable GBL_EN (see [`super::fadt`]). It has no checksum.

use super::sdt::put;

/// Its signature.
pub const SIGNATURE: [u8; 4] = *b"FACS";
/// Bytes of the structure.
pub const LEN: usize = 64;
/// Its required alignment.
pub const ALIGN: usize = 64;
/// Version 2 (ACPI 4.0 and later).
pub const VERSION: u8 = 2;

/// Field offsets.
pub mod offset {
    /// The signature.
    pub const SIGNATURE: usize = 0;
    /// The length.
    pub const LENGTH: usize = 4;
    /// The hardware signature (changes when the hardware does; 0 here).
    pub const HARDWARE_SIGNATURE: usize = 8;
    /// The 32-bit firmware waking vector.
    pub const FIRMWARE_WAKING_VECTOR: usize = 12;
    /// The global lock.
    pub const GLOBAL_LOCK: usize = 16;
    /// The flags.
    pub const FLAGS: usize = 20;
    /// The 64-bit firmware waking vector.
    pub const X_FIRMWARE_WAKING_VECTOR: usize = 24;
    /// The version.
    pub const VERSION: usize = 32;
    /// The OSPM-enabled flags.
    pub const OSPM_FLAGS: usize = 36;
}

/// Write the FACS into `out` (exactly [`LEN`] bytes): no S4BIOS, no 64-bit wake, the
/// global lock free.
pub fn write(out: &mut [u8]) {
    out.fill(0);
    let length = u32::try_from(LEN).unwrap_or(u32::MAX);
    put(out, offset::SIGNATURE, &SIGNATURE);
    put(out, offset::LENGTH, &length.to_le_bytes());
    put(out, offset::VERSION, &[VERSION]);
}
