//! The console driver's host-testable core: per-client line assembly ([`lines`]), the
//! 16550 UART's programming and interrupt-paced transmission ([`uart`]) and what it
//! receives ([`input`]), all over plain
//! traits so `cargo test` drives them with a fake UART. The ring-3 process around them
//! (`main.rs`) only turns register accesses into `IoPorts` invocations and interrupt
//! waits into notification waits.
//!
//! Clients are untrusted: nothing they send may panic the driver.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects, clippy::indexing_slicing))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod input;
pub mod lines;
pub mod uart;
