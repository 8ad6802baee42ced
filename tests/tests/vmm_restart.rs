//! A VMM that crashes and comes back without its guest noticing: the `vmm-restart` image.
//! guest_restart's VMM panics at the guest's CRASH_VMM hypercall, halfway through line
//! 12 of its 24; the root task reports the crash and starts a fresh VMM on the same VM,
//! which takes up the state the crashed one committed. The guest's output must be every
//! line exactly once, in order, and guest64 must run in the VM beside it before the crash
//! and after the restart. A third VM's VMM corrupts its saved state before it crashes:
//! its restart must refuse the state, name the check, and stop the VM.

use system_tests::{assert_suite_passed, boot, check, Emulator};

#[test]
fn a_crashed_vmm_is_restarted_and_the_guest_loses_and_doubles_no_byte() {
    let out = boot("vmm-restart", Emulator::Bochs);
    assert_suite_passed(&out, 50);
    for vm in ["vm_restarted", "vm_beside", "vm_corrupted"] {
        check(&out, out.serial.contains(&format!("TEST PASS {vm}")), &format!("{vm} failed"));
    }
    let lines: Vec<&str> = out.serial.lines().map(str::trim_end).collect();
    let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
    let (Some(crashed), Some(restarted)) = (
        at("init: vm vm_restarted: vmm crashed: panicked"),
        at("init: vm vm_restarted: vmm restarted"),
    ) else {
        panic!("no crash and restart of vm_restarted in the log:\n{}", out.serial);
    };
    check(&out, crashed < restarted, "the restart follows the crash");
    check(
        &out,
        at("vmm vm_restarted: vmm restarted: took up the state").is_some_and(|t| t > restarted),
        "the new VMM took up the saved state",
    );

    let guest: Vec<&str> =
        lines.iter().filter(|l| l.starts_with("guest_restart:")).copied().collect();
    let want: Vec<String> = (1..=24)
        .map(|i| format!("guest_restart: line {i:02} of 24: every byte once, in order"))
        .chain(["guest_restart: done".to_string()])
        .collect();
    check(&out, guest == want, &format!("the guest's output lost or doubled bytes: {guest:#?}"));
    // The crash came in the middle of the output: line 12 was begun before it and ended
    // after the restart (its first half waited in the committed UART state).
    check(&out, at("guest_restart: line 11 ").is_some_and(|l| l < crashed), "line 11 before");
    check(&out, at("guest_restart: line 12 ").is_some_and(|l| l > restarted), "line 12 after");

    // The VM beside it ran throughout.
    let beside = |range: &[&str]| range.iter().any(|l| l.starts_with("guest64:"));
    check(&out, beside(&lines[..crashed]), "guest64 ran before the crash");
    check(&out, beside(&lines[restarted..]), "guest64 ran after the restart");
    check(&out, at("guest64: done").is_some(), "guest64 ran to its end");

    // A corrupt saved state is refused, naming the check, and the VM stops.
    check(
        &out,
        out.serial.contains("init: vm vm_corrupted: vmm crashed: panicked")
            && out
                .serial
                .contains("vmm vm_corrupted: the saved state is refused (corrupt: checksum"),
        "the corrupted state was refused",
    );
}
