//! A validating parser for the Multiboot2 boot information block.
//!
//! The block comes from the boot loader, so it is treated as untrusted input: every
//! length is bounds-checked against the block's declared size, and a malformed block is
//! a typed error rather than a wild read. The parser borrows the bytes and never copies.

use core::str;
use protocols::le::{u32_at, u64_at};

/// The value the boot loader leaves in `eax`.
pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_BOOTLOADER: u32 = 2;
const TAG_MODULE: u32 = 3;
const TAG_MMAP: u32 = 6;
const TAG_EFI64_SYSTEM_TABLE: u32 = 12;
const TAG_ACPI_OLD_RSDP: u32 = 14;
const TAG_ACPI_NEW_RSDP: u32 = 15;
const TAG_EFI_MMAP: u32 = 17;
/// The smallest EFI memory descriptor (UEFI 2.x: type, start, virtual start, pages,
/// attributes).
const EFI_DESCRIPTOR_MIN: u32 = 40;
/// The Multiboot2 memory types a translated EFI type takes (see [`efi_region_kind`]).
const MB2_RESERVED: u32 = 2;
const MB2_ACPI_RECLAIMABLE: u32 = 3;
const MB2_ACPI_NVS: u32 = 4;
const MB2_DEFECTIVE: u32 = 5;

/// Why a boot information block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `eax` did not hold the Multiboot2 magic.
    BadMagic(u32),
    /// The block is shorter than its header or than its declared size.
    Truncated,
    /// A tag runs past the end of the block or is smaller than a tag header.
    BadTag { offset: usize },
    /// No end tag was found.
    MissingEnd,
    /// The memory-map tag's entry size is unusable.
    BadMmapEntrySize(u32),
    /// The EFI memory-map tag's descriptor size is unusable.
    BadEfiMmapEntrySize(u32),
    /// A module's end lies before its start.
    BadModule { index: usize },
}

/// The firmware that started the boot loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// A PC BIOS (no EFI system table was passed).
    Bios,
    /// UEFI, whose boot services the loader has exited.
    Uefi {
        /// Physical address of the EFI system table.
        system_table: u64,
    },
}

/// The kind of a memory-map region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Usable RAM.
    Available,
    /// Anything else, by its Multiboot2 type (2 reserved, 3 ACPI reclaimable, 4 ACPI NVS,
    /// 5 defective; an EFI map's types are translated to these): never handed out.
    Reserved(u32),
}

/// One memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Physical start.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the firmware says it is.
    pub kind: RegionKind,
}

/// One boot module: a physical byte range and its GRUB command line (its name here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    /// Physical start.
    pub start: u64,
    /// Physical end (exclusive).
    pub end: u64,
    /// The module's command line; the kernel uses it as the module's name.
    pub name: &'a str,
}

/// A validated boot information block.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    bytes: &'a [u8],
}

/// A NUL-terminated string inside a tag; invalid UTF-8 is replaced by a marker name.
fn c_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    str::from_utf8(bytes.get(..end).unwrap_or_default()).unwrap_or("<non-utf8>")
}

/// The declared total size of a block whose first 8 bytes are `header`.
pub fn total_size(header: &[u8; 8]) -> usize {
    u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize
}

impl<'a> BootInfo<'a> {
    /// Validate `bytes` (exactly the block, as long as its declared size) and the magic.
    pub fn parse(magic: u32, bytes: &'a [u8]) -> Result<Self, Error> {
        if magic != BOOTLOADER_MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let size = u32_at(bytes, 0).ok_or(Error::Truncated)? as usize;
        if size < 16 || size > bytes.len() {
            return Err(Error::Truncated);
        }
        let info = Self { bytes: bytes.get(..size).ok_or(Error::Truncated)? };
        // Walk once so every later iteration only sees well-formed tags.
        let mut saw_end = false;
        for tag in info.raw_tags() {
            let (kind, body) = tag?;
            match kind {
                TAG_END => saw_end = true,
                TAG_MMAP => {
                    let entry = u32_at(body, 0).ok_or(Error::Truncated)?;
                    if entry < 24 || entry % 8 != 0 {
                        return Err(Error::BadMmapEntrySize(entry));
                    }
                }
                TAG_EFI_MMAP => {
                    let entry = u32_at(body, 0).ok_or(Error::Truncated)?;
                    if entry < EFI_DESCRIPTOR_MIN || entry % 8 != 0 {
                        return Err(Error::BadEfiMmapEntrySize(entry));
                    }
                }
                _ => {}
            }
        }
        if !saw_end {
            return Err(Error::MissingEnd);
        }
        for (index, m) in info.modules().enumerate() {
            if m.end < m.start {
                return Err(Error::BadModule { index });
            }
        }
        Ok(info)
    }

    /// The block's size in bytes (to reserve it from the frame allocator).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Every tag as `(type, body)`, with errors for malformed ones; stops after the end tag.
    fn raw_tags(&self) -> impl Iterator<Item = Result<(u32, &'a [u8]), Error>> + 'a {
        let bytes = self.bytes;
        let mut offset = 8usize;
        let mut done = false;
        core::iter::from_fn(move || {
            if done {
                return None;
            }
            let (Some(kind), Some(size)) = (u32_at(bytes, offset), u32_at(bytes, offset + 4))
            else {
                done = true;
                return Some(Err(Error::MissingEnd));
            };
            let size = size as usize;
            let end = offset.checked_add(size);
            let body = match end {
                Some(end) if size >= 8 && end <= bytes.len() => bytes.get(offset + 8..end),
                _ => None,
            };
            let Some(body) = body else {
                done = true;
                return Some(Err(Error::BadTag { offset }));
            };
            if kind == TAG_END {
                done = true;
            }
            // Tags start on 8-byte boundaries.
            offset = offset.saturating_add((size + 7) & !7);
            Some(Ok((kind, body)))
        })
    }

    /// Well-formed tags only (the block was validated in `parse`).
    fn tags(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        self.raw_tags().map_while(Result::ok)
    }

    fn string_tag(&self, want: u32) -> Option<&'a str> {
        self.tags().find(|(k, _)| *k == want).map(|(_, body)| c_str(body))
    }

    /// The kernel command line, if the boot loader passed one.
    pub fn cmdline(&self) -> Option<&'a str> {
        self.string_tag(TAG_CMDLINE)
    }

    /// The boot loader's name.
    pub fn bootloader(&self) -> Option<&'a str> {
        self.string_tag(TAG_BOOTLOADER)
    }

    /// The firmware, as the boot loader reports it.
    pub fn firmware(&self) -> Firmware {
        self.tags()
            .find(|(k, _)| *k == TAG_EFI64_SYSTEM_TABLE)
            .and_then(|(_, body)| u64_at(body, 0))
            .map_or(Firmware::Bios, |system_table| Firmware::Uefi { system_table })
    }

    /// The boot loader's copy of the ACPI RSDP: the ACPI 2.0+ one if it passed one, else
    /// the ACPI 1.0 one (the bytes are unchecked; the ACPI reader checks them).
    pub fn rsdp(&self) -> Option<&'a [u8]> {
        let find = |want| self.tags().find(|(k, _)| *k == want).map(|(_, body)| body);
        find(TAG_ACPI_NEW_RSDP).or_else(|| find(TAG_ACPI_OLD_RSDP))
    }

    /// The memory map: the firmware's own EFI map where the boot loader passed one, else
    /// the Multiboot2 map. Adjacent regions of the same kind come merged.
    pub fn memory_map(&self) -> impl Iterator<Item = Region> + 'a {
        let efi = self.tags().any(|(k, _)| k == TAG_EFI_MMAP);
        let (want, parse): (u32, EntryParser) =
            if efi { (TAG_EFI_MMAP, efi_region) } else { (TAG_MMAP, mb2_region) };
        let entries = self.tags().filter(move |(k, _)| *k == want).flat_map(move |(_, body)| {
            // `parse` checked the entry size (at least 24, or 40 for EFI descriptors).
            let size = u32_at(body, 0).unwrap_or(u32::MAX).max(1) as usize;
            body.get(8..).unwrap_or_default().chunks_exact(size).filter_map(parse)
        });
        merged(entries)
    }

    /// The boot modules, in the order the boot loader lists them.
    pub fn modules(&self) -> impl Iterator<Item = Module<'a>> + 'a {
        self.tags().filter(|(k, _)| *k == TAG_MODULE).filter_map(|(_, body)| {
            Some(Module {
                start: u64::from(u32_at(body, 0)?),
                end: u64::from(u32_at(body, 4)?),
                name: c_str(body.get(8..)?),
            })
        })
    }

    /// The module whose name (command line) is `name`.
    pub fn module(&self, name: &str) -> Option<Module<'a>> {
        self.modules().find(|m| m.name == name)
    }
}

/// Reads one memory-map entry.
type EntryParser = fn(&[u8]) -> Option<Region>;

fn mb2_region(e: &[u8]) -> Option<Region> {
    let kind = match u32_at(e, 16)? {
        1 => RegionKind::Available,
        other => RegionKind::Reserved(other),
    };
    Some(Region { base: u64_at(e, 0)?, len: u64_at(e, 8)?, kind })
}

fn efi_region(e: &[u8]) -> Option<Region> {
    let pages = u64_at(e, 24)?;
    Some(Region {
        base: u64_at(e, 8)?,
        len: pages.saturating_mul(4096),
        kind: efi_region_kind(u32_at(e, 0)?),
    })
}

/// An EFI memory type as the kernel sees it once the loader has exited boot services:
/// the loader's and boot services' memory is free RAM again (the kernel reserves the
/// boot information and the modules itself); runtime services, MMIO and the rest stay
/// reserved for good.
fn efi_region_kind(efi_type: u32) -> RegionKind {
    match efi_type {
        // Loader code and data, boot services code and data, conventional memory.
        1 | 2 | 3 | 4 | 7 => RegionKind::Available,
        8 => RegionKind::Reserved(MB2_DEFECTIVE),
        9 => RegionKind::Reserved(MB2_ACPI_RECLAIMABLE),
        10 => RegionKind::Reserved(MB2_ACPI_NVS),
        _ => RegionKind::Reserved(MB2_RESERVED),
    }
}

/// `regions` with each run of adjacent regions of one kind as one region (an EFI map lists
/// loader, boot-services and free memory side by side; the frame allocator's room for
/// ranges is finite).
fn merged(mut regions: impl Iterator<Item = Region>) -> impl Iterator<Item = Region> {
    let mut pending = regions.next();
    core::iter::from_fn(move || {
        let mut current = pending.take()?;
        for next in regions.by_ref() {
            if next.kind == current.kind && current.base.checked_add(current.len) == Some(next.base)
            {
                current.len = current.len.saturating_add(next.len);
            } else {
                pending = Some(next);
                break;
            }
        }
        Some(current)
    })
}

/// Builds boot information blocks for tests and fuzzing.
#[cfg(any(test, feature = "fuzzing"))]
pub mod builder {
    /// Append a tag (header + body, padded to 8 bytes).
    pub fn tag(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
    }

    /// The body of an EFI memory map tag as GRUB passes it (descriptor version 1,
    /// `size`-byte descriptors) with `(type, start, pages)` entries.
    pub fn efi_map(size: u32, entries: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for &(kind, start, pages) in entries {
            let mut d = vec![0u8; size as usize];
            d[0..4].copy_from_slice(&kind.to_le_bytes());
            d[8..16].copy_from_slice(&start.to_le_bytes());
            d[24..32].copy_from_slice(&pages.to_le_bytes());
            body.extend_from_slice(&d);
        }
        body
    }

    /// Wrap tags into a block with header and end tag.
    pub fn block(tags: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 8];
        out.extend_from_slice(tags);
        tag(&mut out, 0, &[]);
        let len = out.len() as u32;
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::builder::{block, efi_map, tag};
    use super::{BootInfo, Error, Firmware, Module, Region, RegionKind, BOOTLOADER_MAGIC};

    fn sample() -> Vec<u8> {
        let mut t = Vec::new();
        tag(&mut t, 1, b"console=serial\0");
        tag(&mut t, 2, b"GRUB 2.06\0");
        let mut m = Vec::new();
        m.extend_from_slice(&0x20_0000u32.to_le_bytes());
        m.extend_from_slice(&0x20_1000u32.to_le_bytes());
        m.extend_from_slice(b"init\0");
        tag(&mut t, 3, &m);
        let mut mm = Vec::new();
        mm.extend_from_slice(&24u32.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
        for (base, len, kind) in
            [(0u64, 0x9f000u64, 1u32), (0x10_0000, 0xff0_0000, 1), (0xfffc_0000, 0x4_0000, 2)]
        {
            mm.extend_from_slice(&base.to_le_bytes());
            mm.extend_from_slice(&len.to_le_bytes());
            mm.extend_from_slice(&kind.to_le_bytes());
            mm.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(&mut t, 6, &mm);
        block(&t)
    }

    #[test]
    fn parses_a_grub_like_block() {
        let bytes = sample();
        let info = BootInfo::parse(BOOTLOADER_MAGIC, &bytes).unwrap();
        assert_eq!(info.cmdline(), Some("console=serial"));
        assert_eq!(info.bootloader(), Some("GRUB 2.06"));
        let m: Vec<_> = info.modules().collect();
        assert_eq!(m, [Module { start: 0x20_0000, end: 0x20_1000, name: "init" }]);
        assert!(info.module("init").is_some() && info.module("vmm").is_none());
        let map: Vec<_> = info.memory_map().collect();
        assert_eq!(map.len(), 3);
        assert_eq!(
            map[1],
            Region { base: 0x10_0000, len: 0xff0_0000, kind: RegionKind::Available }
        );
        assert_eq!(map[2].kind, RegionKind::Reserved(2));
    }

    #[test]
    fn a_uefi_boot_takes_the_efi_map_the_system_table_and_the_newer_rsdp() {
        let mut t = sample();
        t.truncate(t.len() - 8); // drop the end tag, keep the header's size for now
        let mut t = t[8..].to_vec();
        tag(&mut t, 12, &0x1f9e_e018u64.to_le_bytes());
        tag(&mut t, 14, b"RSD PTR v1");
        tag(&mut t, 15, b"RSD PTR v2");
        let entries = [
            (7, 0, 0xa0),            // conventional
            (2, 0x10_0000, 0x100),   // loader data, adjacent to the next: merged
            (4, 0x20_0000, 0x100),   // boot services data
            (7, 0x30_0000, 0x100),   // conventional
            (9, 0x40_0000, 1),       // ACPI reclaimable
            (10, 0x40_1000, 1),      // ACPI NVS
            (5, 0x40_2000, 2),       // runtime services code
            (6, 0x40_4000, 2),       // runtime services data: merged with the code
            (8, 0x40_6000, 1),       // unusable
            (11, 0xffc0_0000, 1024), // MMIO
        ];
        tag(&mut t, 17, &efi_map(48, &entries));
        let bytes = block(&t);
        let info = BootInfo::parse(BOOTLOADER_MAGIC, &bytes).unwrap();
        assert_eq!(info.firmware(), Firmware::Uefi { system_table: 0x1f9e_e018 });
        assert_eq!(info.rsdp(), Some(&b"RSD PTR v2"[..]));
        let map: Vec<_> = info.memory_map().map(|r| (r.base, r.len, r.kind)).collect();
        use RegionKind::{Available as A, Reserved as R};
        assert_eq!(
            map,
            [
                (0, 0xa_0000, A),
                (0x10_0000, 0x30_0000, A),
                (0x40_0000, 0x1000, R(3)),
                (0x40_1000, 0x1000, R(4)),
                (0x40_2000, 0x4000, R(2)),
                (0x40_6000, 0x1000, R(5)),
                (0xffc0_0000, 0x40_0000, R(2)),
            ],
            "the EFI map, not the Multiboot2 one, merged and translated"
        );
    }

    #[test]
    fn a_bios_boot_has_no_system_table_and_may_have_only_the_old_rsdp() {
        let mut t = sample();
        t.truncate(t.len() - 8);
        let mut t = t[8..].to_vec();
        tag(&mut t, 14, b"RSD PTR v1");
        let bytes = block(&t);
        let info = BootInfo::parse(BOOTLOADER_MAGIC, &bytes).unwrap();
        assert_eq!(info.firmware(), Firmware::Bios);
        assert_eq!(info.rsdp(), Some(&b"RSD PTR v1"[..]));
        assert_eq!(info.memory_map().count(), 3, "the Multiboot2 map");
        assert_eq!(BootInfo::parse(BOOTLOADER_MAGIC, &sample()).unwrap().rsdp(), None);
    }

    #[test]
    fn refuses_an_efi_map_with_short_descriptors() {
        let mut t = Vec::new();
        tag(&mut t, 17, &efi_map(32, &[(7, 0, 1)]));
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &block(&t)).unwrap_err(),
            Error::BadEfiMmapEntrySize(32)
        );
    }

    #[test]
    fn refuses_bad_magic_and_truncation() {
        let bytes = sample();
        assert_eq!(BootInfo::parse(0x2bad_b002, &bytes).unwrap_err(), Error::BadMagic(0x2bad_b002));
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &bytes[..bytes.len() - 8]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(BootInfo::parse(BOOTLOADER_MAGIC, &[1, 2]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn refuses_a_tag_running_past_the_end() {
        let mut bytes = sample();
        // Make the first tag claim to be huge.
        bytes[12..16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &bytes).unwrap_err(),
            Error::BadTag { offset: 8 }
        );
    }

    #[test]
    fn refuses_missing_end_and_bad_entries() {
        let mut t = Vec::new();
        tag(&mut t, 6, &[16, 0, 0, 0, 0, 0, 0, 0]);
        let bytes = block(&t);
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &bytes).unwrap_err(),
            Error::BadMmapEntrySize(16)
        );

        let mut no_end = vec![0u8; 8];
        tag(&mut no_end, 1, b"x\0");
        let len = no_end.len() as u32;
        no_end[0..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(BootInfo::parse(BOOTLOADER_MAGIC, &no_end).unwrap_err(), Error::MissingEnd);

        let mut t = Vec::new();
        let mut m = Vec::new();
        m.extend_from_slice(&0x3000u32.to_le_bytes());
        m.extend_from_slice(&0x2000u32.to_le_bytes());
        m.extend_from_slice(b"init\0");
        tag(&mut t, 3, &m);
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &block(&t)).unwrap_err(),
            Error::BadModule { index: 0 }
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let mut b = bytes.clone();
            b[cut] ^= 0xa5;
            let _ = BootInfo::parse(BOOTLOADER_MAGIC, &b)
                .map(|i| (i.modules().count(), i.memory_map().count()));
        }
    }
}
