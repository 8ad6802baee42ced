//! The Root System Description Pointer (ACPI 6 §5.2.5.3): the 36-byte structure an OS
//! finds by scanning the BIOS area for "RSD PTR " on a 16-byte boundary, and from which it
//! reaches every other table.
//!
//! Revision 2 (ACPI 2.0 and later), so that an OS uses the XSDT; the RSDT address is
//! filled in too, for a reader that only knows ACPI 1.0. Two checksums: one over the
//! ACPI 1.0 part (the first 20 bytes), one over all 36.

use super::sdt::{self, put};

/// Bytes of a revision-2 RSDP.
pub const LEN: usize = 36;
/// Bytes the first checksum covers (the ACPI 1.0 structure).
pub const V1_LEN: usize = 20;
/// Its signature.
pub const SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// ACPI 2.0 and later.
pub const REVISION: u8 = 2;
/// The alignment an OS scans at.
pub const ALIGN: usize = 16;

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

/// Write the RSDP into `out` (its first [`LEN`] bytes; the three reserved bytes are
/// zeroed).
pub fn write(out: &mut [u8], rsdt: u32, xsdt: u64) {
    let Some(rsdp) = out.get_mut(..LEN) else { return };
    rsdp.fill(0);
    let length = u32::try_from(LEN).unwrap_or(u32::MAX);
    put(rsdp, offset::SIGNATURE, &SIGNATURE);
    put(rsdp, offset::OEM_ID, &sdt::OEM_ID);
    put(rsdp, offset::REVISION, &[REVISION]);
    put(rsdp, offset::RSDT_ADDRESS, &rsdt.to_le_bytes());
    put(rsdp, offset::LENGTH, &length.to_le_bytes());
    put(rsdp, offset::XSDT_ADDRESS, &xsdt.to_le_bytes());
    // The first checksum is part of what the extended one covers: compute it first.
    let v1 = sdt::checksum(rsdp.get(..V1_LEN).unwrap_or_default());
    put(rsdp, offset::CHECKSUM, &[v1]);
    let all = sdt::checksum(rsdp);
    put(rsdp, offset::EXTENDED_CHECKSUM, &[all]);
}
