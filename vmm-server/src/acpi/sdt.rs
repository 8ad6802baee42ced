//! The 36-byte header that starts every ACPI system description table (ACPI 6 §5.2.6),
//! and the checksum that makes a table's bytes sum to zero, which is how an OS tells a
//! table from stray memory.
//!
//! Every table names the project: OEM ID "CAPVMM", OEM table ID "CAPV" followed by the
//! table's signature (so a dump says which table it is), creator "CVMM".

/// The OEM ID of every table and of the RSDP.
pub const OEM_ID: [u8; 6] = *b"CAPVMM";
/// The first half of every OEM table ID; the table's signature is the second.
pub const OEM_TABLE_ID_PREFIX: [u8; 4] = *b"CAPV";
/// The OEM revision of every table.
pub const OEM_REVISION: u32 = 1;
/// The creator ID: the program that wrote the tables (ACPI's "ASL compiler").
pub const CREATOR_ID: [u8; 4] = *b"CVMM";
/// The creator revision.
pub const CREATOR_REVISION: u32 = 1;

pub use protocols::acpi::sdt::{offset, HEADER_LEN};

/// Copy `bytes` to `table` at `at`. Offsets are the table modules' constants and every
/// table is sized before it is written, so a miss would be a bug the tests catch, never
/// something a caller's input decides; it is dropped rather than a panic.
pub(crate) fn put(table: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = at.checked_add(bytes.len()).and_then(|end| table.get_mut(at..end)) {
        dst.copy_from_slice(bytes);
    }
}

/// The byte that, added to `bytes`, makes their sum 0 modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)).wrapping_neg()
}

/// Write the header of a table that fills all of `table`: its length is `table.len()`.
/// The checksum is left zero until [`seal`].
pub(crate) fn write_header(table: &mut [u8], signature: [u8; 4], revision: u8) {
    let length = u32::try_from(table.len()).unwrap_or(u32::MAX);
    let mut table_id = [0u8; 8];
    let (prefix, suffix) = table_id.split_at_mut(4);
    prefix.copy_from_slice(&OEM_TABLE_ID_PREFIX);
    suffix.copy_from_slice(&signature);
    put(table, offset::SIGNATURE, &signature);
    put(table, offset::LENGTH, &length.to_le_bytes());
    put(table, offset::REVISION, &[revision]);
    put(table, offset::CHECKSUM, &[0]);
    put(table, offset::OEM_ID, &OEM_ID);
    put(table, offset::OEM_TABLE_ID, &table_id);
    put(table, offset::OEM_REVISION, &OEM_REVISION.to_le_bytes());
    put(table, offset::CREATOR_ID, &CREATOR_ID);
    put(table, offset::CREATOR_REVISION, &CREATOR_REVISION.to_le_bytes());
}

/// Set the checksum byte so that all of `table` sums to zero; call it after the table's
/// last byte is written.
pub(crate) fn seal(table: &mut [u8]) {
    put(table, offset::CHECKSUM, &[0]);
    let sum = checksum(table);
    put(table, offset::CHECKSUM, &[sum]);
}
