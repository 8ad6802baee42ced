//! The big kernel lock: one ticket lock around the kernel state, taken by every kernel
//! entry on every CPU (syscall, exception, interrupt, VM exit, a wake-up from idle) and
//! released on the way out, so the kernel's logic stays single-threaded. A CPU waiting
//! for its turn answers stall requests (`ipi::answer_stall`): the holder may be waiting
//! for exactly that CPU. Idling and running a guest happen with the lock released
//! ([`Held::unlocked`]).

use super::phys_store::PhysStore;
use super::{ipi, percpu, smp};
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use kernel::state::Kernel;

/// The kernel state of this machine.
pub type State = Kernel<PhysStore>;

struct Bkl {
    /// The next ticket to hand out.
    next: AtomicU32,
    /// The ticket whose holder may enter.
    serving: AtomicU32,
    state: UnsafeCell<State>,
}

// SAFETY: the state is reached only through `Held`, and a `Held` exists only while its
// CPU holds the ticket being served: one at a time.
unsafe impl Sync for Bkl {}

/// Built in place: the run queues of every CPU are too large for a boot stack. The boot
/// code fills in what the machine says before the first thread runs.
static BKL: Bkl = Bkl {
    next: AtomicU32::new(0),
    serving: AtomicU32::new(0),
    state: UnsafeCell::new(Kernel::new(PhysStore, [0; 256], false)),
};

#[inline(always)]
fn acquire() {
    let ticket = BKL.next.fetch_add(1, Relaxed);
    if BKL.serving.load(Acquire) != ticket {
        wait(ticket);
    }
}

/// Another CPU holds the lock: wait for `ticket`'s turn. Out of line, so the
/// uncontended path (every fastpath syscall's) stays a few instructions.
#[cold]
#[inline(never)]
fn wait(ticket: u32) {
    while BKL.serving.load(Acquire) != ticket {
        ipi::answer_stall();
        core::hint::spin_loop();
    }
}

#[inline(always)]
fn release() {
    // Only the holder writes `serving`.
    BKL.serving.store(BKL.serving.load(Relaxed).wrapping_add(1), Release);
}

/// The kernel state, while this CPU holds the lock. Not `Send`: it stays on its CPU.
pub struct Held {
    _on_this_cpu: PhantomData<*mut ()>,
}

impl Deref for Held {
    type Target = State;
    fn deref(&self) -> &State {
        // SAFETY: this CPU holds the lock (see `Bkl`'s `Sync`).
        unsafe { &*BKL.state.get() }
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut State {
        // SAFETY: as for `deref`; `&mut self` makes the reference unique on this CPU.
        unsafe { &mut *BKL.state.get() }
    }
}

/// Take the state for this CPU: true if a stall dropped the entry being made.
#[inline(always)]
fn enter(held: &mut Held) -> bool {
    // One test: this CPU's key is its index unless a stall dropped the entry.
    let key = percpu::get::<{ percpu::KEY }>();
    if key as usize == held.cpu {
        return false;
    }
    enter_other(held, key)
}

/// The state was last another CPU's, or a stall dropped this entry.
#[cold]
#[inline(never)]
fn enter_other(held: &mut Held, key: u64) -> bool {
    let cpu = percpu::cpu();
    percpu::set::<{ percpu::KEY }>(cpu as u64);
    held.enter_on(cpu);
    key == percpu::DROPPED
}

impl Drop for Held {
    fn drop(&mut self) {
        release();
    }
}

impl Held {
    /// Run `f` with the lock released (idling, a guest running), then take it again. `f`
    /// cannot reach the state: it is borrowed for the call. With one CPU online nobody
    /// else can want the lock, and it stays held (as a one-CPU build of seL4 has none).
    #[inline(always)]
    /// The second value says whether the lock was released (another CPU may have run
    /// the kernel meanwhile).
    pub fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> (R, bool) {
        if smp::online() == 1 {
            return (f(), false);
        }
        release();
        let r = f();
        acquire();
        // Entered from the kernel (idle, a guest): nothing to drop.
        let _ = enter(self);
        (r, true)
    }
}

/// Run `f` on the kernel state, on this CPU's behalf (an entry not from ring 3).
#[inline(always)]
pub fn with_kernel<R>(f: impl FnOnce(&mut Held) -> R) -> R {
    acquire();
    let mut held = Held { _on_this_cpu: PhantomData };
    let _ = enter(&mut held);
    f(&mut held)
}

/// Run `f` on the kernel state for an entry from ring 3 (a syscall, a fault, an
/// interrupt), unless a stall dropped the entry while this CPU waited for the lock:
/// then `dropped` runs instead (the thread was wound back, or changed, or is gone).
#[inline(always)]
pub fn from_user(f: impl FnOnce(&mut Held), dropped: impl FnOnce(&mut Held)) {
    acquire();
    let mut held = Held { _on_this_cpu: PhantomData };
    if enter(&mut held) {
        dropped(&mut held)
    } else {
        f(&mut held)
    }
}
