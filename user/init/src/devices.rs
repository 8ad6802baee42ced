//! Ring-3 checks of the host-device capabilities: an `IoPorts` capability reaches its
//! ports and no others, carving never widens, no root capability reaches the kernel's
//! ports, IRQ lines are issued once and never the kernel's, port-I/O instructions fault
//! in ring 3 whatever a process holds, and the console driver's output is paced by its
//! IRQ (so delivery works on this machine).

use crate::alloc::Alloc;
use crate::caps::{FAULT_LABEL, RESUME_AT};
use crate::console::Console;
use crate::process;
use protocols::bootinfo::slot;
use protocols::error::Error;
use protocols::io::{root_range_covering, KERNEL_PORTS, ROOT_PORTS};
use protocols::object::{Invocation, ObjectType};
use rt::ipc::{invoke, recv, reply_recv, Msg};
use rt::testing::{expect_eq, Suite};

/// COM1's scratch register: no device function, so reading and writing it is harmless.
const SCRATCH: u64 = 0x3ff;
/// #GP.
const GENERAL_PROTECTION: u64 = 13;

fn port_in(cap: u64, port: u64, width: u64) -> Result<u64, Error> {
    invoke(cap, Invocation::IoPortIn, &[port, width])
}

/// Run the checks; `console` is the driver if it started.
pub fn run(t: &mut Suite, a: &mut Alloc, console: Option<&Console>) -> Result<(), Error> {
    ports(t, a)?;
    irqs(t, a, console.is_some());
    port_instructions_fault(t, a)?;
    if let Some(c) = console {
        let stats = c.stats();
        if let Ok([irqs, lines, bytes]) = stats {
            rt::println!("init: console driver: {irqs} interrupts, {lines} lines, {bytes} bytes");
        }
        let got = stats.map(|[irqs, lines, _]| (irqs > 0, lines > 0));
        t.check("console_output_paced_by_irq4", expect_eq(got, Ok((true, true))));
    }
    Ok(())
}

fn ports(t: &mut Suite, a: &mut Alloc) -> Result<(), Error> {
    let range =
        root_range_covering(SCRATCH as u16, SCRATCH as u16).ok_or(Error::InvalidArgument)?;
    let scratch = a.slot();
    let root = slot::FIRST_IO_PORTS + range as u64;
    invoke(root, Invocation::IoPortsCarve, &[SCRATCH, SCRATCH, scratch])?;
    invoke(scratch, Invocation::IoPortOut, &[SCRATCH, 1, 0xa5])?;
    t.check("io_ports_reach_their_port", expect_eq(port_in(scratch, SCRATCH, 1), Ok(0xa5)));
    let outside = [
        port_in(scratch, SCRATCH - 1, 1).err(),
        port_in(scratch, SCRATCH, 2).err(),
        port_in(scratch, SCRATCH, 3).err(),
    ];
    let want = [
        Some(Error::InsufficientRights),
        Some(Error::InsufficientRights),
        Some(Error::InvalidArgument),
    ];
    t.check("io_ports_refuse_other_ports", expect_eq(outside, want));
    let wider = invoke(scratch, Invocation::IoPortsCarve, &[SCRATCH - 1, SCRATCH, a.slot()]);
    t.check(
        "io_ports_carving_never_widens",
        expect_eq(wider.err(), Some(Error::InsufficientRights)),
    );
    let mut reached = 0;
    for i in 0..ROOT_PORTS.len() as u64 {
        for (first, last) in KERNEL_PORTS {
            let (first, last) = (u64::from(first), u64::from(last));
            let cap = slot::FIRST_IO_PORTS + i;
            reached += usize::from(port_in(cap, first, 1) != Err(Error::InsufficientRights));
            let carve = invoke(cap, Invocation::IoPortsCarve, &[first, last, a.slot()]);
            reached += usize::from(carve != Err(Error::InsufficientRights));
        }
    }
    t.check("io_ports_never_reach_the_pics_or_the_pit", expect_eq(reached, 0));
    Ok(())
}

fn irqs(t: &mut Suite, a: &mut Alloc, console_runs: bool) {
    let mut get = |irq: u64| invoke(slot::IRQ_CONTROL, Invocation::IrqControlGet, &[irq, a.slot()]);
    t.check("irq_timer_line_refused", expect_eq(get(0).err(), Some(Error::NotPermitted)));
    t.check("irq_line_out_of_range", expect_eq(get(16).err(), Some(Error::InvalidArgument)));
    if console_runs {
        let issued = get(protocols::console::IRQ.into());
        t.check("irq_line_issued_once", expect_eq(issued.err(), Some(Error::InUse)));
    }
}

/// A process without a single capability runs `in` and `out`: both must fault.
fn port_instructions_fault(t: &mut Suite, a: &mut Alloc) -> Result<(), Error> {
    let fault_ep = a.make(ObjectType::Endpoint, 0)?;
    let empty = a.make(ObjectType::CNode, 2)?;
    let tcb = process::spawn_code(a, crate::port_probe::code(), empty, 254, fault_ep)?;
    let first = recv(fault_ep)?.msg;
    let second = reply_recv(fault_ep, &Msg::new(RESUME_AT, &[first.words[2] + 1]))?.msg;
    invoke(tcb, Invocation::TcbSuspend, &[])?;
    let got = [first, second].map(|m| (m.info.label, m.words[0]));
    let want = [(FAULT_LABEL, GENERAL_PROTECTION); 2];
    t.check("port_io_instructions_fault_in_ring3", expect_eq(got, want));
    Ok(())
}
