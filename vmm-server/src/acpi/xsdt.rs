//! The root tables that list the others (ACPI 6 §5.2.7, §5.2.8): the XSDT with 64-bit
//! entries, which an ACPI 2.0+ OS reads, and the RSDT with the same entries in 32 bits,
//! for an ACPI 1.0 reader (44 bytes, so it costs nothing to keep both). Both list the
//! FADT and the MADT; the DSDT and the FACS are reached through the FADT.

use super::sdt::{self, put};

pub use protocols::acpi::sdt::{RSDT_SIGNATURE, XSDT_SIGNATURE};
/// The revision of both.
pub const REVISION: u8 = 1;
/// The tables listed: the FADT and the MADT.
pub const ENTRIES: usize = 2;
/// Bytes of the XSDT.
pub const XSDT_LEN: usize = sdt::HEADER_LEN + 8 * ENTRIES;
/// Bytes of the RSDT.
pub const RSDT_LEN: usize = sdt::HEADER_LEN + 4 * ENTRIES;

/// Write the XSDT listing `entries` into `out` (exactly [`XSDT_LEN`] bytes).
pub fn write_xsdt(out: &mut [u8], entries: &[u64; ENTRIES]) {
    sdt::write_header(out, XSDT_SIGNATURE, REVISION);
    for (entry, at) in entries.iter().zip((sdt::HEADER_LEN..).step_by(8)) {
        put(out, at, &entry.to_le_bytes());
    }
    sdt::seal(out);
}

/// Write the RSDT listing `entries` into `out` (exactly [`RSDT_LEN`] bytes).
pub fn write_rsdt(out: &mut [u8], entries: &[u32; ENTRIES]) {
    sdt::write_header(out, RSDT_SIGNATURE, REVISION);
    for (entry, at) in entries.iter().zip((sdt::HEADER_LEN..).step_by(4)) {
        put(out, at, &entry.to_le_bytes());
    }
    sdt::seal(out);
}
