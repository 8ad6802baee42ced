//! Shared pieces of the fuzz targets: how each target reads its input (so the seed
//! generator and the targets agree on one layout) and the seed corpus itself.
//!
//! Targets whose natural input is a byte string (Multiboot2 blocks, ELF images) take the
//! bytes almost raw, behind one mode byte at most, so that real boot blocks and real ELF
//! files are meaningful seeds and libFuzzer's byte mutations stay close to real inputs.
//! The others use `arbitrary` to build structured operation sequences.

pub mod seeds;

/// The `syscalls` target's input format and projection live with its harness.
pub use fuzz_oracles::{project, syscalls};

/// The `acpi` target's mode byte (the first input byte).
pub mod acpi_mode {
    /// An `arbitrary` machine whose tables the VMM's ACPI writer lays out; any other
    /// value: raw physical memory.
    pub const BUILT: u8 = 0xb0;
}

/// The `multiboot2` target's mode byte (the first input byte).
pub mod multiboot2_mode {
    /// Mode bytes up to this one: the rest is a block, passed with the correct magic.
    pub const RAW_LAST: u8 = 0xef;
    /// Mode bytes from here up to [`BUILT`] (exclusive): a little-endian magic, then a
    /// block, so the magic check itself is fuzzed too.
    pub const RAW_WITH_MAGIC: u8 = 0xf0;
    /// The rest is an `arbitrary` description of a block, built and then mutated.
    pub const BUILT: u8 = 0xff;
}

/// A copy of some bytes whose first byte is 8-byte aligned. The ELF parser reads headers
/// in place and refuses a misaligned image; the kernel hands it page-aligned modules, so
/// the fuzzer must too, or it would only ever test the alignment check.
pub struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    /// Copy `bytes` into an aligned position of a fresh buffer.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(bytes.len() + 8);
        // `align_offset` on the allocation's own pointer: no `unsafe` needed, and the
        // capacity reserved above means pushing cannot move the allocation.
        let start = buf.as_ptr().align_offset(8).min(7);
        buf.resize(start, 0);
        buf.extend_from_slice(bytes);
        Self { buf, start, len: bytes.len() }
    }

    /// The aligned bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..self.start + self.len).unwrap_or_default()
    }
}
