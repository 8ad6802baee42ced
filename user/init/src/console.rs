//! Starting the console driver from its boot module, with exactly its capabilities:
//! COM1's ports (carved from the root task's range), IRQ 4's handler, a notification
//! for it, and the endpoint it serves. Every other process prints through a badged copy
//! of that endpoint; the root task's own output moves there as soon as the driver runs.

use crate::alloc::Alloc;
use crate::process;
use protocols::bootinfo::slot;
use protocols::console::{self, IRQ, PORTS};
use protocols::error::Error;
use protocols::io::root_range_covering;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use rt::ipc::{call, invoke, Msg};

/// The driver's boot module.
const MODULE: &str = "console";
/// Its priority: the highest, so a woken driver runs at once and no busy thread can hold
/// up everybody's output.
const PRIORITY: u64 = 255;
/// The root task's badge as a console client.
const INIT_BADGE: u64 = 1;
/// VMM `i`'s badge is this plus `i`.
pub const FIRST_VMM_BADGE: u64 = 0x100;

/// The running driver.
pub struct Console {
    /// The endpoint it serves (the root task's unbadged original).
    endpoint: u64,
    /// The root task's own badged copy.
    own: u64,
}

impl Console {
    /// Give the process whose CNode is in slot `cnode` a copy of the endpoint with
    /// `badge`, in its slot `dst`, good for calls only.
    pub fn grant(&self, cnode: u64, dst: u64, badge: u64) -> Result<(), Error> {
        let call_only = u64::from(Rights::CALL.bits());
        invoke(cnode, Invocation::CNodeMint, &[self.endpoint, dst, call_only, badge]).map(|_| ())
    }

    /// The driver's counters: `[interrupts, lines, bytes]`.
    pub fn stats(&self) -> Result<[u64; 3], Error> {
        let r = call(self.own, &Msg::new(console::STATS, &[]))?;
        if r.msg.info.label != console::OK {
            return Err(Error::InvalidArgument);
        }
        Ok([r.msg.words[0], r.msg.words[1], r.msg.words[2]])
    }
}

/// Start the driver and print through it from now on.
pub fn start(a: &mut Alloc) -> Result<Console, Error> {
    let module = process::module(MODULE).ok_or(Error::InvalidArgument)?;
    let image = process::map_module(a, &module)?;
    let radix = u64::from(console::CNODE_RADIX);
    let p = process::spawn(a, image, radix, PRIORITY, u64::MAX, 0)?;
    let give = |from: u64, to: u64| invoke(p.cnode, Invocation::CNodeMove, &[from, to]);
    let (first, last) = PORTS;
    let range = root_range_covering(first, last).ok_or(Error::InvalidArgument)?;
    let ports = a.slot();
    let root_ports = slot::FIRST_IO_PORTS + range as u64;
    invoke(root_ports, Invocation::IoPortsCarve, &[first.into(), last.into(), ports])?;
    give(ports, console::slot::PORTS)?;
    let irq = a.slot();
    invoke(slot::IRQ_CONTROL, Invocation::IrqControlGet, &[IRQ.into(), irq])?;
    give(irq, console::slot::IRQ_HANDLER)?;
    give(a.make(ObjectType::Notification, 0)?, console::slot::IRQ_NOTIFICATION)?;
    let endpoint = a.make(ObjectType::Endpoint, 0)?;
    let receive = u64::from(Rights::READ.bits());
    invoke(p.cnode, Invocation::CNodeCopy, &[endpoint, console::slot::ENDPOINT, receive])?;
    process::start(&p)?;
    let c = Console { endpoint, own: a.slot() };
    c.grant(slot::CNODE, c.own, INIT_BADGE)?;
    rt::console::attach(c.own);
    Ok(c)
}
