//! Typed wrappers around the `syscall` instruction, one per syscall in `protocols`.

use protocols::error::RawError;
use protocols::syscall::{ShutdownStatus, Syscall};

/// Issue a raw syscall; returns `(rax, rdx)`.
#[cfg(target_arch = "x86_64")]
pub fn raw(number: u64, a0: u64, a1: u64, a2: u64) -> (u64, u64) {
    let (status, value): (u64, u64);
    // SAFETY: `syscall` enters the kernel, which validates every argument and preserves
    // all registers except rax, rdx (results) and rcx, r11 (clobbered by the instruction).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => status,
            in("rdi") a0,
            in("rsi") a1,
            inlateout("rdx") a2 => value,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (status, value)
}

fn result((status, value): (u64, u64)) -> Result<u64, RawError> {
    protocols::error::check(status).map(|()| value)
}

/// Write bytes to the kernel debug console.
pub fn debug_write(bytes: &[u8]) -> Result<u64, RawError> {
    result(raw(Syscall::DebugWrite as u64, bytes.as_ptr() as u64, bytes.len() as u64, 0))
}

/// End the calling thread.
pub fn thread_exit(code: u64) -> ! {
    raw(Syscall::ThreadExit as u64, code, 0, 0);
    // The kernel never returns from ThreadExit; spin rather than run off the end.
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Stop the machine with a verdict (root task only).
pub fn shutdown(status: ShutdownStatus) -> Result<u64, RawError> {
    result(raw(Syscall::Shutdown as u64, status as u64, 0, 0))
}

/// Give up the time slice.
pub fn yield_now() {
    raw(Syscall::Yield as u64, 0, 0, 0);
}
