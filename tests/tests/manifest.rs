//! A manifest module that does not decode is refused by the root task with a readable
//! message; no process or VM starts from it, and the kernel and the rest of the root
//! task's checks carry on (printing through the kernel's debug console, as no console
//! driver runs). A process the machine cannot make is reported naming it and the cap, and
//! the rest of the system starts and runs.

use system_tests::{boot, boot_with, check, Emulator, RunOptions, Verdict};

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

#[test]
fn a_process_the_machine_cannot_make_is_reported_and_the_rest_runs() {
    // 2^28 bytes of untyped memory do not fit in any free region of 256 MiB.
    let opts = RunOptions { memory_mib: 256, ..RunOptions::default() };
    let out = boot_with("process-refused", Emulator::Qemu, &opts);
    let refusal = "TEST FAIL hog_started: process \"hog\", slot 4 (untyped 2^28): out of memory";
    check(&out, out.serial.contains(refusal), "no refusal naming the process and the cap");
    let failed: Vec<_> = out.serial.lines().filter(|l| l.starts_with("TEST FAIL")).collect();
    check(&out, failed == [refusal], &format!("other checks failed: {failed:?}"));
    for line in [
        "TEST PASS console_driver_started",
        "console: COM1 driver ready, transmitting on IRQ 4",
        "TEST PASS console_output_paced_by_irq4",
        "TEST PASS processes_cannot_reach_each_other",
    ] {
        check(&out, out.serial.contains(line), &format!("the run did not go on: no {line:?}"));
    }
    check(&out, !out.serial.contains("KERNEL PANIC"), "the kernel panicked");
    check(&out, out.verdict == Verdict::Fail(Some(35)), "the run must fail cleanly");
}
