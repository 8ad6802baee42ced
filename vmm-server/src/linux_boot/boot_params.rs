//! `boot_params`, the "zero page" the kernel reads at entry (RSI). As the protocol says,
//! it starts zeroed with the image's own setup header copied in at 0x1f1; the loader then
//! fills in what only it knows: who it is, where the command line and the initramfs are,
//! that the setup heap may be used, the e820 map and where the ACPI tables' RSDP is
//! (`acpi_rsdp_addr`, protocol 2.14; older kernels find it by scanning the BIOS area,
//! where it also is). Everything else stays zero (no screen, no EDD, no EFI), which is what
//! a serial-console guest without firmware has.

use super::bzimage::{loadflags, offset, LinuxImage, SETUP_HEADER};
use super::e820::{E820Entry, ENTRY_SIZE};

/// Its size.
pub const SIZE: usize = 4096;
/// `acpi_rsdp_addr`.
const ACPI_RSDP_ADDR: usize = 0x070;
/// `e820_entries`.
const E820_ENTRIES: usize = 0x1e8;
/// `e820_table`.
const E820_TABLE: usize = 0x2d0;
/// The most entries `e820_table` holds.
pub const E820_MAX: usize = 128;
/// `type_of_loader` for a loader without an assigned number.
const LOADER_UNDEFINED: u8 = 0xff;
/// `heap_end_ptr`: the end of the setup code's heap, relative to the real-mode code
/// (the largest the protocol's 64 KiB real-mode segment allows, less 0x200). The setup
/// code does not run at the 64-bit entry, but a kernel may read the field.
const HEAP_END: u16 = 0xfe00;

/// What the loader decided, as `boot_params` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement<'e> {
    /// The command line's guest-physical address.
    pub cmdline: u32,
    /// The initramfs's guest-physical address (0 without one).
    pub initrd: u32,
    /// Its length.
    pub initrd_len: u32,
    /// The e820 map.
    pub e820: &'e [E820Entry],
    /// The RSDP's guest-physical address (0: no ACPI tables).
    pub acpi_rsdp: u64,
}

fn put(page: &mut [u8; SIZE], at: usize, bytes: &[u8]) {
    // Offsets are this module's constants, all inside the page; a miss would be a bug
    // the tests catch, not something input decides.
    if let Some(dst) = at.checked_add(bytes.len()).and_then(|end| page.get_mut(at..end)) {
        dst.copy_from_slice(bytes);
    }
}

/// Build the zero page for `image` placed as `placement` says (at most [`E820_MAX`] e820
/// entries are recorded).
pub fn build(image: &LinuxImage<'_>, placement: &Placement<'_>) -> [u8; SIZE] {
    let mut page = [0u8; SIZE];
    put(&mut page, SETUP_HEADER, image.setup_header());
    put(&mut page, offset::TYPE_OF_LOADER, &[LOADER_UNDEFINED]);
    put(&mut page, offset::LOADFLAGS, &[image.loadflags | loadflags::CAN_USE_HEAP]);
    put(&mut page, offset::HEAP_END_PTR, &HEAP_END.to_le_bytes());
    put(&mut page, offset::CMD_LINE_PTR, &placement.cmdline.to_le_bytes());
    put(&mut page, offset::RAMDISK_IMAGE, &placement.initrd.to_le_bytes());
    put(&mut page, offset::RAMDISK_SIZE, &placement.initrd_len.to_le_bytes());
    put(&mut page, ACPI_RSDP_ADDR, &placement.acpi_rsdp.to_le_bytes());
    let entries = placement.e820.iter().take(E820_MAX);
    let mut count: u8 = 0;
    for (e, at) in entries.zip((E820_TABLE..).step_by(ENTRY_SIZE)) {
        put(&mut page, at, &e.to_bytes());
        count = count.saturating_add(1);
    }
    put(&mut page, E820_ENTRIES, &[count]);
    page
}

#[cfg(test)]
mod tests {
    use super::{build, Placement, E820_MAX, E820_TABLE};
    use crate::linux_boot::bzimage::LinuxImage;
    use crate::linux_boot::e820::map;
    use crate::linux_boot::tests::synthetic;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_header_is_copied_and_the_loaders_fields_filled_in() {
        let file = synthetic(0x1000);
        let image = LinuxImage::parse(&file).unwrap();
        let e820 = map(64 << 20).unwrap();
        let p = Placement {
            cmdline: 0x2_0000,
            initrd: 0x300_0000,
            initrd_len: 0x1234,
            e820: &e820,
            acpi_rsdp: 0xe_0000,
        };
        let page = build(&image, &p);
        // The header as the file has it, but for the fields the loader owns.
        for at in 0x1f1..0x26c {
            if !(0x210..0x212).contains(&at)
                && !(0x218..0x220).contains(&at)
                && !(0x224..0x22c).contains(&at)
            {
                assert_eq!(page[at], file[at], "byte {at:#x}");
            }
        }
        assert_eq!(page[0x210], 0xff, "type_of_loader");
        assert_eq!(page[0x211], file[0x211] | 0x80, "CAN_USE_HEAP");
        assert_eq!(&page[0x224..0x226], &0xfe00u16.to_le_bytes());
        assert_eq!(u32_at(&page, 0x228), 0x2_0000);
        assert_eq!(u32_at(&page, 0x70), 0xe_0000, "acpi_rsdp_addr");
        assert_eq!(u32_at(&page, 0x74), 0);
        assert_eq!(u32_at(&page, 0x218), 0x300_0000);
        assert_eq!(u32_at(&page, 0x21c), 0x1234);
        assert_eq!(page[0x1e8], 3);
        assert_eq!(&page[E820_TABLE..E820_TABLE + 20], &e820[0].to_bytes());
        assert_eq!(&page[E820_TABLE + 40..E820_TABLE + 60], &e820[2].to_bytes());
        assert!(page[..0x70].iter().all(|&b| b == 0), "no screen, no EDD, no EFI");
        assert!(page[0x78..0x1e8].iter().all(|&b| b == 0));
        assert!(page[0x1e9..0x1f1].iter().all(|&b| b == 0));
        assert!(page[0x26c..E820_TABLE].iter().all(|&b| b == 0));
        assert!(page[E820_TABLE + 60..].iter().all(|&b| b == 0));
    }

    #[test]
    fn at_most_128_e820_entries_are_recorded() {
        let file = synthetic(0x1000);
        let image = LinuxImage::parse(&file).unwrap();
        let e820 = [map(64 << 20).unwrap()[0]; 200];
        let p = Placement { cmdline: 0, initrd: 0, initrd_len: 0, e820: &e820, acpi_rsdp: 0 };
        let page = build(&image, &p);
        assert_eq!(usize::from(page[0x1e8]), E820_MAX);
        assert_eq!(E820_TABLE + E820_MAX * 20, 0xcd0, "the table ends where boot_params says");
    }
}
