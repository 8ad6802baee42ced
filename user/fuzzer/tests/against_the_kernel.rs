//! The in-image fuzzer's syscalls, run on the host against the kernel's own syscall layer
//! (`kernel::testbed`), with the CSpace the root task builds and the partner's
//! suspend-and-resume played by the test: the kernel never panics, and the protections
//! hold, so the fuzzer always keeps its CSpace, its address space, its untyped memory
//! and the capabilities it needs to report.

use kernel::cap::Cap;
use kernel::store::{cnode_slot, tcb_slot, Store, TcbSlot};
use kernel::tcb::ThreadState;
use kernel::testbed::{slot as root, Testbed, ROOT_TCB};
use protocols::object::{Invocation, ObjectType};
use syscall_fuzzer::{slot, Generator, CNODE_RADIX, PRIORITY, UNTYPED_BITS};

const ALL: u64 = 0x1f;
/// Root slots the fixture uses.
const CNODE: u64 = 100;
const TCB: u64 = 106;

/// The fuzzer's CSpace as `init/src/fuzz.rs` builds it; returns its TCB and CNode.
fn fixture(t: &mut Testbed) -> (u64, u64) {
    let ok = |status: u64| assert_eq!(status, 0);
    ok(t.retype(ObjectType::CNode, CNODE_RADIX.into(), CNODE, 1));
    ok(t.retype(ObjectType::Untyped, UNTYPED_BITS.into(), 101, 1));
    ok(t.retype(ObjectType::Untyped, 12, 102, 1));
    ok(t.retype(ObjectType::Endpoint, 0, 103, 1));
    ok(t.retype(ObjectType::Notification, 0, 104, 1));
    ok(t.retype(ObjectType::Endpoint, 0, 105, 1));
    ok(t.retype(ObjectType::Tcb, 0, TCB, 1));
    ok(t.invoke(CNODE, Invocation::CNodeCopy, &[CNODE, slot::CNODE, ALL]));
    ok(t.invoke(CNODE, Invocation::CNodeCopy, &[root::VSPACE, slot::VSPACE, ALL]));
    for (from, to) in [
        (101, slot::UNTYPED),
        (102, slot::PARTNER_UNTYPED),
        (103, slot::ENDPOINT),
        (104, slot::NOTIFICATION),
    ] {
        ok(t.invoke(CNODE, Invocation::CNodeMove, &[from, to]));
    }
    ok(t.invoke(CNODE, Invocation::CNodeMint, &[105, slot::REPORT, 8, 0xf022]));
    ok(t.invoke(CNODE, Invocation::CNodeCopy, &[TCB, slot::SELF_TCB, ALL]));
    ok(t.invoke(TCB, Invocation::TcbConfigure, &[CNODE, root::VSPACE, u64::MAX]));
    ok(t.invoke(TCB, Invocation::TcbSetPriority, &[PRIORITY]));
    let Cap::Tcb { addr } = t.cap(TCB) else { panic!("no TCB") };
    let Cap::CNode { addr: cnode, .. } = t.cap(CNODE) else { panic!("no CNode") };
    (addr, cnode)
}

/// Make `tcb` the running thread (the root task steps aside, as it waits for the report).
fn run_as(t: &mut Testbed, tcb: u64) {
    t.k.store.sched(ROOT_TCB).state = ThreadState::Inactive;
    t.k.sched = Default::default();
    t.k.current = tcb;
    t.k.store.sched(tcb).state = ThreadState::Ready;
}

/// What the partner does when the fuzzer is blocked: suspend and resume it.
fn unblock(t: &mut Testbed, fuzzer: u64) {
    run_as(t, ROOT_TCB);
    t.invoke(TCB, Invocation::TcbSuspend, &[]);
    t.invoke(TCB, Invocation::TcbResume, &[]);
    run_as(t, fuzzer);
}

fn fuzz(seed: u64, vmx: bool) -> (u64, u64) {
    let mut t = if vmx { Testbed::with_vmx() } else { Testbed::new() };
    let (fuzzer, cnode) = fixture(&mut t);
    run_as(&mut t, fuzzer);
    let mut g = Generator::new(seed);
    let (mut served, mut unblocked) = (0, 0);
    for _ in 0..4096 {
        if t.k.current != fuzzer {
            unblock(&mut t, fuzzer);
            unblocked += 1;
        }
        let s = g.syscall();
        let c = &mut t.k.store.tcb(fuzzer).context;
        (c.rax, c.rdi, c.rsi) = (s.number, s.rdi, s.rsi);
        [c.rdx, c.r10, c.r8, c.r9] = s.words;
        (c.r12, c.r13) = (s.r12, s.r13);
        t.k.syscall(&mut t.out);
        let status = t.k.store.tcb(fuzzer).context.rax;
        g.result(&s, status);
        served += u64::from(status == 0);
        // The fuzzer can always go on and report.
        let cspace = t.k.store.slot(tcb_slot(fuzzer, TcbSlot::CSpace)).cap;
        assert!(
            matches!(cspace, Cap::CNode { addr, .. } if addr == cnode),
            "{s:x?} took the CSpace"
        );
        let vspace = t.k.store.slot(tcb_slot(fuzzer, TcbSlot::VSpace)).cap;
        assert!(matches!(vspace, Cap::VSpace { .. }), "{s:x?} took the address space");
        let own = |t: &mut Testbed, i: u64| t.k.store.slot(cnode_slot(cnode, i)).cap;
        assert!(
            matches!(own(&mut t, slot::UNTYPED), Cap::Untyped { .. }),
            "{s:x?} took the untyped"
        );
        assert!(matches!(own(&mut t, slot::REPORT), Cap::Endpoint { badge: 0xf022, .. }), "{s:x?}");
        assert!(
            matches!(own(&mut t, slot::SELF_TCB), Cap::Tcb { addr } if addr == fuzzer),
            "{s:x?}"
        );
        assert!(
            u64::from(t.k.store.sched(fuzzer).priority) == PRIORITY,
            "{s:x?} changed the fuzzer's priority"
        );
    }
    (served, unblocked)
}

#[test]
fn the_image_seed_runs_on_the_host_kernel() {
    let (served, unblocked) = fuzz(0x5eed_f022, true);
    assert!(served > 300, "only {served} of 4096 served");
    assert!(unblocked > 0, "nothing blocked: the partner is never needed?");
}

#[test]
fn other_seeds_too_with_and_without_vmx() {
    for seed in 1..4 {
        fuzz(seed, seed % 2 == 0);
    }
}
