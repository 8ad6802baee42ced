//! Deleting and revoking large structures: a 10,000-deep chain of CNodes (each holding
//! the only capability to the next) deleted from its top, and an untyped with 100,000
//! objects made from it revoked. The kernel does either in bounded steps over several
//! entries (the call is restarted transparently); both must complete, leave every slot
//! empty and the untyped whole again.

use crate::alloc::Alloc;
use protocols::bootinfo::slot;
use protocols::error::Error;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use rt::ipc::{invoke, recv, retype, send, Msg};
use rt::testing::Suite;

/// CNodes in the chain.
const DEPTH: u64 = 10_000;
/// Objects made from the revoked untyped.
const OBJECTS: u64 = 100_000;
/// Slots made at once when building the chain.
const BATCH: u64 = 128;
/// A filler's CSpace: the untyped, where the untyped goes next, the report endpoint;
/// the objects go from [`FILL_FIRST`] on.
const FILL_UNTYPED: u64 = 0;
const FILL_NEXT: u64 = 1;
const FILL_REPORT: u64 = 2;
const FILL_FIRST: u64 = 3;
/// Radix of the fillers' CSpaces.
const FILL_RADIX: u64 = 16;

fn all() -> u64 {
    u64::from(Rights::ALL.bits())
}

/// Run both checks.
pub fn run(t: &mut Suite, a: &mut Alloc) {
    t.check("deep_cnode_chain_deleted", deep_chain(a));
    t.check("wide_revoke_completes", wide_revoke(a));
}

/// The call's slot is empty.
fn empty(cnode: u64, index: u64) -> Result<(), &'static str> {
    match invoke(cnode, Invocation::CNodeDelete, &[index]) {
        Err(Error::InvalidCapability) => Ok(()),
        _ => Err("a slot survived"),
    }
}

fn deep_chain(a: &mut Alloc) -> Result<(), &'static str> {
    let ut = a.make(ObjectType::Untyped, 22).map_err(Error::name)?;
    let top = a.slot();
    let block = a.slot();
    for _ in 1..BATCH {
        a.slot();
    }
    let base = retype(ut, ObjectType::CNode, 1, top, 1).map_err(Error::name)?;
    let mut made = 1;
    while made < DEPTH {
        let n = BATCH.min(DEPTH - made);
        retype(ut, ObjectType::CNode, 1, block, n).map_err(Error::name)?;
        // Each new CNode takes the chain so far into its slot 0.
        for i in 0..n {
            let below = if i == 0 { top } else { block + i - 1 };
            invoke(block + i, Invocation::CNodeMove, &[below, 0]).map_err(Error::name)?;
        }
        let moved = invoke(slot::CNODE, Invocation::CNodeMove, &[block + n - 1, top]);
        moved.map_err(Error::name)?;
        made += n;
    }
    invoke(slot::CNODE, Invocation::CNodeDelete, &[top]).map_err(Error::name)?;
    empty(slot::CNODE, top)?;
    // Nothing derived from the untyped is left: it starts over at its base.
    invoke(slot::CNODE, Invocation::CNodeRevoke, &[ut]).map_err(Error::name)?;
    let again = retype(ut, ObjectType::CNode, 1, top, 1).map_err(Error::name)?;
    invoke(slot::CNODE, Invocation::CNodeDelete, &[top]).map_err(Error::name)?;
    (again == base).then_some(()).ok_or("the untyped did not start over")
}

/// A thread in a CSpace of its own ([`FILL_UNTYPED`] and friends): makes `count` Reply
/// objects, moves the untyped to slot `dst` of the CNode in [`FILL_NEXT`] and reports the
/// first object's address (or the error) on [`FILL_REPORT`].
extern "C" fn filler(arg: u64) -> ! {
    let (count, dst) = (arg & 0xffff_ffff, arg >> 32);
    let mut first = Ok(0);
    let mut made = 0;
    while made < count && first.is_ok() {
        let n = 256.min(count - made);
        match retype(FILL_UNTYPED, ObjectType::Reply, 0, FILL_FIRST + made, n) {
            Ok(at) if made == 0 => first = Ok(at),
            Ok(_) => {}
            Err(e) => first = Err(e),
        }
        made += n;
    }
    let moved = invoke(FILL_NEXT, Invocation::CNodeMove, &[FILL_UNTYPED, dst]);
    let report = match (first, moved) {
        (Ok(at), Ok(_)) => Msg::new(0, &[at]),
        (Err(e), _) | (_, Err(e)) => Msg::new(e as u64, &[]),
    };
    let _ = send(FILL_REPORT, &report);
    loop {
        let _ = recv(FILL_REPORT);
    }
}

/// Run [`filler`] on thread `tcb` with CSpace `cnode`, making `count` objects; the
/// address of the first.
fn fill(a: &mut Alloc, tcb: u64, cnode: u64, ep: u64, arg: u64) -> Result<u64, Error> {
    let (_, stack) = a.page()?;
    invoke(tcb, Invocation::TcbConfigure, &[cnode, slot::VSPACE, u64::MAX])?;
    invoke(tcb, Invocation::TcbWriteRegisters, &[filler as *const () as u64, stack + 4088, arg])?;
    invoke(tcb, Invocation::TcbResume, &[])?;
    let r = recv(ep)?;
    invoke(tcb, Invocation::TcbSuspend, &[])?;
    match r.msg.info.label {
        0 => Ok(r.msg.words[0]),
        e => Err(Error::from_raw(e).unwrap_or(Error::InvalidArgument)),
    }
}

fn wide_revoke(a: &mut Alloc) -> Result<(), &'static str> {
    wide_revoke_steps(a).map_err(Error::name)?
}

/// The building and the revoke: `Err` for a call that failed, `Ok(Err)` for a check.
fn wide_revoke_steps(a: &mut Alloc) -> Result<Result<(), &'static str>, Error> {
    // Reply objects are the smallest (16 bytes): 100,000 fit in 2 MiB. Retyping puts
    // them in the caller's CSpace, so two threads with CSpaces of 2^16 slots make them.
    let ut = a.make(ObjectType::Untyped, 21)?;
    let cspaces = [a.make(ObjectType::CNode, FILL_RADIX)?, a.make(ObjectType::CNode, FILL_RADIX)?];
    let ep = a.make(ObjectType::Endpoint, 0)?;
    let tcb = a.make(ObjectType::Tcb, 0)?;
    invoke(tcb, Invocation::TcbSetPriority, &[254])?;
    let back = a.slot();
    invoke(cspaces[0], Invocation::CNodeMove, &[ut, FILL_UNTYPED])?;
    invoke(cspaces[0], Invocation::CNodeCopy, &[cspaces[1], FILL_NEXT, all()])?;
    invoke(cspaces[1], Invocation::CNodeCopy, &[slot::CNODE, FILL_NEXT, all()])?;
    for c in cspaces {
        invoke(c, Invocation::CNodeCopy, &[ep, FILL_REPORT, all()])?;
    }
    let room = (1 << FILL_RADIX) - FILL_FIRST;
    let base = fill(a, tcb, cspaces[0], ep, room | (FILL_UNTYPED << 32))?;
    fill(a, tcb, cspaces[1], ep, (OBJECTS - room) | (back << 32))?;
    invoke(slot::CNODE, Invocation::CNodeRevoke, &[back])?;
    // Every object's slot is empty, and the untyped starts over at its base.
    let last = FILL_FIRST + OBJECTS - room - 1;
    let probes =
        [(cspaces[0], FILL_FIRST), (cspaces[0], (1 << FILL_RADIX) - 1), (cspaces[1], last)];
    if let Some(Err(e)) = probes.iter().map(|(c, i)| empty(*c, *i)).find(Result::is_err) {
        return Ok(Err(e));
    }
    let again = retype(back, ObjectType::Reply, 0, a.slot(), 1)?;
    Ok((again == base).then_some(()).ok_or("the untyped did not start over"))
}
