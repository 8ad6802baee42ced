//! The Differentiated System Description Table (ACPI 6 §5.2.11.1): a definition block
//! whose AML defines one object, `\_S5_`, the sleep-type values of soft off. That is
//! all Linux needs to power off through ACPI: it reads SLP_TYPa from the package and
//! writes it with SLP_EN to PM1a_CNT, which [`crate::devices::acpi_pm`] turns into a
//! power-off request. Devices stay undeclared: the guest finds the legacy ones at their
//! PC addresses.
//!
//! The AML is `Name (_S5, Package (4) { 5, 5, 0, 0 })`: SLP_TYPa, SLP_TYPb (no PM1b
//! exists, it repeats SLP_TYPa) and two reserved zeros. The package's PkgLength is
//! computed from its contents by [`pkg_length`], not written by hand.

use super::sdt::{self, put};
use crate::devices::acpi_pm::SLP_TYP_S5;

/// Its signature.
pub const SIGNATURE: [u8; 4] = *b"DSDT";
/// Revision 2: integers in the AML are 64 bits wide.
pub const REVISION: u8 = 2;

/// AML opcodes and prefixes used (ACPI 6 §20.3).
pub mod aml {
    /// ZeroOp: the integer 0.
    pub const ZERO_OP: u8 = 0x00;
    /// NameOp: `Name (NameSeg, DataRefObject)`.
    pub const NAME_OP: u8 = 0x08;
    /// BytePrefix: a one-byte integer follows.
    pub const BYTE_PREFIX: u8 = 0x0a;
    /// PackageOp: PkgLength NumElements PackageElementList.
    pub const PACKAGE_OP: u8 = 0x12;
}

/// The name of the S5 sleep-type object (four characters, `_` padded).
pub const S5_NAME: [u8; 4] = *b"_S5_";
/// The package's elements: SLP_TYPa, SLP_TYPb, two reserved zeros.
const S5_ELEMENTS: [u8; 6] =
    [aml::BYTE_PREFIX, SLP_TYP_S5, aml::BYTE_PREFIX, SLP_TYP_S5, aml::ZERO_OP, aml::ZERO_OP];
/// The number of elements in the package.
const S5_ELEMENT_COUNT: u8 = 4;
/// What the package's PkgLength covers: NumElements and the elements.
const S5_CONTENTS: usize = 1 + S5_ELEMENTS.len();
/// Bytes of the AML body: NameOp, the name, PackageOp, a one-byte PkgLength, NumElements
/// and the elements (the tests check that the PkgLength fits one byte).
pub const AML_LEN: usize = 1 + 4 + 1 + 1 + 1 + S5_ELEMENTS.len();
/// Bytes of the DSDT.
pub const LEN: usize = sdt::HEADER_LEN + AML_LEN;

/// The encoding of a PkgLength (ACPI 6 §20.2.4) for `contents` bytes that follow it; the
/// value counts its own bytes too. Returns the bytes and how many are used (1 to 4), or
/// `None` when the package is too long for the 28-bit field.
pub fn pkg_length(contents: usize) -> Option<([u8; 4], usize)> {
    // (bytes used, the bound on the value, the lead byte's count bits 7:6): one byte
    // holds 6 bits, each further byte adds 8 to the lead byte's low nibble.
    const FORMS: [(usize, usize, u8); 4] =
        [(1, 1 << 6, 0x00), (2, 1 << 12, 0x40), (3, 1 << 20, 0x80), (4, 1 << 28, 0xc0)];
    let (used, total, count_bits) = FORMS.iter().find_map(|&(used, bound, count_bits)| {
        let total = contents.checked_add(used)?;
        (total < bound).then_some((used, total, count_bits))
    })?;
    let b = total.to_le_bytes();
    if used == 1 {
        return Some(([b[0], 0, 0, 0], 1));
    }
    let rest = total.checked_shr(4)?.to_le_bytes();
    Some(([count_bits | (b[0] & 0x0f), rest[0], rest[1], rest[2]], used))
}

/// The AML body.
pub fn body() -> [u8; AML_LEN] {
    let mut aml = [0u8; AML_LEN];
    let (length, _) = pkg_length(S5_CONTENTS).unwrap_or(([0; 4], 1));
    put(&mut aml, 0, &[aml::NAME_OP]);
    put(&mut aml, 1, &S5_NAME);
    put(&mut aml, 5, &[aml::PACKAGE_OP, length[0], S5_ELEMENT_COUNT]);
    put(&mut aml, 8, &S5_ELEMENTS);
    aml
}

/// Write the DSDT into `out` (exactly [`LEN`] bytes).
pub fn write(out: &mut [u8]) {
    sdt::write_header(out, SIGNATURE, REVISION);
    put(out, sdt::HEADER_LEN, &body());
    sdt::seal(out);
}
