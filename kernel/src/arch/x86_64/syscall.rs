//! SYSCALL/SYSRET set-up and the syscall dispatcher.

use super::cpu::{rdmsr, wrmsr};
use super::entry::syscall_entry;
use super::memory::PhysMap;
use super::serial::Serial;
use super::thread::{self, with_current};
use super::{exit, gdt};
use crate::context::UserContext;
use kernel::paging::copy_from_user;
use protocols::error::Error;
use protocols::syscall::{ShutdownStatus, Syscall, DEBUG_WRITE_MAX};

const EFER: u32 = 0xc000_0080;
const STAR: u32 = 0xc000_0081;
const LSTAR: u32 = 0xc000_0082;
const FMASK: u32 = 0xc000_0084;
/// RFLAGS cleared on entry: IF, TF, DF, AC, NT.
const FMASK_BITS: u64 = (1 << 9) | (1 << 8) | (1 << 10) | (1 << 18) | (1 << 14);

/// Enable `syscall` and point it at the entry stub.
pub fn init() {
    // SAFETY: these MSRs exist on every x86-64 CPU; the selectors match `gdt`'s layout
    // (user base 0x10: SS = 0x18|3, CS = 0x20|3).
    unsafe {
        wrmsr(EFER, rdmsr(EFER) | 1);
        wrmsr(STAR, (0x10u64 << 48) | (u64::from(gdt::KERNEL_CS) << 32));
        wrmsr(LSTAR, syscall_entry as *const () as u64);
        wrmsr(FMASK, FMASK_BITS);
    }
}

/// Called by the entry stub with the frame it built in the current thread's save area.
#[no_mangle]
extern "C" fn syscall_from_user(_frame: *mut UserContext) {
    let Some((number, args, root, root_task)) = with_current(|t| {
        let c = &t.context;
        (c.rax, [c.rdi, c.rsi, c.rdx], t.root, t.root_task)
    }) else {
        crate::kprintln!("kernel: syscall with no current thread");
        exit::exit(false);
    };
    let (status, value) = match dispatch(number, args, root, root_task) {
        Ok(v) => (0, v),
        Err(e) => (e as u64, 0),
    };
    with_current(|t| {
        t.context.rax = status;
        t.context.rdx = value;
    });
}

fn dispatch(number: u64, args: [u64; 3], root: u64, root_task: bool) -> Result<u64, Error> {
    match Syscall::from_raw(number).ok_or(Error::InvalidSyscall)? {
        Syscall::DebugWrite => debug_write(root, args[0], args[1]),
        Syscall::ThreadExit => {
            with_current(|t| {
                crate::kprintln!("kernel: thread {} exited with code {}", t.name(), args[0]);
            });
            thread::clear_current();
            crate::no_runnable_thread()
        }
        Syscall::Shutdown => {
            if !root_task {
                return Err(Error::NotPermitted);
            }
            let status = ShutdownStatus::from_raw(args[0]).ok_or(Error::InvalidArgument)?;
            crate::kprintln!("kernel: shutdown requested by the root task: {status:?}");
            exit::exit(status == ShutdownStatus::Pass)
        }
        Syscall::Yield => Ok(0),
    }
}

fn debug_write(root: u64, ptr: u64, len: u64) -> Result<u64, Error> {
    if len > DEBUG_WRITE_MAX as u64 {
        return Err(Error::InvalidArgument);
    }
    let mut buf = [0u8; DEBUG_WRITE_MAX];
    let dst = buf.get_mut(..len as usize).ok_or(Error::InvalidArgument)?;
    copy_from_user(&mut PhysMap, root, ptr, dst).map_err(|_| Error::BadUserPointer)?;
    Serial::write_bytes(dst);
    Ok(len)
}
