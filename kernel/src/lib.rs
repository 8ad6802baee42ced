//! The kernel's logic, free of hardware access so it runs (and is tested and fuzzed) on
//! the host. The bare-metal binary (`main.rs` and `arch/`) is a thin layer over this.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod context;
pub mod elf_loader;
pub mod frame_alloc;
pub mod multiboot2;
pub mod paging;
pub mod vmx;
