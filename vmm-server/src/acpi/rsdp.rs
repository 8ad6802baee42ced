//! The Root System Description Pointer (ACPI 6 §5.2.5.3): the 36-byte structure an OS
//! finds by scanning the BIOS area for "RSD PTR " on a 16-byte boundary, and from which it
//! reaches every other table.
//!
//! Revision 2 (ACPI 2.0 and later), so that an OS uses the XSDT; the RSDT address is
//! filled in too, for a reader that only knows ACPI 1.0. Two checksums: one over the
//! ACPI 1.0 part (the first 20 bytes), one over all 36.

use super::sdt::{self, put};

/// ACPI 2.0 and later.
pub const REVISION: u8 = 2;
/// The alignment an OS scans at.
pub const ALIGN: usize = 16;

pub use protocols::acpi::rsdp::{offset, LEN, SIGNATURE, V1_LEN};

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
