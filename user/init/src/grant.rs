//! Filling a new process's CSpace with one capability its manifest entry lists: a fresh
//! object is made and moved in (the root task keeps no copy of what is the process's
//! own), a named one is copied or minted from the original the root task holds, a port
//! range is carved from the root task's ports and an IRQ line's handler is issued by
//! `IrqControl`, and both are moved in.

use crate::alloc::Alloc;
use crate::process::Process;
use protocols::bootinfo::slot;
use protocols::error::Error;
use protocols::io::root_range_covering;
use protocols::manifest::{Cap, CapEntry};
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use rt::ipc::invoke;

/// Put `c` into `p`'s CNode; `named` gives the root task's slot of a named object.
pub fn give(
    a: &mut Alloc,
    p: &Process,
    c: &CapEntry<'_>,
    named: impl Fn(&str) -> Result<u64, Error>,
) -> Result<(), Error> {
    let dst = u64::from(c.slot);
    let all = u64::from(Rights::ALL.bits());
    let src = match c.cap {
        Cap::Named { name, rights, badge } => {
            let words = [named(name)?, dst, u64::from(rights), badge];
            let (op, words) = if badge == 0 {
                (Invocation::CNodeCopy, &words[..3])
            } else {
                (Invocation::CNodeMint, &words[..])
            };
            return invoke(p.cnode, op, words).map(|_| ());
        }
        Cap::OwnTcb => {
            return invoke(p.cnode, Invocation::CNodeCopy, &[p.tcb, dst, all]).map(|_| ());
        }
        Cap::Endpoint => a.make(ObjectType::Endpoint, 0)?,
        Cap::Notification => a.make(ObjectType::Notification, 0)?,
        Cap::Untyped { bits } => a.make(ObjectType::Untyped, bits.into())?,
        Cap::IoPorts { first, last } => {
            // The manifest was checked: one of the root task's ranges covers them.
            let range = root_range_covering(first, last).ok_or(Error::InvalidArgument)?;
            let carved = a.slot();
            let root = slot::FIRST_IO_PORTS + range as u64;
            invoke(root, Invocation::IoPortsCarve, &[first.into(), last.into(), carved])?;
            carved
        }
        Cap::Irq { line } => {
            let handler = a.slot();
            invoke(slot::IRQ_CONTROL, Invocation::IrqControlGet, &[line.into(), handler])?;
            handler
        }
    };
    invoke(p.cnode, Invocation::CNodeMove, &[src, dst]).map(|_| ())
}
