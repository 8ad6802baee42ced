//! Virtual-memory layout facts user programs and the kernel agree on.

/// First address above the user half (canonical lower half ends here).
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// End of the user addresses that may be mapped. The last page below [`USER_END`] stays
/// unmapped, so a `syscall` at the very top of user space can never return to a
/// non-canonical address.
pub const USER_MAP_END: u64 = USER_END - PAGE_SIZE;
/// Lowest address a user segment may use: page 0 stays unmapped to catch null pointers.
pub const USER_MIN: u64 = 0x1000;
/// Top of the initial user stack the kernel maps for the root task.
pub const ROOT_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Size of that stack: the root task keeps the decoded manifest (about 9 KiB) and a VM's
/// description (2 KiB) on it, some of them in more than one frame at a time.
pub const ROOT_STACK_SIZE: u64 = 128 * 1024;
/// The page size used for user mappings.
pub const PAGE_SIZE: u64 = 4096;
