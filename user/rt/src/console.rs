//! Printing through the console driver (`protocols::console`), with the kernel's debug
//! console as the fallback.
//!
//! A process that was given an endpoint of the driver attaches it once; from then on
//! everything `print!` writes goes there in [`MAX_WRITE`]-byte calls. Until then, or if
//! a call fails (no such capability, the driver refused), output goes to `DebugWrite`,
//! so a process started without a console still reports.

use crate::ipc::{call, Msg};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use protocols::console::{write_message, MAX_WRITE, OK};

/// The driver's endpoint slot; 0 (never a capability: slot 0 stays empty) for none.
static ENDPOINT: AtomicU64 = AtomicU64::new(0);

/// Print through the driver endpoint in slot `slot` from now on.
pub fn attach(slot: u64) {
    ENDPOINT.store(slot, Relaxed);
}

/// Write `bytes`: whole lines reach the driver's UART intact.
pub fn write(bytes: &[u8]) {
    let ep = ENDPOINT.load(Relaxed);
    let mut rest = bytes;
    if ep != 0 {
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_WRITE));
            if !send(ep, chunk) {
                // The console is gone or was never there: stop trying.
                ENDPOINT.store(0, Relaxed);
                break;
            }
            rest = tail;
        }
    }
    if !rest.is_empty() {
        let _ = crate::syscall::debug_write(rest);
    }
}

fn send(ep: u64, chunk: &[u8]) -> bool {
    let Some((info, words)) = write_message(chunk) else { return false };
    let msg = Msg { info, words };
    matches!(call(ep, &msg), Ok(r) if r.msg.info.label == OK)
}
