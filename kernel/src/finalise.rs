//! Deletion and revocation, in bounded steps with constant stack use.
//!
//! Deleting the last capability to a CNode, TCB or VCpu must empty the object's own slots,
//! and those may hold the last capabilities to further CNodes: a chain as deep as the
//! memory a process was given. Recursing would put that depth on the kernel stack, so the
//! slot keeps a [`Cap::Zombie`] instead (seL4's zombie capabilities): it records how far
//! the emptying got and stays in the derivation tree, so revoking the untyped the object
//! came from still finds it. Zombies form one kernel-wide stack, linked through their
//! slots (no memory besides the objects' own); work always happens on its top, one slot
//! per step, and a slot holding the last capability to another such object becomes the
//! new top. A zombie whose object is empty leaves its slot and the stack.
//!
//! The kernel is not preemptible, so every kernel entry has a budget of steps
//! ([`WORK_PER_ENTRY`]). A delete or revoke that runs out stops with [`Preempted`]: the
//! syscall layer rewinds the thread to its `syscall` instruction with its registers as
//! they were, the pending tick (if any) is taken on the way back to user mode, and the
//! thread's next run continues the same call. What other threads do in between is safe:
//! the progress is in the zombies, which nothing but these steps removes or moves; a
//! zombie cannot be looked up, copied, moved or granted; a delete of a zombie's slot (or a
//! revoke that reaches it) just helps finishing it; and untyped memory is only handed out
//! again once the stack is empty, so no zombie ever lies in memory a retype reuses.

use crate::cap::Cap;
use crate::cnode::{self, SLOT_BITS};
use crate::state::Kernel;
use crate::store::{Store, TcbSlot, TCB_SLOTS_OFFSET, VCPU_SLOTS, VCPU_SLOTS_OFFSET};

/// Steps of deletion work (a slot emptied or a descendant revoked) one kernel entry may
/// do: a few tens of thousands of instructions, well under a tick.
pub const WORK_PER_ENTRY: u32 = 256;

/// A delete or revoke ran out of this entry's budget; the call is to be made again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preempted;

impl<S: Store> Kernel<S> {
    /// Delete the capability in `slot` and finish finalising what it leaves behind;
    /// `Preempted` once this entry's budget is spent (the slot then holds a zombie, and
    /// the same call continues the work).
    pub fn delete(&mut self, slot: u64) -> Result<(), Preempted> {
        self.delete_one(slot);
        while matches!(self.store.slot(slot).cap, Cap::Zombie { .. }) {
            self.step()?;
        }
        Ok(())
    }

    /// Delete every capability derived from the one in `slot`. An untyped region whose
    /// objects are all gone starts again from its beginning, once no object anywhere is
    /// still being finalised (a zombie may lie in its memory).
    pub fn revoke(&mut self, slot: u64) -> Result<(), Preempted> {
        while let Some(d) = cnode::first_descendant(&mut self.store, slot) {
            self.charge()?;
            self.delete(d)?;
        }
        if let Cap::Untyped { base, size_bits, .. } = self.store.slot(slot).cap {
            while self.dying != 0 {
                self.step()?;
            }
            self.store.slot(slot).cap = Cap::Untyped { base, size_bits, free: 0 };
        }
        Ok(())
    }

    /// Give this kernel entry a fresh budget (at each syscall).
    pub(crate) fn refill_budget(&mut self) {
        self.work_left = WORK_PER_ENTRY;
    }

    fn charge(&mut self) -> Result<(), Preempted> {
        self.work_left = self.work_left.checked_sub(1).ok_or(Preempted)?;
        Ok(())
    }

    /// Empty `slot` without finishing anything: an object whose last capability this was
    /// and that has slots of its own becomes a zombie on top of the stack. Used directly
    /// only for slots that hold objects without slots (frames, notifications, …), where
    /// it completes.
    pub(crate) fn delete_one(&mut self, slot: u64) {
        let cap = self.store.slot(slot).cap;
        let slots = match cap {
            Cap::Zombie { .. } | Cap::Null => return,
            Cap::CNode { addr, radix } => Some((addr, 1u32 << radix)),
            Cap::Tcb { addr } => Some((addr + TCB_SLOTS_OFFSET, TcbSlot::ALL.len() as u32)),
            Cap::VCpu { addr } => Some((addr + VCPU_SLOTS_OFFSET, VCPU_SLOTS as u32)),
            _ => None,
        };
        if let Some((first, count)) = slots {
            if cnode::is_final(&mut self.store, slot) {
                match cap {
                    Cap::Tcb { addr } => self.suspend(addr),
                    Cap::VCpu { addr } => {
                        self.suspend(addr);
                        self.vmcs_released = true;
                    }
                    _ => {}
                }
                // The slot keeps its place in the derivation tree.
                self.store.slot(slot).cap = Cap::Zombie { first, count, done: 0, next: self.dying };
                self.dying = slot;
                return;
            }
        }
        let Ok((cap, last)) = cnode::remove(&mut self.store, slot) else { return };
        if let Cap::IoPorts { .. } = cap {
            // Any copy may be one a VCpu passes through: each checks before it runs.
            self.io_ports_generation = self.io_ports_generation.wrapping_add(1);
        }
        if let Cap::Frame { addr, size, mapped: Some(m), .. } = cap {
            self.unmap_frame(m, (addr, size));
        }
        if !last {
            return;
        }
        match cap {
            Cap::Endpoint { addr, .. } => {
                let mut q = self.store.endpoint(addr).queue;
                while let Some(t) = q.pop(&mut self.store) {
                    // A thread whose last word was queued here stops without it.
                    self.release(t, protocols::error::Error::ObjectDeleted as u64);
                }
                *self.store.endpoint(addr) = Default::default();
            }
            Cap::Notification { addr, .. } => {
                let mut q = self.store.notification(addr).waiters;
                while let Some(t) = q.pop(&mut self.store) {
                    self.store.tcb(t).context.rax = protocols::error::Error::ObjectDeleted as u64;
                    self.make_ready(t);
                }
                *self.store.notification(addr) = Default::default();
            }
            Cap::VSpace { addr, .. } => self.vspaces.remove(addr),
            Cap::GuestSpace { addr, .. } => {
                self.vspaces.remove(addr);
                self.ept_stale = true;
            }
            Cap::IrqHandler { irq } => self.release_irq(irq),
            Cap::Reply { addr } => self.reply_deleted(addr),
            Cap::CNode { .. }
            | Cap::Tcb { .. }
            | Cap::VCpu { .. }
            | Cap::Zombie { .. }
            | Cap::Untyped { .. }
            | Cap::Frame { .. }
            | Cap::IoPorts { .. }
            | Cap::IrqControl
            | Cap::Null => {}
        }
    }

    /// One step on the zombie on top of the stack: empty its next slot, or remove it
    /// when none is left. A slot that holds a zombie itself is left to that zombie, which
    /// is on the stack already (below: the top is the only one worked on); one that lies
    /// in the object it names is removed last, with the zombie.
    fn step(&mut self) -> Result<(), Preempted> {
        self.charge()?;
        let top = self.dying;
        let Cap::Zombie { first, count, done, next } = self.store.slot(top).cap else {
            // Only `delete_one` pushes, and only this pops: the stack holds zombies.
            self.dying = 0;
            return Ok(());
        };
        if done == count {
            self.dying = next;
            let _ = cnode::remove(&mut self.store, top);
            return Ok(());
        }
        self.store.slot(top).cap = Cap::Zombie { first, count, done: done + 1, next };
        self.delete_one(first + (u64::from(done) << SLOT_BITS));
        Ok(())
    }
}
