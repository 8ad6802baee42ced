//! The root task as a client of the console driver (`drivers/console`), which the
//! manifest starts like any other process: once the driver serves the named endpoint
//! `manifest::CONSOLE_ENDPOINT`, the root task prints through a badged copy of it and
//! gives each VMM one with a badge of its own.

use crate::alloc::Alloc;
use protocols::bootinfo::slot;
use protocols::console;
use protocols::error::Error;
use protocols::object::Invocation;
use protocols::rights::Rights;
use rt::ipc::{call, invoke, Msg};

/// The root task's badge as a console client.
const INIT_BADGE: u64 = 1;
/// VMM `i`'s badge is this plus `i`.
pub const FIRST_VMM_BADGE: u64 = 0x100;

/// The running driver.
#[derive(Clone, Copy)]
pub struct Console {
    /// The endpoint it serves (the root task's unbadged original).
    endpoint: u64,
    /// The root task's own badged copy.
    own: u64,
}

impl Console {
    /// Print through the driver serving `endpoint` (the root task's original) from now on.
    pub fn attach(a: &mut Alloc, endpoint: u64) -> Result<Self, Error> {
        let c = Self { endpoint, own: a.slot() };
        c.grant(slot::CNODE, c.own, INIT_BADGE)?;
        rt::console::attach(c.own);
        Ok(c)
    }

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
