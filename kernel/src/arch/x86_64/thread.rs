//! Threads as the hardware sees them: a register save area the entry stubs fill, an FPU
//! area, and an address-space root. The TCB lives in a frame of its own.

use super::entry::CURRENT_CONTEXT;
use super::fpu::FpuState;
use super::memory::{PhysMap, PHYS_OFFSET};
use super::{cpu, gdt};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::context::{UserContext, CONTEXT_SIZE};
use kernel::paging::PhysMemory;

/// A thread control block.
#[repr(C, align(64))]
pub struct Thread {
    /// Saved user registers; the entry stubs write here directly.
    pub context: UserContext,
    /// Saved x87/SSE registers.
    pub fpu: FpuState,
    /// Physical address of the thread's PML4.
    pub root: u64,
    /// Whether this is the root task (holds the machine-control authority).
    pub root_task: bool,
    name: [u8; 16],
    name_len: usize,
}

const _: () = assert!(core::mem::size_of::<Thread>() <= 4096);

/// The running thread's TCB address (0: none).
static CURRENT: AtomicU64 = AtomicU64::new(0);

impl Thread {
    /// Build a TCB in the (allocator-owned, otherwise unused) frame at `frame`.
    pub fn create(frame: u64, root: u64, context: UserContext, name: &str, root_task: bool) {
        let mut t = Thread {
            context,
            fpu: FpuState::initial(),
            root,
            root_task,
            name: [0; 16],
            name_len: name.len().min(16),
        };
        t.name[..t.name_len].copy_from_slice(&name.as_bytes()[..t.name_len]);
        let mut window = PhysMap;
        let bytes = window.frame(frame);
        let tcb = bytes.as_mut_ptr().cast::<Thread>();
        // SAFETY: the frame is 4 KiB, page-aligned (so aligned for `Thread`), exclusively
        // owned by the caller, and large enough (checked at compile time).
        unsafe { tcb.write(t) }
    }

    /// The thread's name, for logs.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// Run `f` on the current thread, if there is one.
pub fn with_current<R>(f: impl FnOnce(&mut Thread) -> R) -> Option<R> {
    let addr = CURRENT.load(Relaxed);
    if addr == 0 {
        return None;
    }
    // SAFETY: CURRENT only ever holds a TCB built by `Thread::create` in the physical
    // window; the kernel is single-threaded, and the borrow is confined to `f`.
    Some(f(unsafe { &mut *(addr as *mut Thread) }))
}

/// Make the TCB in `frame` the running thread: its address space, FPU state, and the
/// save area the entry stubs use.
pub fn switch_to(frame: u64) {
    with_current(|old| old.fpu.save());
    let addr = PHYS_OFFSET + frame;
    CURRENT.store(addr, Relaxed);
    with_current(|t| {
        t.fpu.restore();
        let ctx = &raw mut t.context as u64;
        CURRENT_CONTEXT.store(ctx, Relaxed);
        gdt::set_rsp0(ctx + CONTEXT_SIZE as u64);
        if cpu::read_cr3() != t.root {
            // SAFETY: the thread's PML4 shares the kernel half, so the kernel keeps running.
            unsafe { cpu::write_cr3(t.root) }
        }
    });
}

/// Forget the current thread (it exited or faulted).
pub fn clear_current() {
    CURRENT.store(0, Relaxed);
    CURRENT_CONTEXT.store(0, Relaxed);
}
