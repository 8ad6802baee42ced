//! The identity map and GDT the 64-bit entry needs. The protocol asks for the kernel,
//! `boot_params` and the command line to be identity-mapped; this maps the whole first
//! 4 GiB with 2 MiB pages (every 64-bit CPU has them, unlike 1 GiB pages), which covers
//! all of those, the initramfs (always below 4 GiB, as `initrd_addr_max` is 32-bit) and
//! whatever else the decompressor touches before it builds its own tables. Six pages.

/// A page.
pub const PAGE: usize = 4096;
/// Bytes identity-mapped.
pub const MAPPED: u64 = 4 << 30;
/// Page directories: one per GiB.
const DIRECTORIES: usize = 4;
/// PML4, PDPT, then the directories.
pub const TABLE_PAGES: usize = 2 + DIRECTORIES;

/// Present.
const P: u64 = 1 << 0;
/// Writable.
const RW: u64 = 1 << 1;
/// A 2 MiB page (in a page-directory entry).
const PS: u64 = 1 << 7;
/// 2 MiB.
const LARGE: u64 = 2 << 20;
/// 1 GiB.
const GIB: u64 = 1 << 30;
/// Entries per table.
const ENTRIES: usize = 512;

/// Selector of the flat 64-bit code segment (the protocol's `__BOOT_CS`).
pub const BOOT_CS: u16 = 0x10;
/// Selector of the flat data segment (`__BOOT_DS`), for DS, ES and SS.
pub const BOOT_DS: u16 = 0x18;
/// The GDT: null, unused, code, data.
pub const GDT_SIZE: usize = 32;
/// Flat 64-bit code: present, DPL 0, execute/read, accessed, L, 4 KiB granularity.
const CODE64: u64 = 0x00af_9b00_0000_ffff;
/// Flat data: present, DPL 0, read/write, accessed, 32-bit, 4 KiB granularity.
const DATA: u64 = 0x00cf_9300_0000_ffff;

/// The GDT's bytes (loaded with limit `GDT_SIZE - 1`).
pub fn gdt() -> [u8; GDT_SIZE] {
    let mut b = [0u8; GDT_SIZE];
    for (slot, d) in b.chunks_exact_mut(8).zip([0, 0, CODE64, DATA]) {
        slot.copy_from_slice(&u64::to_le_bytes(d));
    }
    b
}

/// Page `index` (`0..TABLE_PAGES`) of the tables when the PML4 is at guest-physical
/// `base`; `None` past the last page or if `base` is too high to address them.
pub fn table_page(base: u64, index: usize) -> Option<[u8; PAGE]> {
    let page_at = |i: usize| base.checked_add(u64::try_from(i).ok()?.checked_mul(PAGE as u64)?);
    // The table's entries, as (count, first value, step).
    let (count, first, step) = match index {
        0 => (1, page_at(1)? | P | RW, 0),
        1 => (DIRECTORIES, page_at(2)? | P | RW, PAGE as u64),
        i if i < TABLE_PAGES => {
            let gib = u64::try_from(i.checked_sub(2)?).ok()?;
            (ENTRIES, gib.checked_mul(GIB)? | P | RW | PS, LARGE)
        }
        _ => return None,
    };
    let mut page = [0u8; PAGE];
    let mut value = first;
    for slot in page.chunks_exact_mut(8).take(count) {
        slot.copy_from_slice(&value.to_le_bytes());
        value = value.wrapping_add(step);
    }
    Some(page)
}

#[cfg(test)]
mod tests {
    use super::{gdt, table_page, MAPPED, PAGE, TABLE_PAGES};

    fn entry(page: &[u8; PAGE], i: usize) -> u64 {
        u64::from_le_bytes(page[i * 8..i * 8 + 8].try_into().unwrap())
    }

    /// Walk the tables built at `base` (as the CPU would) for the linear address `va`.
    fn translate(base: u64, va: u64) -> Option<u64> {
        let pages: Vec<_> = (0..TABLE_PAGES).map(|i| table_page(base, i).unwrap()).collect();
        let at = |pa: u64| pages.get(((pa - base) / PAGE as u64) as usize);
        let pml4e = entry(at(base)?, ((va >> 39) & 511) as usize);
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = entry(at(pml4e & !0xfff)?, ((va >> 30) & 511) as usize);
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = entry(at(pdpte & !0xfff)?, ((va >> 21) & 511) as usize);
        assert_eq!(pde & 0x83, 0x83, "present, writable, 2 MiB");
        Some((pde & !0x1f_ffff & !(1 << 7) & !3) | (va & 0x1f_ffff))
    }

    #[test]
    fn the_first_4_gib_are_identity_mapped_and_nothing_else() {
        for va in [0, 0x7000, 0x20_1234, 0x100_0000, 0x7fff_ffff, 0xffff_f000, MAPPED - 1] {
            assert_eq!(translate(0x9000, va), Some(va), "{va:#x}");
        }
        assert_eq!(translate(0x9000, MAPPED), None);
        assert_eq!(translate(0x9000, 1 << 39), None);
        assert!(table_page(0x9000, TABLE_PAGES).is_none());
        assert!(table_page(u64::MAX - 0x800, 0).is_none());
    }

    #[test]
    fn the_gdt_has_flat_code64_at_0x10_and_data_at_0x18() {
        let g = gdt();
        let d = |sel: usize| u64::from_le_bytes(g[sel..sel + 8].try_into().unwrap());
        assert_eq!(d(0), 0);
        assert_eq!(d(0x10) >> 40 & 0xff, 0x9b, "present code, execute/read");
        assert_eq!(d(0x10) >> 53 & 1, 1, "L: 64-bit");
        assert_eq!(d(0x18) >> 40 & 0xff, 0x93, "present data, read/write");
        assert_eq!(d(0x18) & 0xffff | (d(0x18) >> 32 & 0xf_0000), 0xf_ffff, "4 GiB limit");
    }
}
