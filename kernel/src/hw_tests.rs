//! The host-device capabilities driven as user code would drive them: I/O ports through
//! `IoPorts` (range checks, widths, carving, the kernel's own ports out of reach) and IRQ
//! lines through `IrqControl`/`IrqHandler` (issue once, bind, deliver, acknowledge,
//! revoke), with the interrupt controller and the ports played by the test platform.

use crate::cap::Cap;
use crate::state::Next;
use crate::store::Store;
use crate::testbed::{slot, PortAccess, Testbed, ROOT_TCB};
use protocols::error::Error;
use protocols::io::{PortWidth, KERNEL_PORTS, ROOT_PORTS};
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::Syscall;

const IN: Invocation = Invocation::IoPortIn;
const OUT: Invocation = Invocation::IoPortOut;
const CARVE: Invocation = Invocation::IoPortsCarve;
const GET: Invocation = Invocation::IrqControlGet;
const BIND: Invocation = Invocation::IrqHandlerSetNotification;
const ACK: Invocation = Invocation::IrqHandlerAck;

/// The root's I/O-port capability that covers COM1.
const HIGH_PORTS: u64 = slot::FIRST_IO_PORTS + 3;
const INVALID: u64 = Error::InvalidArgument as u64;
const DENIED: u64 = Error::InsufficientRights as u64;

/// A COM1 capability (0x3f8..=0x3ff) carved into slot 20.
fn com1(t: &mut Testbed) -> u64 {
    assert_eq!(t.invoke(HIGH_PORTS, CARVE, &[0x3f8, 0x3ff, 20]), 0);
    assert_eq!(t.cap(20), Cap::IoPorts { first: 0x3f8, last: 0x3ff });
    20
}

#[test]
fn port_io_inside_the_range_reaches_the_platform() {
    let mut t = Testbed::new();
    let c = com1(&mut t);
    t.out.port_values.insert(0x3fd, 0x60);
    assert_eq!(t.invoke(c, IN, &[0x3fd, 1]), 0);
    assert_eq!(t.regs(ROOT_TCB)[3], 0x60, "the value is the result word");
    assert_eq!(t.invoke(c, OUT, &[0x3f8, 1, b'A'.into()]), 0);
    assert_eq!(t.invoke(c, OUT, &[0x3fc, 4, 0xdead_beef]), 0, "the last four ports");
    assert_eq!(
        t.out.ports,
        [
            PortAccess::In(0x3fd, PortWidth::Byte),
            PortAccess::Out(0x3f8, PortWidth::Byte, 0x41),
            PortAccess::Out(0x3fc, PortWidth::Dword, 0xdead_beef),
        ]
    );
}

#[test]
fn port_io_outside_the_range_or_malformed_is_refused_and_never_happens() {
    let mut t = Testbed::new();
    let c = com1(&mut t);
    for (label, words, want) in [
        (IN, &[0x3f7, 1][..], DENIED),
        (IN, &[0x400, 1], DENIED),
        (IN, &[0x3ff, 2], DENIED), // its second byte is past the range
        (IN, &[0x3fe, 4], DENIED),
        (IN, &[0x3f8, 3], INVALID),
        (IN, &[0x3f8, 0], INVALID),
        (IN, &[0x3f8, 8], INVALID),
        (IN, &[0x1_03f8, 1], INVALID),
        (IN, &[0x3f8], INVALID),
        (OUT, &[0x3f8, 1, 0x100], INVALID),
        (OUT, &[0x3f8, 2, 0x1_0000], INVALID),
        (OUT, &[0x3f8, 1], INVALID),
        (OUT, &[0x2f8, 1, 0], DENIED),
    ] {
        assert_eq!(t.invoke(c, label, words), want, "{label:?} {words:x?}");
    }
    assert!(t.out.ports.is_empty(), "a refused access touched a port: {:?}", t.out.ports);
    assert_eq!(t.invoke(slot::CNODE, IN, &[0x3f8, 1]), Error::WrongType as u64);
    assert_eq!(t.invoke(c, Invocation::IrqHandlerAck, &[]), Error::WrongType as u64);
}

#[test]
fn carving_narrows_never_widens_and_revoking_takes_the_carved() {
    let mut t = Testbed::new();
    let c = com1(&mut t);
    assert_eq!(t.invoke(c, CARVE, &[0x3ff, 0x3ff, 21]), 0);
    assert_eq!(t.invoke(21, IN, &[0x3ff, 1]), 0);
    assert_eq!(t.invoke(21, IN, &[0x3fe, 1]), DENIED);
    assert_eq!(t.invoke(21, CARVE, &[0x3fe, 0x3ff, 22]), DENIED, "wider than its parent");
    assert_eq!(t.invoke(c, CARVE, &[0x3f8, 0x400, 22]), DENIED);
    assert_eq!(t.invoke(c, CARVE, &[0x3fa, 0x3f9, 22]), INVALID, "first after last");
    assert_eq!(t.invoke(c, CARVE, &[0x3f8, 0x1_0000, 22]), INVALID);
    assert_eq!(t.invoke(c, CARVE, &[0x3f8, 0x3f8, slot::TCB]), INVALID, "occupied");
    assert_eq!(t.invoke(c, CARVE, &[0x3f8, 0x3f8, 1 << 20]), INVALID, "past the CNode");
    assert_eq!(t.cap(22), Cap::Null);
    // A plain copy is allowed; revoking the root range takes every range carved below it.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeCopy, &[21, 23, Testbed::all()]), 0);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[HIGH_PORTS]), 0);
    for dead in [20, 21, 23] {
        assert_eq!(t.cap(dead), Cap::Null, "slot {dead}");
    }
    assert_eq!(t.invoke(HIGH_PORTS, IN, &[0x3f8, 1]), 0, "the root range itself stays");
}

#[test]
fn no_root_capability_reaches_the_kernels_ports() {
    let mut t = Testbed::new();
    for (i, (first, last)) in ROOT_PORTS.into_iter().enumerate() {
        assert_eq!(t.cap(slot::FIRST_IO_PORTS + i as u64), Cap::IoPorts { first, last });
    }
    for (first, last) in KERNEL_PORTS {
        for port in first..=last {
            for i in 0..ROOT_PORTS.len() as u64 {
                let cap = slot::FIRST_IO_PORTS + i;
                assert_eq!(t.invoke(cap, IN, &[port.into(), 1]), DENIED, "{port:#x}");
                assert_eq!(t.invoke(cap, OUT, &[port.into(), 1, 0xff]), DENIED, "{port:#x}");
                let carve = [port.into(), port.into(), 30];
                assert_eq!(t.invoke(cap, CARVE, &carve), DENIED, "{port:#x}");
            }
        }
    }
    // A word access that starts just below a kernel range would cover it too.
    assert_eq!(t.invoke(slot::FIRST_IO_PORTS, IN, &[0x1f, 2]), DENIED);
    assert!(t.out.ports.is_empty());
}

/// A notification in slot 40 (minted with `badge` into 41 unless 0) and the handler of
/// line 4 in slot 30, bound to it.
fn bound_line(t: &mut Testbed, badge: u64) -> u64 {
    assert_eq!(t.retype(ObjectType::Notification, 0, 40, 1), 0);
    let mut n = 40;
    if badge != 0 {
        let mint = [40, 41, Testbed::all(), badge];
        assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeMint, &mint), 0);
        n = 41;
    }
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[4, 30]), 0);
    assert_eq!(t.cap(30), Cap::IrqHandler { irq: 4 });
    assert_eq!(t.invoke(30, BIND, &[n]), 0);
    30
}

fn ntfn_addr(t: &mut Testbed, at: u64) -> u64 {
    match t.cap(at) {
        Cap::Notification { addr, .. } => addr,
        other => panic!("not a notification: {other:?}"),
    }
}

#[test]
fn each_line_is_issued_once_and_the_kernels_lines_never() {
    let mut t = Testbed::new();
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[4, 30]), 0);
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[4, 31]), Error::InUse as u64);
    // A copy of the handler is the same handler, not a second one.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeCopy, &[30, 31, Testbed::all()]), 0);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[30]), 0);
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[4, 30]), Error::InUse as u64);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[31]), 0);
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[4, 30]), 0, "free again");
    for (irq, want) in [
        (0, Error::NotPermitted),
        (2, Error::NotPermitted),
        (16, Error::InvalidArgument),
        (u64::MAX, Error::InvalidArgument),
    ] {
        assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[irq, 32]), want as u64, "irq {irq}");
    }
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[5, slot::TCB]), INVALID, "occupied");
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[5]), INVALID, "no destination");
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[5, 32]), 0, "the occupied try issued nothing");
    assert_eq!(t.invoke(slot::CNODE, GET, &[6, 33]), Error::WrongType as u64);
    assert_eq!(t.invoke(30, GET, &[6, 33]), Error::WrongType as u64);
}

#[test]
fn binding_needs_a_notification_with_the_write_right() {
    let mut t = Testbed::new();
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[4, 30]), 0);
    assert_eq!(t.retype(ObjectType::Endpoint, 0, 40, 1), 0);
    assert_eq!(t.retype(ObjectType::Notification, 0, 41, 1), 0);
    let read = u64::from(Rights::READ.bits());
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeCopy, &[41, 42, read]), 0);
    assert_eq!(t.invoke(30, BIND, &[40]), Error::WrongType as u64);
    assert_eq!(t.invoke(30, BIND, &[42]), DENIED);
    assert_eq!(t.invoke(30, BIND, &[99]), Error::InvalidCapability as u64);
    assert_eq!(t.invoke(30, BIND, &[]), INVALID);
    assert_eq!(t.invoke(30, BIND, &[41]), 0);
}

#[test]
fn an_interrupt_masks_its_line_and_wakes_the_waiter_until_acknowledged() {
    let mut t = Testbed::new();
    let h = bound_line(&mut t, 0);
    assert_eq!(t.invoke(h, ACK, &[]), 0);
    assert_eq!(t.out.unmasked, 1 << 4, "acknowledging unmasks the line");
    assert!(t.k.irqs.armed());
    // The root waits; nothing else can run.
    t.sys(Syscall::Recv as u64, [40, 0, 0, 0, 0, 0]);
    assert_eq!(t.k.current, 0);
    assert_eq!(t.k.interrupts(&mut t.out, 1 << 4), Next::Run);
    assert_eq!((t.k.current, t.regs(ROOT_TCB)[..2].to_vec()), (ROOT_TCB, vec![0, 1 << 4]));
    assert_eq!(t.out.unmasked, 0, "masked until the driver acknowledges");
    assert!(!t.k.irqs.armed());
    // Without a waiter the bit waits in the notification.
    t.k.interrupt(&mut t.out, 4);
    t.sys(Syscall::NbRecv as u64, [40, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[..2], [0, 1 << 4]);
}

#[test]
fn a_badged_notification_gets_its_badge_and_an_unbound_line_stays_masked() {
    let mut t = Testbed::new();
    let h = bound_line(&mut t, 0x80);
    assert_eq!(t.invoke(h, ACK, &[]), 0);
    t.k.interrupt(&mut t.out, 4);
    t.sys(Syscall::NbRecv as u64, [40, 0, 0, 0, 0, 0]);
    assert_eq!(t.regs(ROOT_TCB)[..2], [0, 0x80]);
    // Line 5 has a handler but no notification; line 9 has nothing; the timer line is
    // the scheduler's. None of them signals anything.
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[5, 31]), 0);
    assert_eq!(t.invoke(31, ACK, &[]), 0);
    let n = ntfn_addr(&mut t, 40);
    for irq in [5, 9, 0, 16, 200] {
        t.k.interrupt(&mut t.out, irq);
    }
    assert_eq!(t.k.store.notification(n).word, 0);
    assert_eq!(t.out.unmasked, 0);
}

#[test]
fn revoking_the_handler_masks_and_unbinds_the_line() {
    let mut t = Testbed::new();
    let h = bound_line(&mut t, 0);
    assert_eq!(t.invoke(h, ACK, &[]), 0);
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[slot::IRQ_CONTROL]), 0);
    assert_eq!(t.cap(h), Cap::Null);
    assert_eq!(t.out.unmasked, 0, "the line is masked as the handler goes");
    assert!(!t.k.irqs.armed());
    let n = ntfn_addr(&mut t, 40);
    t.k.interrupt(&mut t.out, 4);
    assert_eq!(t.k.store.notification(n).word, 0, "no longer bound");
    assert_eq!(t.invoke(slot::IRQ_CONTROL, GET, &[4, 30]), 0, "and free to issue again");
}

#[test]
fn revoking_the_notification_unbinds_the_line_and_rebinding_replaces() {
    let mut t = Testbed::new();
    let h = bound_line(&mut t, 0x2);
    // The binding is derived from the minted copy in 41: revoking its parent removes it.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[40]), 0);
    let n = ntfn_addr(&mut t, 40);
    t.k.interrupt(&mut t.out, 4);
    assert_eq!(t.k.store.notification(n).word, 0);
    // Binding twice replaces the first binding; the handler keeps working.
    assert_eq!(t.invoke(h, BIND, &[40]), 0);
    assert_eq!(t.invoke(h, BIND, &[40]), 0);
    t.k.interrupt(&mut t.out, 4);
    assert_eq!(t.k.store.notification(n).word, 1 << 4);
    // Deleting the handler's last capability drops the kernel's copy of the notification
    // capability, and the root's own one is what is left.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[h]), 0);
    assert!(crate::cnode::is_final(
        &mut t.k.store,
        crate::store::cnode_slot(crate::testbed::ROOT_CNODE, 40)
    ));
}
