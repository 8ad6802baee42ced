//! Fuzzes `kernel::multiboot2::BootInfo::parse`, the first thing the kernel does with
//! boot-loader memory.
//!
//! Input: a mode byte (see `fuzz::multiboot2_mode`), then either raw block bytes (with
//! the right or an arbitrary magic), or an `arbitrary` description of a well-formed block
//! that is built with the kernel's own test builder and then optionally mutated.
//! Invariants checked on every accepted block: modules have `start <= end`; the
//! memory-map and module iterators terminate within a bound the block's size implies;
//! every string points into the block; the block re-parses identically on its own and
//! with trailing bytes; no two adjacent regions of the map could have been merged; and an
//! unmutated built block parses to exactly what was built (the EFI map instead of the
//! Multiboot2 one where there is one, EFI types translated, adjacent regions of one kind
//! merged, the newer RSDP copy preferred, the EFI system table found).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use fuzz::multiboot2_mode::{BUILT, RAW_LAST};
use kernel::multiboot2::builder::{block, efi_map as efi_map_body, tag};
use kernel::multiboot2::{BootInfo, Error, Firmware, Region, RegionKind, BOOTLOADER_MAGIC};
use libfuzzer_sys::fuzz_target;

/// Everything the kernel can learn from a block, owned, for comparisons.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    size: usize,
    cmdline: Option<String>,
    bootloader: Option<String>,
    modules: Vec<(u64, u64, String)>,
    memory_map: Vec<Region>,
    firmware: Firmware,
    rsdp: Option<Vec<u8>>,
}

/// Whether a string returned by the parser borrows from `block` (or is one of the
/// parser's own constants: empty, or the marker for non-UTF-8 names).
fn inside(block: &[u8], s: &str) -> bool {
    s.is_empty() || s == "<non-utf8>" || {
        let range = block.as_ptr_range();
        let p = s.as_ptr();
        range.contains(&p) && s.len() <= block.len() - (p as usize - range.start as usize)
    }
}

/// Walk everything the kernel walks, checking the invariants, and summarise it.
fn summarize(info: &BootInfo<'_>, block: &[u8]) -> Summary {
    let size = info.size();
    assert!((16..=block.len()).contains(&size), "size {size} outside 16..={}", block.len());
    // A memory-map entry takes at least 24 bytes of the block and a module tag at least
    // 16, so more items than that means an iterator is not advancing.
    let max_regions = size / 24;
    let memory_map: Vec<Region> = info.memory_map().take(max_regions + 1).collect();
    assert!(memory_map.len() <= max_regions, "memory map yields more entries than fit");
    let max_modules = size / 16;
    let modules: Vec<_> = info.modules().take(max_modules + 1).collect();
    assert!(modules.len() <= max_modules, "module list yields more entries than fit");
    for (i, m) in modules.iter().enumerate() {
        assert!(m.start <= m.end, "module {i} has start {:#x} > end {:#x}", m.start, m.end);
        assert!(inside(block, m.name), "module {i}'s name points outside the block");
        // `module(name)` finds the first module of that name.
        let first = modules.iter().find(|o| o.name == m.name).copied();
        assert_eq!(info.module(m.name), first);
    }
    let cmdline = info.cmdline();
    let bootloader = info.bootloader();
    for s in [cmdline, bootloader].into_iter().flatten() {
        assert!(inside(block, s), "a string tag points outside the block");
    }
    for r in &memory_map {
        if let RegionKind::Reserved(kind) = r.kind {
            assert_ne!(kind, 1, "type 1 is available memory, not reserved");
        }
    }
    for pair in memory_map.windows(2) {
        let touching = pair[0].base.checked_add(pair[0].len) == Some(pair[1].base);
        assert!(!(touching && pair[0].kind == pair[1].kind), "unmerged regions: {pair:?}");
    }
    let rsdp = info.rsdp();
    if let Some(r) = rsdp {
        assert!(block.as_ptr_range().contains(&r.as_ptr()), "the RSDP points outside the block");
    }
    Summary {
        size,
        cmdline: cmdline.map(String::from),
        bootloader: bootloader.map(String::from),
        modules: modules.iter().map(|m| (m.start, m.end, m.name.to_string())).collect(),
        memory_map,
        firmware: info.firmware(),
        rsdp: rsdp.map(<[u8]>::to_vec),
    }
}

/// Parse `bytes` with `magic` and check every invariant; the summary if it parsed.
fn check(magic: u32, bytes: &[u8]) -> Option<Summary> {
    let parsed = BootInfo::parse(magic, bytes);
    if magic != BOOTLOADER_MAGIC {
        assert_eq!(parsed.err(), Some(Error::BadMagic(magic)), "wrong magic accepted");
        return None;
    }
    let info = parsed.ok()?;
    let summary = summarize(&info, bytes);
    let declared = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(summary.size, declared, "size differs from the header's total_size");

    // The same block alone, in a fresh allocation, and with trailing bytes: the parser
    // must only depend on the declared block.
    let exact = bytes[..summary.size].to_vec();
    let again = BootInfo::parse(magic, &exact).expect("an accepted block re-parses");
    assert_eq!(summarize(&again, &exact), summary, "re-parse differs");
    let mut padded = exact.clone();
    padded.extend_from_slice(&[0xa5; 24]);
    let again = BootInfo::parse(magic, &padded).expect("trailing bytes change acceptance");
    assert_eq!(summarize(&again, &padded), summary, "trailing bytes change the result");
    Some(summary)
}

/// One tag of a well-formed block.
#[derive(Arbitrary, Debug)]
enum TagSpec {
    Cmdline(String),
    Bootloader(String),
    Module {
        start: u32,
        len: u32,
        name: String,
    },
    /// `extra` adds 8-byte words to each entry (entry sizes 24, 32, 40 are legal).
    Mmap {
        extra: u8,
        entries: Vec<(u64, u64, u32)>,
    },
    /// The firmware's EFI map: `extra` 8-byte words past the 40-byte descriptor, entries
    /// `(EFI type, start, pages)`.
    EfiMmap {
        extra: u8,
        entries: Vec<(u32, u64, u64)>,
    },
    /// The EFI system table's address.
    EfiSystemTable(u64),
    /// A copy of the RSDP, ACPI 1.0's (`new` false) or 2.0+'s.
    Rsdp {
        new: bool,
        body: Vec<u8>,
    },
    Unknown {
        kind: u32,
        body: Vec<u8>,
    },
}

/// The tag types the parser interprets: end, cmdline, boot loader, module, memory map,
/// EFI system table, the two RSDP copies, the EFI memory map.
const INTERPRETED: [u32; 9] = [0, 1, 2, 3, 6, 12, 14, 15, 17];

/// An EFI memory type as the kernel must see it once boot services are gone.
fn efi_kind(efi_type: u32) -> RegionKind {
    match efi_type {
        1..=4 | 7 => RegionKind::Available,
        8 => RegionKind::Reserved(5),
        9 => RegionKind::Reserved(3),
        10 => RegionKind::Reserved(4),
        _ => RegionKind::Reserved(2),
    }
}

/// What the kernel must make of `regions`: each run of touching regions of one kind as
/// one region.
fn merge(regions: Vec<Region>) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for r in regions {
        match out.last_mut() {
            Some(last) if last.kind == r.kind && last.base.checked_add(last.len) == Some(r.base) => {
                last.len = last.len.saturating_add(r.len);
            }
            _ => out.push(r),
        }
    }
    out
}

/// A block description plus byte mutations applied after building it.
#[derive(Arbitrary, Debug)]
struct Built {
    tags: Vec<TagSpec>,
    mutations: Vec<(u16, u8)>,
    truncate: Option<u16>,
}

/// The string a C-string tag yields once the parser stops at the first NUL.
fn strip_nul(s: &str) -> String {
    s.split('\0').next().unwrap_or_default().to_string()
}

fn build(spec: &Built) -> (Vec<u8>, Summary) {
    let mut tags = Vec::new();
    let mut want = Summary {
        size: 0,
        cmdline: None,
        bootloader: None,
        modules: Vec::new(),
        memory_map: Vec::new(),
        firmware: Firmware::Bios,
        rsdp: None,
    };
    let (mut efi_map, mut old_rsdp, mut new_rsdp) = (None::<Vec<Region>>, None, None);
    for t in &spec.tags {
        match t {
            TagSpec::Cmdline(s) | TagSpec::Bootloader(s) => {
                let kind = if matches!(t, TagSpec::Cmdline(_)) { 1 } else { 2 };
                let mut body = s.as_bytes().to_vec();
                body.push(0);
                tag(&mut tags, kind, &body);
                let slot = if kind == 1 { &mut want.cmdline } else { &mut want.bootloader };
                slot.get_or_insert_with(|| strip_nul(s));
            }
            TagSpec::Module { start, len, name } => {
                let end = start.saturating_add(*len);
                let mut body = Vec::new();
                body.extend_from_slice(&start.to_le_bytes());
                body.extend_from_slice(&end.to_le_bytes());
                body.extend_from_slice(name.as_bytes());
                body.push(0);
                tag(&mut tags, 3, &body);
                want.modules.push((u64::from(*start), u64::from(end), strip_nul(name)));
            }
            TagSpec::Mmap { extra, entries } => {
                let entry_size = 24 + 8 * u32::from(*extra % 3);
                let mut body = Vec::new();
                body.extend_from_slice(&entry_size.to_le_bytes());
                body.extend_from_slice(&0u32.to_le_bytes());
                for &(base, len, kind) in entries {
                    body.extend_from_slice(&base.to_le_bytes());
                    body.extend_from_slice(&len.to_le_bytes());
                    body.extend_from_slice(&kind.to_le_bytes());
                    body.resize(body.len() + entry_size as usize - 20, 0);
                    let kind =
                        if kind == 1 { RegionKind::Available } else { RegionKind::Reserved(kind) };
                    want.memory_map.push(Region { base, len, kind });
                }
                tag(&mut tags, 6, &body);
            }
            TagSpec::EfiMmap { extra, entries } => {
                let size = 40 + 8 * u32::from(*extra % 3);
                let map = efi_map.get_or_insert_with(Vec::new);
                for &(efi_type, start, pages) in entries {
                    let len = pages.saturating_mul(4096);
                    map.push(Region { base: start, len, kind: efi_kind(efi_type) });
                }
                tag(&mut tags, 17, &efi_map_body(size, entries));
            }
            TagSpec::EfiSystemTable(address) => {
                tag(&mut tags, 12, &address.to_le_bytes());
                if want.firmware == Firmware::Bios {
                    want.firmware = Firmware::Uefi { system_table: *address };
                }
            }
            TagSpec::Rsdp { new, body } => {
                tag(&mut tags, if *new { 15 } else { 14 }, body);
                let slot = if *new { &mut new_rsdp } else { &mut old_rsdp };
                slot.get_or_insert_with(|| body.clone());
            }
            TagSpec::Unknown { kind, body } => {
                // Keep clear of the tag types the parser interprets; those have their
                // own variants.
                let kind = if INTERPRETED.contains(kind) { kind + 0x100 } else { *kind };
                tag(&mut tags, kind, body);
            }
        }
    }
    let bytes = block(&tags);
    want.size = bytes.len();
    want.memory_map = merge(efi_map.unwrap_or(want.memory_map));
    want.rsdp = new_rsdp.or(old_rsdp);
    (bytes, want)
}

fn built(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(spec) = Built::arbitrary(&mut u) else { return };
    let (mut bytes, want) = build(&spec);
    if spec.mutations.is_empty() && spec.truncate.is_none() {
        let got = check(BOOTLOADER_MAGIC, &bytes);
        assert_eq!(got.as_ref(), Some(&want), "a well-formed block parsed differently");
        return;
    }
    for &(at, xor) in &spec.mutations {
        let at = usize::from(at) % bytes.len();
        bytes[at] ^= xor;
    }
    if let Some(n) = spec.truncate {
        bytes.truncate(usize::from(n));
    }
    check(BOOTLOADER_MAGIC, &bytes);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        0..=RAW_LAST => {
            check(BOOTLOADER_MAGIC, rest);
        }
        BUILT => built(rest),
        _ => {
            let Some((magic, block)) = rest.split_first_chunk::<4>() else { return };
            check(u32::from_le_bytes(*magic), block);
        }
    }
});
