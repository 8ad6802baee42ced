//! A manifest module that does not decode is refused by the root task with a readable
//! message; no process or VM starts from it, and the kernel and the rest of the root
//! task's checks carry on (printing through the kernel's debug console, as no console
//! driver runs).

use system_tests::{boot, check, Emulator, Verdict};

#[test]
fn a_corrupt_manifest_is_refused_cleanly() {
    let out = boot("bad-manifest", Emulator::Qemu);
    check(
        &out,
        out.serial.contains("TEST FAIL manifest: the manifest does not decode"),
        "no refusal",
    );
    check(
        &out,
        out.serial.contains("TEST PASS processes_cannot_reach_each_other"),
        "init stopped early",
    );
    check(&out, !out.serial.contains("the manifest lists"), "VMs started from a bad manifest");
    check(&out, !out.serial.contains("_started"), "a process started from a bad manifest");
    check(&out, !out.serial.contains("KERNEL PANIC"), "the kernel panicked");
    check(&out, out.verdict == Verdict::Fail(Some(35)), "the run must fail cleanly");
}
