//! The VMM server's host-testable core: buses, device models, CPUID/MSR policy, exit
//! decoding and the exit dispatcher. Everything here is pure logic over values the kernel
//! forwards in an exit message, so it runs under `cargo test`; the ring-3 binary that
//! talks to the kernel is a thin loop around [`dispatch::Vm::handle`].
//!
//! Every guest-controlled value is untrusted: no code path may panic on it. Indexing and
//! unchecked arithmetic are denied outside tests to keep that promise checkable.
#![cfg_attr(not(any(test, feature = "fuzzing")), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects, clippy::indexing_slicing))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod acpi;
pub mod bus;
pub mod clock;
pub mod controls;
pub mod cpuid;
pub mod cr;
pub mod debug_regs;
pub mod devices;
pub mod dispatch;
pub mod exit_qualification;
pub mod guest_image;
pub mod guest_memory;
pub mod guest_time;
pub mod hypercall;
pub mod io;
pub mod linux_boot;
pub mod mmio;
pub mod msr;
#[cfg(any(test, feature = "test-modes"))]
pub mod mutate;
pub mod paging;
pub mod pending_input;
pub mod platform;
pub mod reply;
pub mod saved_state;
pub mod serve;
#[cfg(any(test, feature = "fuzzing"))]
pub mod testing;
#[cfg(any(test, feature = "test-modes"))]
pub mod trace;
pub mod vcpu_apics;
pub mod vcpu_refusal;
