//! Deletion and revocation of large structures: constant stack use, preemption points,
//! and what other calls see of a deletion that stopped at one.

use crate::cap::Cap;
use crate::cnode;
use crate::finalise::WORK_PER_ENTRY;
use crate::store::{cnode_slot, Store};
use crate::testbed::{slot, Testbed, ROOT_CNODE, UNTYPED_BASE};
use protocols::error::Error;
use protocols::ipc::MsgInfo;
use protocols::object::{Invocation, ObjectType};
use protocols::syscall::Syscall;

/// Where the chain's top CNode is kept, and where the next one is made.
const TOP: u64 = slot::FREE;
const NEW: u64 = slot::FREE + 1;

/// A testbed whose root untyped covers 2^`bits` bytes.
fn testbed(bits: u8) -> Testbed {
    let mut t = Testbed::new();
    let at = cnode_slot(ROOT_CNODE, slot::UNTYPED);
    t.k.store.slot(at).cap = Cap::Untyped { base: UNTYPED_BASE, size_bits: bits, free: 0 };
    t
}

/// The smallest CNodes (two slots), each holding the only capability to the next;
/// the first's capability is in root slot [`TOP`].
fn chain(t: &mut Testbed, depth: usize) {
    assert_eq!(t.retype(ObjectType::CNode, 1, TOP, 1), 0);
    for _ in 1..depth {
        assert_eq!(t.retype(ObjectType::CNode, 1, NEW, 1), 0);
        assert_eq!(t.invoke(NEW, Invocation::CNodeMove, &[TOP, 0]), 0);
        assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeMove, &[NEW, TOP]), 0);
    }
}

/// Every slot in `[from, to)` is empty and unlinked.
fn all_empty(t: &Testbed, from: u64, to: u64) {
    for (at, s) in &t.k.store.slots {
        if (from..to).contains(at) {
            assert_eq!(*s, Default::default(), "slot {at:#x} survived");
        }
    }
}

/// One kernel entry of `Call` on `cptr`, without the restarts `Testbed::sys` makes:
/// whether the kernel asked for the call to be made again.
fn one_entry(t: &mut Testbed, cptr: u64, label: Invocation, w0: u64) -> bool {
    let cur = t.k.current;
    let c = &mut t.k.store.tcb(cur).context;
    let rip = c.rip;
    (c.rax, c.rdi, c.rsi, c.rdx) =
        (Syscall::Call as u64, cptr, MsgInfo::new(label as u64, 1).to_raw(), w0);
    t.k.syscall(&mut t.out);
    let c = &mut t.k.store.tcb(cur).context;
    let restarted = c.rip == rip.wrapping_sub(2);
    assert!(!restarted || c.rax == Syscall::Call as u64, "a restart keeps the registers");
    c.rip = rip;
    restarted
}

/// The untyped is whole again: nothing derived from it, and the next object goes to
/// its start.
fn reusable(t: &mut Testbed, untyped: u64, base: u64) {
    let at = cnode_slot(ROOT_CNODE, untyped);
    assert_eq!(cnode::first_descendant(&mut t.k.store, at), None);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[untyped]), 0);
    let dst = 200;
    let made = t.invoke(untyped, Invocation::UntypedRetype, &[ObjectType::Reply as u64, 0, dst, 1]);
    assert_eq!((made, t.regs(t.k.current)[3]), (0, base), "the region starts over");
}

#[test]
fn deep_cnode_chain_deleted() {
    // A small stack (the kernel state's run queues take a few hundred KiB of it in an
    // unoptimised build): deletion that recursed once per CNode would need megabytes.
    let run = std::thread::Builder::new().stack_size(1 << 20).spawn(|| {
        const DEPTH: usize = 20_000;
        let mut t = testbed(24);
        chain(&mut t, DEPTH);
        let before = t.entries;
        assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[TOP]), 0);
        let entries = t.entries - before;
        // Two slots and the zombie itself per CNode.
        let steps = 3 * DEPTH as u64;
        assert!(entries >= steps / u64::from(WORK_PER_ENTRY), "{entries} entries");
        assert!(entries <= steps / u64::from(WORK_PER_ENTRY) + 2, "{entries} entries");
        assert_eq!(t.cap(TOP), Cap::Null);
        assert_eq!(t.k.dying, 0);
        all_empty(&t, UNTYPED_BASE, UNTYPED_BASE + (1 << 24));
        reusable(&mut t, slot::UNTYPED, UNTYPED_BASE);
        entries
    });
    let entries = run.expect("thread").join().expect("deleted within a 256 KiB stack");
    println!("a {}-deep chain took {entries} kernel entries", 10_000);
}

#[test]
fn wide_revoke_completes() {
    const OBJECTS: u64 = 100_000;
    const BATCH: u64 = 200;
    let mut t = testbed(26);
    // Two CNodes of 2^16 slots hold the capabilities; the objects come from an untyped
    // of their own.
    let (big, ut) = (20, 22);
    assert_eq!(t.retype(ObjectType::CNode, 16, big, 2), 0);
    assert_eq!(t.retype(ObjectType::Untyped, 21, ut, 1), 0);
    let Cap::Untyped { base, .. } = t.cap(ut) else { panic!("no untyped") };
    let first = 32;
    let mut made = 0;
    while made < OBJECTS {
        let n = BATCH.min(OBJECTS - made);
        let words = [ObjectType::Reply as u64, 0, first, n];
        assert_eq!(t.invoke(ut, Invocation::UntypedRetype, &words), 0);
        for i in 0..n {
            let (cnode, index) = (big + (made + i) / (1 << 16), (made + i) % (1 << 16));
            assert_eq!(t.invoke(cnode, Invocation::CNodeMove, &[first + i, index]), 0);
        }
        made += n;
    }
    let before = t.entries;
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[ut]), 0);
    let entries = t.entries - before;
    assert!(entries >= OBJECTS / u64::from(WORK_PER_ENTRY), "{entries} entries");
    let Cap::CNode { addr, .. } = t.cap(big) else { panic!("no cnode") };
    all_empty(&t, addr, addr + (2 << 23));
    reusable(&mut t, ut, base);
    println!("revoking {OBJECTS} objects took {entries} kernel entries");
}

#[test]
fn a_stopped_delete_is_safe_to_meet_and_finish() {
    let mut t = testbed(24);
    chain(&mut t, 1000);
    assert!(one_entry(&mut t, slot::CNODE, Invocation::CNodeDelete, TOP), "stops early");
    assert!(matches!(t.cap(TOP), Cap::Zombie { .. }));
    // The slot holds nothing anyone can use, and nothing can go into it.
    let lookup =
        |t: &mut Testbed, label: Invocation, words: &[u64]| t.invoke(slot::CNODE, label, words);
    let invalid = Error::InvalidCapability as u64;
    assert_eq!(lookup(&mut t, Invocation::CNodeCopy, &[TOP, NEW, Testbed::all()]), invalid);
    assert_eq!(lookup(&mut t, Invocation::CNodeMove, &[TOP, NEW]), invalid);
    assert_eq!(t.invoke(TOP, Invocation::CNodeDelete, &[0]), invalid);
    assert_eq!(t.retype(ObjectType::Reply, 0, TOP, 1), Error::InvalidArgument as u64);
    // Revoking the untyped finishes the deletion (a zombie is a descendant) before the
    // region starts over.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[slot::UNTYPED]), 0);
    assert_eq!(t.cap(TOP), Cap::Null);
    assert_eq!(t.k.dying, 0);
    // The stopped call, made again, finds its slot empty.
    let again = t.invoke(slot::CNODE, Invocation::CNodeDelete, &[TOP]);
    assert_eq!(again, Error::InvalidCapability as u64);
    all_empty(&t, UNTYPED_BASE, UNTYPED_BASE + (1 << 24));
    reusable(&mut t, slot::UNTYPED, UNTYPED_BASE);
}

#[test]
fn cycles_through_tcbs_and_self_holding_cnodes_end() {
    let mut t = testbed(24);
    // A CNode that holds the only capability to itself, reached only through its
    // untyped.
    assert_eq!(t.retype(ObjectType::CNode, 1, NEW, 1), 0);
    assert_eq!(t.invoke(NEW, Invocation::CNodeMove, &[NEW, 0]), 0);
    // A thread whose CSpace is a chain whose bottom holds the thread's only capability.
    chain(&mut t, 50);
    let tcb = 40;
    assert_eq!(t.retype(ObjectType::Tcb, 0, tcb, 1), 0);
    assert_eq!(t.invoke(tcb, Invocation::TcbConfigure, &[TOP, slot::VSPACE, u64::MAX]), 0);
    assert_eq!(t.invoke(TOP, Invocation::CNodeMove, &[tcb, 1]), 0);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[TOP]), 0);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[slot::UNTYPED]), 0);
    assert_eq!(t.k.dying, 0);
    all_empty(&t, UNTYPED_BASE, UNTYPED_BASE + (1 << 24));
    reusable(&mut t, slot::UNTYPED, UNTYPED_BASE);
}
