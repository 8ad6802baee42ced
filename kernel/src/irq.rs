//! IRQ lines as capabilities, seL4-style: `IrqControl` makes one `IrqHandler` per line; a
//! handler binds its line to a notification and acknowledges it. When a bound line fires
//! the kernel masks it and signals the notification; the driver serves its device and
//! acknowledges, which unmasks the line. A line nobody handles stays masked.
//!
//! Each line's binding is a capability in the kernel's IRQ node (one slot per line), a
//! copy derived from the notification capability the driver named, so revoking that
//! capability unbinds the line like any other derived copy. A line's handler is issued
//! while any capability to it exists; deleting the last one unbinds and masks the line,
//! and the line can be issued again.

use crate::cap::Cap;
use crate::cnode::{self, SLOT_BITS};
use crate::state::{Done, Kernel, Next, Platform};
use crate::store::{cnode_slot, Store};
use protocols::error::Error;
use protocols::io::{IRQ_CASCADE, IRQ_LINES, IRQ_TIMER};
use protocols::rights::Rights;

/// log2 of the IRQ node's size: one slot per line.
pub const IRQ_NODE_BITS: u8 = 4 + SLOT_BITS;
const _: () = assert!(1 << (IRQ_NODE_BITS - SLOT_BITS) == IRQ_LINES as usize);

/// The kernel's record of the IRQ lines, one bit per line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqTable {
    /// The IRQ node: slot `i` holds line `i`'s notification capability (or nothing).
    pub node: u64,
    /// Lines with a live handler capability.
    issued: u16,
    /// Lines unmasked by an acknowledgement and not yet fired.
    unmasked: u16,
    /// Lines whose last handler capability went during this invocation, to be masked
    /// before it returns (deletion has no platform at hand).
    released: u16,
}

impl IrqTable {
    /// No node, no line handled.
    pub const EMPTY: Self = Self { node: 0, issued: 0, unmasked: 0, released: 0 };

    /// Whether an interrupt can still wake a thread: some handled line is unmasked.
    pub fn armed(&self) -> bool {
        self.unmasked != 0
    }

    /// Lines with a live handler capability (bit `i` = line `i`).
    pub fn issued(&self) -> u16 {
        self.issued
    }

    /// Lines unmasked and not yet fired.
    pub fn unmasked(&self) -> u16 {
        self.unmasked
    }
}

const fn bit(irq: u8) -> u16 {
    1 << irq
}

/// The lines in a bit set, lowest first.
fn lines(set: u16) -> impl Iterator<Item = u8> {
    (0..IRQ_LINES).filter(move |irq| set & bit(*irq) != 0)
}

impl<S: Store> Kernel<S> {
    fn irq_slot(&self, irq: u8) -> u64 {
        cnode_slot(self.irqs.node, u64::from(irq))
    }

    /// `IrqControlGet` on the capability in slot `control`: the handler of line `irq` in
    /// the caller's CSpace root `dst`, derived from the control capability.
    pub(crate) fn irq_control_get(
        &mut self,
        control: u64,
        irq: u64,
        dst: u64,
    ) -> Result<Done, Error> {
        let irq =
            u8::try_from(irq).ok().filter(|i| *i < IRQ_LINES).ok_or(Error::InvalidArgument)?;
        if irq == IRQ_TIMER || irq == IRQ_CASCADE {
            return Err(Error::NotPermitted);
        }
        if self.irqs.issued & bit(irq) != 0 {
            return Err(Error::InUse);
        }
        let dst = self.empty_root_slot(dst)?;
        cnode::insert_child(&mut self.store, control, dst, Cap::IrqHandler { irq })
            .map_err(|_| Error::InvalidArgument)?;
        self.irqs.issued |= bit(irq);
        Ok(Done::Value(0))
    }

    /// `IrqHandlerSetNotification`: signal the notification in the caller's slot `ntfn`
    /// when line `irq` fires, replacing any earlier binding.
    pub(crate) fn irq_set_notification(&mut self, irq: u8, ntfn: u64) -> Result<Done, Error> {
        let (at, cap) = self.lookup(ntfn)?;
        let Cap::Notification { rights, .. } = cap else { return Err(Error::WrongType) };
        if !rights.contains(Rights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        self.rebind(self.irq_slot(irq), Some((at, cap)))?;
        Ok(Done::Value(0))
    }

    /// `IrqHandlerAck`: unmask line `irq`.
    pub(crate) fn irq_ack(&mut self, p: &mut impl Platform, irq: u8) -> Result<Done, Error> {
        self.irqs.unmasked |= bit(irq);
        p.unmask_irq(irq);
        Ok(Done::Value(0))
    }

    /// Line `irq` fired (the bare-metal layer has already sent the PIC its end of
    /// interrupt): mask it until the driver acknowledges, and signal its notification with
    /// the notification capability's badge, or `1 << irq` where it has none.
    pub fn interrupt(&mut self, p: &mut impl Platform, irq: u8) {
        if irq >= IRQ_LINES || irq == IRQ_TIMER {
            return;
        }
        p.mask_irq(irq);
        self.irqs.unmasked &= !bit(irq);
        if let Cap::Notification { addr, badge, .. } = self.store.slot(self.irq_slot(irq)).cap {
            self.signal(addr, if badge != 0 { badge } else { 1 << irq });
        }
    }

    /// Deliver the interrupts of every line in `set` (bit `i` = IRQ `i`), then pick the
    /// thread to run: a driver woken by one may outrank the current thread.
    pub fn interrupts(&mut self, p: &mut impl Platform, set: u16) -> Next {
        for irq in lines(set) {
            self.interrupt(p, irq);
        }
        self.schedule()
    }

    /// The last capability to line `irq`'s handler went: unbind the line, and mask it
    /// before the invocation returns.
    pub(crate) fn release_irq(&mut self, irq: u8) {
        let b = bit(irq);
        self.irqs.issued &= !b;
        self.irqs.unmasked &= !b;
        self.irqs.released |= b;
        // A notification: deleting it always completes.
        self.delete_one(self.irq_slot(irq));
    }

    /// Mask the lines released during this invocation.
    pub(crate) fn mask_released_irqs(&mut self, p: &mut impl Platform) {
        if self.irqs.released == 0 {
            return;
        }
        for irq in lines(core::mem::take(&mut self.irqs.released)) {
            p.mask_irq(irq);
        }
    }
}
