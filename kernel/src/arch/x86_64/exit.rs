//! Ending an emulator run with a verdict the host harness can read.
//!
//! QEMU: the `isa-debug-exit` device at port 0xf4 (0x10 → exit 33 = pass, 0x11 → 35 =
//! fail). Bochs: `xchg bx, bx` is a magic breakpoint whose debugger script quits with 0
//! (pass); "Shutdown" written to port 0x8900 ends it with 1 (fail). Each write is
//! ignored by the other emulator (and by real hardware), so no detection is needed; on
//! real hardware the CPU simply halts.

use super::cpu::{halt_forever, outb};

const QEMU_DEBUG_EXIT: u16 = 0xf4;
const BOCHS_SHUTDOWN: u16 = 0x8900;

/// Stop the machine, passing `pass` to the emulator.
pub fn exit(pass: bool) -> ! {
    if pass {
        // SAFETY: port 0xf4 is the emulator's exit device; nothing else uses it.
        unsafe { outb(QEMU_DEBUG_EXIT, 0x10) }
        // SAFETY: `xchg bx, bx` only exchanges a register with itself (Bochs traps it).
        unsafe { core::arch::asm!("xchg bx, bx", options(nomem, nostack)) }
    } else {
        // SAFETY: as above.
        unsafe { outb(QEMU_DEBUG_EXIT, 0x11) }
        for b in *b"Shutdown" {
            // SAFETY: port 0x8900 is Bochs's shutdown port, unused otherwise.
            unsafe { outb(BOCHS_SHUTDOWN, b) }
        }
    }
    halt_forever()
}
