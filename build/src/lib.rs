//! The project's host tool: builds the freestanding binaries, assembles GRUB images and
//! runs them under QEMU and Bochs. `main.rs` is its command line; the integration tests
//! in `tests/` use the same library.

pub mod bochs;
pub mod cargo;
pub mod cli;
pub mod cpio;
pub mod debian;
pub mod deps;
pub mod emulator;
pub mod exit_trace;
pub mod fuzz;
pub mod image;
pub mod linux;
pub mod linux_bench;
pub mod manifest;
pub mod mutants;
pub mod plant;
pub mod programs;
pub mod progress;
pub mod qemu;
pub mod qemu_monitor;
pub mod serial_input;
pub mod trace;

use std::path::PathBuf;

/// The workspace root (this crate lives in `build/`).
pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Where build products and run logs go.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// An error with a message meant for the person at the terminal.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Build an [`Error`] from format arguments.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::Error(format!($($arg)*)) };
}
