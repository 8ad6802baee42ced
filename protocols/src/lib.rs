//! The single definition of the kernel ABI and of every IPC message.
//!
//! The kernel, user programs, the VMM server, tests and fuzzers all import this crate;
//! nothing re-declares a number. Every enum here is part of a wire format: variants are
//! only ever appended, never renumbered.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod bootinfo;
pub mod console;
pub mod device_model;
pub mod devices;
pub mod error;
pub mod fault;
pub mod io;
pub mod ipc;
pub mod layout;
pub mod le;
pub mod manifest;
pub mod object;
pub mod rights;
pub mod syscall;
pub mod testlog;
pub mod vcpu_page;
pub mod vcpu_start;
pub mod vmcs;
pub mod vmexit;
pub mod vmm;
pub mod vmx_failure;
pub mod x86;
