//! The ring-3 runtime every user program links: the `_start` entry, the panic handler,
//! typed syscall wrappers over `protocols`, and `print!` (through the console driver
//! once one is attached, see [`console`]).
#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod identity;
pub mod ipc;
pub mod rng;
pub mod syscall;
pub mod testing;

use core::fmt::{self, Write};

/// A `fmt::Write` sink that batches into a line buffer and flushes it, a line at a time,
/// through [`console::write`].
pub struct DebugOut {
    buf: [u8; 256],
    len: usize,
}

impl DebugOut {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { buf: [0; 256], len: 0 }
    }

    /// Send what is buffered.
    pub fn flush(&mut self) {
        if self.len > 0 {
            console::write(self.buf.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
    }
}

impl Default for DebugOut {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for DebugOut {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
            if b == b'\n' {
                self.flush();
            }
        }
        Ok(())
    }
}

/// Print formatted text.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut out = $crate::DebugOut::new();
        let _ = write!(out, $($arg)*);
        out.flush();
    }};
}

/// Print a formatted line.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut out = $crate::DebugOut::new();
        let _ = writeln!(out, $($arg)*);
        out.flush();
    }};
}

/// Declare the program's entry function: `rt::entry!(start);` with
/// `fn start(arg: u64) -> u64`, `arg` being the `rdi` its creator set
/// (not `main`, which the host build of the crate defines as a stub).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        extern "C" fn _start(arg: u64) -> ! {
            let f: fn(u64) -> u64 = $main;
            $crate::syscall::thread_exit(f(arg))
        }

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            match $crate::identity::get() {
                Some((kind, name)) => $crate::println!("{kind} {name}: panic: {info}"),
                None => $crate::println!("panic: {info}"),
            }
            $crate::syscall::thread_exit(u64::MAX)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            // Referenced so the host build (for lints) sees the program's code as used.
            let _: fn(u64) -> u64 = $main;
            eprintln!("this is a ring-3 program for the kernel: build it with `cargo xtask build`");
            std::process::exit(2);
        }
    };
}
