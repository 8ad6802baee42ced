//! SYSCALL/SYSRET set-up and the glue from the entry stub to `kernel::state`.

use super::cpu::{rdmsr, wrmsr};
use super::entry::syscall_entry;
use super::gdt;
use crate::context::UserContext;
use kernel::fastpath::FastPath;

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

/// Called by the entry stub after it saved the registers in the current TCB.
#[no_mangle]
extern "C" fn syscall_from_user(_frame: *mut UserContext) {
    super::bkl::from_user(
        |k| {
            let cur = k.current;
            super::exit_trace::syscall_entered(
                &mut kernel::store::Store::tcb(&mut k.store, cur).context,
            );
            // The fastpath switches between two ring-3 threads and changes no mapping, VMCS
            // or EPT, so it needs none of the general resume path's work; a VMM's reply that
            // switched straight back to its vCPU enters the guest.
            match k.fastpath() {
                FastPath::Thread => return super::thread::activate(k),
                FastPath::Guest => return enter_guest(k),
                FastPath::Declined => {}
            }
            slowpath(k);
        },
        super::run_loop::dropped,
    );
}

/// The fastpath applied a VMM's reply and switched to its vCPU. Out of line, like the
/// slow path, so the thread-to-thread fastpath's frame stays small.
#[inline(never)]
fn enter_guest(k: &mut super::bkl::Held) {
    // The fastpath changed no mapping and woke nobody elsewhere: nothing to flush.
    super::run_loop::run_next(k, kernel::state::Next::Run);
}

/// Every syscall the fastpath does not take. Kept out of line so that the fastpath's
/// frame stays small: the slow path's large locals and saved registers cost every
/// syscall otherwise.
#[inline(never)]
fn slowpath(k: &mut super::bkl::Held) {
    super::stacks::paint_once_running();
    let next = k.syscall(&mut crate::Console);
    super::run_loop::resume(k, next);
}
