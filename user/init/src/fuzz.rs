//! The in-image syscall fuzzer (boot module `fuzzer`, `user/fuzzer`), which the manifest
//! starts after the VMs with a CSpace of its own and `rdi = seed | iterations << 32`: it
//! issues seeded random syscalls and IPC and reports how many the kernel served and
//! rejected on the named endpoint in its report slot. The checks: every iteration is
//! accounted for, and the kernel still works afterwards.

use crate::alloc::Alloc;
use crate::system::System;
use protocols::bootinfo;
use protocols::error::Error;
use protocols::manifest::Cap;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use rt::ipc::{invoke, nb_recv, recv, reply, send, Msg};
use rt::testing::{expect_eq, Suite};
use syscall_fuzzer::{slot, split_arg, REPORT_LABEL};

/// The fuzzer's boot module.
const MODULE: &str = "fuzzer";

/// Wait for the report of the running fuzzer, if the manifest started one, and check it.
pub fn run(t: &mut Suite, a: &mut Alloc, system: &System<'_>) -> Result<(), Error> {
    // Not listed, or not started (its own line says why): nothing to wait for.
    let Some(entry) = system.running(MODULE) else { return Ok(()) };
    let Some(Cap::Named { name, .. }) = entry.cap(slot::REPORT) else {
        t.check("in_image_fuzzer_reported", Err("no named endpoint in its report slot"));
        return Ok(());
    };
    let report = system.named(name)?;
    let (seed, want) = split_arg(entry.arg);
    let r = recv(report)?;
    let words = r.msg.words;
    // Its faults come here too (when its fault handler is this endpoint): answered either
    // way, so a crash is reported, never awaited.
    reply(&Msg::default())?;
    if r.msg.info.label != REPORT_LABEL {
        let why = "the fuzzer faulted or sent something else than its report";
        rt::println!("fuzz: label {:#x}, words {words:#x?}", r.msg.info.label);
        t.check("in_image_fuzzer_reported", Err(why));
        return Ok(());
    }
    let [served, rejected, iterations, unblocked] = words;
    rt::println!("fuzz: {served} operations served, {rejected} rejected");
    rt::println!("fuzz: seed {seed:#x}, {iterations} iterations, unblocked {unblocked} times");
    t.check(
        "in_image_fuzzer_accounts_for_every_operation",
        expect_eq((served + rejected, iterations), (u64::from(want), u64::from(want))),
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
