//! Starting threads and processes from the root task.

use crate::alloc::Alloc;
use protocols::bootinfo::slot;
use protocols::error::Error;
use protocols::object::{Invocation, ObjectType};
use rt::ipc::invoke;

/// Start a thread in the root task's CSpace and address space, with its own stack, on
/// the root task's CPU. `fault_ep` is a slot or `u64::MAX`. Returns the TCB's slot.
/// `entry` is the address of an `extern "C" fn(u64) -> !`.
pub fn spawn(
    a: &mut Alloc,
    entry: u64,
    arg: u64,
    priority: u64,
    fault_ep: u64,
) -> Result<u64, Error> {
    spawn_on(a, None, entry, arg, priority, fault_ep)
}

/// [`spawn`], on `cpu` where one is named (moved there before it is resumed).
pub fn spawn_on(
    a: &mut Alloc,
    cpu: Option<u64>,
    entry: u64,
    arg: u64,
    priority: u64,
    fault_ep: u64,
) -> Result<u64, Error> {
    let tcb = a.make(ObjectType::Tcb, 0)?;
    let (_, stack) = a.page()?;
    invoke(tcb, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, fault_ep])?;
    // A call-aligned stack: 16-byte aligned minus the return-address slot.
    invoke(tcb, Invocation::TcbWriteRegisters, &[entry, stack + 4096 - 8, arg])?;
    invoke(tcb, Invocation::TcbSetPriority, &[priority])?;
    if let Some(cpu) = cpu {
        invoke(tcb, Invocation::TcbSetAffinity, &[cpu])?;
    }
    invoke(tcb, Invocation::TcbResume, &[])?;
    Ok(tcb)
}
