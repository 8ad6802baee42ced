//! The kernel's logic, free of hardware access so it runs (and is tested and fuzzed) on
//! the host. The bare-metal binary (`main.rs` and `arch/`) is a thin layer over this.
#![cfg_attr(not(any(test, feature = "fuzzing")), no_std)]
#![forbid(unsafe_code)]

/// Whether a bug planted on purpose is active: `false` except in the build `cargo xtask
/// plant` makes (see `planted`).
macro_rules! planted {
    ($bug:ident) => {{
        #[cfg(feature = "planted-bugs")]
        let on = crate::planted::active(crate::planted::Bug::$bug);
        #[cfg(not(feature = "planted-bugs"))]
        let on = false;
        on
    }};
}

pub mod acpi;
#[cfg(test)]
mod acpi_tests;
pub mod bootstrap;
pub mod cap;
pub mod cnode;
pub mod console_share;
pub mod context;
pub mod elf_loader;
pub mod endpoint;
pub mod fastpath;
pub mod finalise;
#[cfg(test)]
mod finalise_tests;
pub mod frame_alloc;
#[cfg(test)]
mod frame_tests;
#[cfg(test)]
mod hw_tests;
pub mod invoke;
pub mod io_ports;
pub mod ipc;
pub mod ipc_buffer;
#[cfg(test)]
mod ipc_buffer_tests;
pub mod irq;
pub mod kernel_message;
pub mod multiboot2;
pub mod notification;
pub mod paging;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod queue;
pub mod reply;
#[cfg(test)]
mod reply_tests;
pub mod sched;
pub mod schedulable;
#[cfg(test)]
mod smp_tests;
pub mod state;
pub mod store;
#[cfg(test)]
mod syscall_tests;
pub mod tcb;
#[cfg(any(test, feature = "fuzzing"))]
pub mod testbed;
pub mod untyped;
pub mod vcpu;
pub mod vcpu_passthrough;
#[cfg(test)]
mod vcpu_tests;
pub mod vmx;
pub mod vspace;
