//! A corrupted init module is refused with a readable message, and the kernel stops
//! cleanly with a failing verdict: no panic, no triple fault, no hang.

use system_tests::{boot, check, Emulator, Outcome, Verdict};

fn assert_refused(out: &Outcome, message: &str) {
    check(out, out.serial.contains(message), &format!("missing refusal message {message:?}"));
    check(out, out.serial.contains("kernel: no runnable thread left; halting"), "no clean halt");
    check(out, !out.serial.contains("KERNEL PANIC"), "the kernel panicked");
    check(out, !out.serial.contains("init: hello"), "a refused init ran");
    check(out, matches!(out.verdict, Verdict::Fail(Some(_))), "expected a clean failing exit");
}

#[test]
fn truncated_init_is_refused_under_qemu() {
    let out = boot("bad-init-truncated", Emulator::Qemu);
    assert_refused(&out, "kernel: init refused: truncated ELF");
    check(&out, out.verdict == Verdict::Fail(Some(35)), "QEMU must exit with the fail code");
}

#[test]
fn wrong_machine_init_is_refused_under_qemu() {
    let out = boot("bad-init-machine", Emulator::Qemu);
    assert_refused(&out, "kernel: init refused: wrong machine 0x28 (expected x86-64, 0x3e)");
}

#[test]
fn kernel_overlapping_init_is_refused_under_qemu() {
    let out = boot("bad-init-kernel-overlap", Emulator::Qemu);
    assert_refused(&out, "overlaps kernel space");
}

#[test]
fn truncated_init_is_refused_under_bochs_without_triple_fault() {
    let out = boot("bad-init-truncated", Emulator::Bochs);
    assert_refused(&out, "kernel: init refused: truncated ELF");
    check(&out, out.verdict == Verdict::Fail(Some(1)), "Bochs must exit through the shutdown port");
    check(&out, !out.emulator_log.contains("triple fault"), "Bochs saw a triple fault");
}
