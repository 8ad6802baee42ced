//! The in-image syscall fuzzer (boot module `fuzzer`, `user/fuzzer`): started with a
//! CSpace of its own and a fixed seed, it issues seeded random syscalls and IPC for a
//! fixed number of iterations and reports how many the kernel served and rejected. The
//! checks: every iteration is accounted for, and the kernel still works afterwards.

use crate::alloc::Alloc;
use crate::process;
use protocols::bootinfo;
use protocols::error::Error;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use rt::ipc::{invoke, nb_recv, recv, reply, send, Msg};
use rt::testing::{expect_eq, Suite};
use syscall_fuzzer::{slot, start_arg, CNODE_RADIX, PRIORITY, REPORT_LABEL, UNTYPED_BITS};

/// The boot module.
const MODULE: &str = "fuzzer";
/// The seed: fixed, so every run makes the same syscalls (change it to explore).
const SEED: u32 = 0x5eed_f022;
/// Syscalls per run: a few seconds under Bochs.
const ITERATIONS: u32 = 4096;
/// The report's badge.
const BADGE: u64 = 0xf022;

/// Start the fuzzer, wait for its report, and check it.
pub fn run(t: &mut Suite, a: &mut Alloc) -> Result<(), Error> {
    let Some(module) = process::module(MODULE) else {
        t.check("in_image_fuzzer_module", Err("no `fuzzer` boot module"));
        return Ok(());
    };
    let image = process::map_module(a, &module)?;
    let report = a.make(ObjectType::Endpoint, 0)?;
    let arg = start_arg(SEED, ITERATIONS);
    // Its faults come to the report endpoint too, so a crash is reported, never awaited.
    let p = process::spawn(a, image, CNODE_RADIX.into(), PRIORITY, report, arg)?;
    let give = |from: u64, to: u64| invoke(p.cnode, Invocation::CNodeMove, &[from, to]);
    give(a.make(ObjectType::Untyped, UNTYPED_BITS.into())?, slot::UNTYPED)?;
    give(a.make(ObjectType::Untyped, 12)?, slot::PARTNER_UNTYPED)?;
    give(a.make(ObjectType::Endpoint, 0)?, slot::ENDPOINT)?;
    give(a.make(ObjectType::Notification, 0)?, slot::NOTIFICATION)?;
    let call_only = u64::from(Rights::CALL.bits());
    invoke(p.cnode, Invocation::CNodeMint, &[report, slot::REPORT, call_only, BADGE])?;
    let all = u64::from(Rights::ALL.bits());
    invoke(p.cnode, Invocation::CNodeCopy, &[p.tcb, slot::SELF_TCB, all])?;
    process::start(&p)?;
    let r = recv(report)?;
    let words = r.msg.words;
    if r.msg.info.label != REPORT_LABEL {
        reply(&Msg::default())?;
        let why = "the fuzzer faulted or sent something else than its report";
        rt::println!("fuzz: label {:#x}, words {words:#x?}", r.msg.info.label);
        t.check("in_image_fuzzer_reported", Err(why));
        return Ok(());
    }
    reply(&Msg::default())?;
    let [served, rejected, iterations, unblocked] = words;
    rt::println!("fuzz: {served} operations served, {rejected} rejected");
    rt::println!("fuzz: seed {SEED:#x}, {iterations} iterations, unblocked {unblocked} times");
    t.check(
        "in_image_fuzzer_accounts_for_every_operation",
        expect_eq((served + rejected, iterations), (u64::from(ITERATIONS), u64::from(ITERATIONS))),
    );
    t.check("kernel_alive_after_fuzzing", expect_eq(still_alive(a), Ok(0b101)));
    Ok(())
}

/// A capability round trip after the fuzzing: a fresh notification, two badged copies,
/// two signals and a poll that sees both.
fn still_alive(a: &mut Alloc) -> Result<u64, Error> {
    let n = a.make(ObjectType::Notification, 0)?;
    let all = u64::from(Rights::ALL.bits());
    let (one, four) = (a.slot(), a.slot());
    invoke(bootinfo::slot::CNODE, Invocation::CNodeMint, &[n, one, all, 0b001])?;
    invoke(bootinfo::slot::CNODE, Invocation::CNodeMint, &[n, four, all, 0b100])?;
    send(one, &Msg::default())?;
    send(four, &Msg::default())?;
    nb_recv(n).map(|r| r.badge)
}
