//! Helpers for the integration tests: build an image once per test binary, boot it, and
//! check the serial log in the test-line format of `protocols::testlog`.

use protocols::testlog::{parse_line, parse_summary, Outcome as Line};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
pub use xtask::emulator::{Emulator, Firmware, Outcome, RunOptions, Verdict};

static BUILT: Mutex<Option<HashMap<&'static str, PathBuf>>> = Mutex::new(None);

/// The ISO of image `name`, built on first use.
pub fn iso(name: &'static str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(name) {
        return p.clone();
    }
    let image = xtask::image::find(name).unwrap_or_else(|e| panic!("{e}"));
    let path = xtask::image::build(image).unwrap_or_else(|e| panic!("building {name}: {e}"));
    map.insert(name, path.clone());
    path
}

/// Boot image `name` under `emulator` with `opts`.
pub fn boot_with(name: &'static str, emulator: Emulator, opts: &RunOptions) -> Outcome {
    let iso = iso(name);
    xtask::emulator::run(emulator, &iso, opts).unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Boot image `name` under `emulator` with default options.
pub fn boot(name: &'static str, emulator: Emulator) -> Outcome {
    boot_with(name, emulator, &RunOptions::default())
}

/// Panic with the full report unless `cond`.
#[track_caller]
pub fn check(outcome: &Outcome, cond: bool, what: &str) {
    assert!(cond, "{what}\n{}", outcome.report());
}

/// Assert the run passed, printed at least `min_checks` test lines that passed or were
/// skipped, none failed, and the summary line agrees with the lines; returns how many
/// were skipped (a caller that expects every check to run asserts it is 0).
#[track_caller]
pub fn assert_suite_passed(outcome: &Outcome, min_checks: u32) -> u32 {
    check(outcome, outcome.verdict == Verdict::Pass, "the emulator did not report a pass");
    let (mut passed, mut skipped) = (0, 0);
    let mut failed = Vec::new();
    let mut summary = None;
    for line in outcome.serial.lines() {
        match parse_line(line) {
            Some(Line::Pass(_)) => passed += 1,
            Some(Line::Skip(_, _)) => skipped += 1,
            Some(Line::Fail(name, why)) => failed.push(format!("{name}: {why}")),
            None => {}
        }
        if let Some(s) = parse_summary(line) {
            summary = Some(s);
        }
    }
    check(outcome, failed.is_empty(), &format!("failing checks: {failed:?}"));
    let ran = passed + skipped;
    check(
        outcome,
        ran >= min_checks,
        &format!("only {ran} checks ran or skipped, want {min_checks}"),
    );
    let want = Some((passed, 0, skipped));
    check(outcome, summary == want, &format!("summary {summary:?} != {want:?}"));
    skipped
}

/// How many in-image checks run threads on another CPU (`user/init/src/cross_cpu.rs`, each
/// named `cross_cpu_…`); they say SKIP where one CPU is online.
pub const CROSS_CPU_CHECKS: usize = 7;

/// The lines of the cross-CPU checks that start with `prefix` (`TEST PASS`, `TEST SKIP`).
fn cross_cpu_lines<'a>(outcome: &'a Outcome, prefix: &str) -> Vec<&'a str> {
    let start = format!("{prefix} cross_cpu_");
    outcome.serial.lines().filter(|l| l.starts_with(&start)).collect()
}

/// [`assert_suite_passed`] for a boot with one CPU: each cross-CPU check said SKIP for
/// that reason; returns how many other checks were skipped.
#[track_caller]
pub fn assert_suite_passed_one_cpu(outcome: &Outcome, min_checks: u32) -> u32 {
    let skipped = assert_suite_passed(outcome, min_checks);
    let lines = cross_cpu_lines(outcome, "TEST SKIP");
    let why = lines.iter().all(|l| l.ends_with(": one CPU online"));
    let what = format!("cross-CPU checks skipped: {lines:?}");
    check(outcome, lines.len() == CROSS_CPU_CHECKS && why, &what);
    skipped - CROSS_CPU_CHECKS as u32
}

/// Each cross-CPU check passed (a boot with several CPUs).
#[track_caller]
pub fn assert_cross_cpu_checks_passed(outcome: &Outcome) {
    let passed = cross_cpu_lines(outcome, "TEST PASS").len();
    check(outcome, passed == CROSS_CPU_CHECKS, &format!("{passed} cross-CPU checks passed"));
}

/// The kernel's own lines after it entered init, but for its closing ones (the shutdown
/// report, VMXOFF, the halt when nothing can run): it prints nothing at run time, since
/// exits, faults and vCPU failures reach user space, so every line here is a regression.
pub fn kernel_runtime_lines(outcome: &Outcome) -> Vec<&str> {
    const CLOSING: [&str; 4] = [
        "kernel: shutdown requested by the root task: ",
        "kernel: deepest kernel stack use ",
        "kernel: no runnable thread left; halting",
        "vmx: VMX operation left",
    ];
    outcome
        .serial
        .lines()
        .skip_while(|l| !l.starts_with("kernel: entering init in ring 3"))
        .skip(1)
        .filter(|l| l.starts_with("kernel:") || l.starts_with("vmx:"))
        .filter(|l| !CLOSING.iter().any(|c| l.starts_with(c)))
        .collect()
}

/// Assert the kernel printed nothing between entering init and its closing lines.
#[track_caller]
pub fn assert_kernel_quiet_at_run_time(outcome: &Outcome) {
    let lines = kernel_runtime_lines(outcome);
    check(outcome, lines.is_empty(), &format!("kernel lines at run time: {lines:?}"));
}

#[cfg(test)]
mod tests {
    use super::{kernel_runtime_lines, Outcome, Verdict};

    #[test]
    fn only_the_kernels_lines_between_boot_and_its_closing_ones_count() {
        let serial = "kernel: booting kernel 0.1.0\n\
                      vmx: present, VMCS revision 0x2b\n\
                      kernel: entering init in ring 3\n\
                      init: hello from ring 3\n\
                      kernel: thread init exited with code 0\n\
                      TEST PASS x\n\
                      vmx: VMX root operation entered; VCpus available\n\
                      kernel: shutdown requested by the root task: Pass\n\
                      vmx: VMX operation left (VMXOFF, CR4.VMXE clear)\n";
        let out = Outcome {
            verdict: Verdict::Pass,
            serial: serial.into(),
            emulator_log: String::new(),
            stderr: String::new(),
            dir: std::path::PathBuf::new(),
        };
        assert_eq!(
            kernel_runtime_lines(&out),
            [
                "kernel: thread init exited with code 0",
                "vmx: VMX root operation entered; VCpus available"
            ]
        );
    }
}
