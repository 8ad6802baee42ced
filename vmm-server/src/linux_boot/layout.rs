//! Where the loader puts what it builds in the guest's low memory. The 64-bit entry needs
//! a GDT, page tables, `boot_params` and the command line, all identity-mapped; they go
//! in the first 640 KiB, which no kernel load address or initramfs placement reaches (both
//! start at 1 MiB or above), and which the kernel itself keeps for its early boot.
//! The kernel's decompressor sets its own stack first thing; the one given is only so
//! that RSP is not garbage.

/// The boot GDT (four descriptors).
pub const GDT: u64 = 0x1000;
/// `boot_params`, the "zero page" (RSI at entry).
pub const ZERO_PAGE: u64 = 0x7000;
/// The page tables: PML4, PDPT and four page directories, one page each.
pub const PAGE_TABLES: u64 = 0x9000;
/// The entry stack's top (it grows down from here, above the page tables' end 0xf000).
pub const STACK_TOP: u64 = 0x1_f000;
/// The command line.
pub const CMDLINE: u64 = 0x2_0000;
/// Room for the command line, its NUL included.
pub const CMDLINE_ROOM: u64 = 0x1_0000;
/// Where the kernel's protected-mode part may start at the lowest.
pub const KERNEL_MIN: u64 = 0x10_0000;
/// The initramfs's start is aligned to a page.
pub const INITRD_ALIGN: u64 = 0x1000;

#[cfg(test)]
mod tests {
    use super::{CMDLINE, CMDLINE_ROOM, GDT, PAGE_TABLES, STACK_TOP, ZERO_PAGE};
    use crate::linux_boot::e820::LOW_RAM_END;
    use crate::linux_boot::page_tables::TABLE_PAGES;

    #[test]
    fn the_low_structures_do_not_overlap_and_stay_below_640k() {
        let mut ranges = [
            (GDT, GDT + 32),
            (ZERO_PAGE, ZERO_PAGE + 4096),
            (PAGE_TABLES, PAGE_TABLES + 4096 * TABLE_PAGES as u64),
            (STACK_TOP - 0x1000, STACK_TOP),
            (CMDLINE, CMDLINE + CMDLINE_ROOM),
        ];
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "{w:x?}");
        }
        assert!(ranges.iter().all(|r| r.1 <= LOW_RAM_END));
        assert_eq!(PAGE_TABLES % 4096, 0);
    }
}
