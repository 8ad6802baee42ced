//! The root task as a client of the console driver (`drivers/console`), which the
//! manifest starts like any other process: once the driver serves the named endpoint
//! `manifest::CONSOLE_ENDPOINT`, the root task prints through a badged copy of it and
//! gives each VMM one with a badge of its own. The VMM of the VM that owns the console
//! input also gets the input badge bit and a copy of the notification the driver signals.

use crate::alloc::Alloc;
use protocols::bootinfo::slot;
use protocols::console;
use protocols::error::Error;
use protocols::object::Invocation;
use protocols::rights::Rights;
use protocols::vmm;
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
    /// The notification the driver signals when input arrives (the root task's
    /// original), if the manifest declares one.
    input: Option<u64>,
}

impl Console {
    /// Print through the driver serving `endpoint` (the root task's original) from now on.
    pub fn attach(a: &mut Alloc, endpoint: u64) -> Result<Self, Error> {
        let c = Self { endpoint, own: a.slot(), input: None };
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

    /// The driver signals the notification in the root task's slot `input` when input
    /// arrives.
    pub fn with_input(self, input: Option<u64>) -> Self {
        Self { input, ..self }
    }

    /// Give the VMM whose CNode is in slot `cnode` its console endpoint with `badge`, and
    /// if it owns the console input, the input badge bit and the input notification
    /// (read right only: it waits, the driver signals).
    pub fn grant_vmm(&self, cnode: u64, badge: u64, owns_input: bool) -> Result<(), Error> {
        let Some(input) = self.input.filter(|_| owns_input) else {
            return self.grant(cnode, vmm::slot::CONSOLE, badge);
        };
        self.grant(cnode, vmm::slot::CONSOLE, badge | console::INPUT_BADGE)?;
        let read = u64::from(Rights::READ.bits());
        invoke(cnode, Invocation::CNodeCopy, &[input, vmm::slot::CONSOLE_INPUT, read]).map(|_| ())
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
