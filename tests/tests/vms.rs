//! Virtual machines end to end: every test guest runs through its own ring-3 VMM under
//! Bochs and prints what its source file says it must; CPU models without unrestricted
//! guest or EPT refuse exactly the guests they cannot run, with a clear message from the
//! VMM (the kernel prints nothing at run time); QEMU's TCG (no VT-x) makes every VMM say
//! that no VM can run. A VMM answering real exits with mutated batches finds none the
//! kernel should have refused.

use system_tests::{
    assert_kernel_quiet_at_run_time, assert_suite_passed, boot, boot_with, check, Emulator,
    Outcome, RunOptions,
};

const GUESTS: [&str; 5] = ["guest64", "guest32", "guest_real", "guest_triple", "guest_controls"];

/// The expected serial lines a guest documents in its source (the ```text block).
fn expected_lines(guest: &str) -> Vec<String> {
    let path = format!("{}/../images/guests/src/bin/{guest}.rs", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Vec<&str> = src.lines().filter_map(|l| l.strip_prefix("//!")).map(str::trim).collect();
    let start = doc.iter().position(|l| *l == "```text").expect("expected-output block");
    doc[start + 1..].iter().take_while(|l| **l != "```").map(|l| l.to_string()).collect()
}

fn assert_guest_output(out: &Outcome, guest: &str) {
    let lines = expected_lines(guest);
    check(out, !lines.is_empty(), &format!("{guest}: no expected output documented"));
    for line in lines {
        // The CR0/CR4 dump is informational (its values depend on the VMM's CR policy);
        // the checks after it assert the shadows.
        if line.starts_with("guest64: cr0=") {
            continue;
        }
        check(out, out.serial.contains(&line), &format!("{guest}: missing line {line:?}"));
    }
}

/// Whether any guest started (each greets first).
fn a_guest_ran(out: &Outcome) -> bool {
    out.serial.lines().any(|l| l.starts_with("guest") && l.contains(": hello from"))
}

fn bochs_on(cpu: &str) -> Outcome {
    let opts = RunOptions {
        bochs_cpu: cpu.into(),
        timeout: std::time::Duration::from_secs(300),
        ..RunOptions::default()
    };
    boot_with("default", Emulator::Bochs, &opts)
}

#[test]
fn bochs_runs_every_test_guest_through_its_ring3_vmm() {
    let out = bochs_on("corei7_skylake_x");
    assert_suite_passed(&out, 51);
    for g in GUESTS {
        check(
            &out,
            out.serial.contains(&format!("TEST PASS vm_{g}")),
            &format!("vm_{g} did not pass"),
        );
        assert_guest_output(&out, g);
    }
    check(&out, out.serial.contains("vmm: VM stopped: triple fault"), "triple fault not reported");
    check(
        &out,
        out.serial.contains("vmx: VMX operation left (VMXOFF, CR4.VMXE clear)"),
        "no VMXOFF at shutdown",
    );
    for field in [
        "HOST_RIP",
        "HOST_CR3",
        "EPT pointer",
        "I/O bitmap A address",
        "MSR bitmap address",
        "VMCS link pointer",
        "pin-based controls without external-interrupt exiting",
        "processor-based controls with reserved bits",
    ] {
        let line = format!("vmm(hostile): {field} refused");
        check(&out, out.serial.contains(&line), &format!("missing {line:?}"));
    }
    check(&out, out.serial.contains("TEST PASS vm_hostile_vmm_refused"), "hostile VMM check");
    // The mutating VMM's batches: some applied, some refused, none wrongly applied, and
    // the kernel and the other VMs carried on.
    let mutated = out.serial.lines().find(|l| l.starts_with("vmm(mutate): 48 mutated batches"));
    check(&out, mutated.is_some_and(|l| l.ends_with(", 0 accepted wrongly")), "mutating VMM line");
    check(&out, out.serial.contains("TEST PASS vm_mutated_batches"), "mutating VMM check");
    check(&out, out.serial.contains("guest64: done"), "guest64 did not finish");
    assert_kernel_quiet_at_run_time(&out);
}

#[test]
fn qemu_without_vtx_makes_every_vmm_say_no_vm_can_run() {
    let out = boot("default", Emulator::Qemu);
    assert_suite_passed(&out, 51);
    let refusals =
        out.serial.matches("vmm: no VM can run here: VCpu creation is not supported").count();
    // Every guest's, the hostile VMM's, the mutating VMM's and the benchmark's.
    check(&out, refusals == GUESTS.len() + 3, &format!("{refusals} VMMs said no VM can run"));
    check(&out, !a_guest_ran(&out), "a guest ran without VT-x");
}

#[test]
fn bochs_lynnfield_refuses_guests_that_need_unrestricted_guest() {
    let out = bochs_on("corei5_lynnfield_750");
    assert_suite_passed(&out, 51);
    check(&out, out.serial.contains("unrestricted guest no"), "probe line");
    // The VMMs say why their VCpuStart was refused.
    let refused = out
        .serial
        .lines()
        .filter(|l| l.starts_with("vmm: the kernel cannot start this guest: "))
        .filter(|l| l.ends_with("needs unrestricted guest, which this CPU lacks"))
        .count();
    check(
        &out,
        refused == 2,
        &format!("{refused} refusals for lack of unrestricted guest, want 2"),
    );
    // The 64-bit guests need neither, and every VT-x control they use exists here.
    assert_guest_output(&out, "guest64");
    assert_guest_output(&out, "guest_controls");
    check(&out, !out.serial.contains("hello from real mode"), "a real-mode guest ran");
    assert_kernel_quiet_at_run_time(&out);
}

#[test]
fn bochs_penryn_without_ept_runs_no_guest_and_says_why() {
    let out = bochs_on("core2_penryn_t9600");
    assert_suite_passed(&out, 51);
    check(&out, out.serial.contains("vmx: present"), "penryn has VMX");
    check(&out, out.serial.contains("EPT no"), "probe line says no EPT");
    check(&out, !a_guest_ran(&out), "a guest ran without EPT");
    check(&out, out.serial.contains("VMs disabled: this CPU lacks EPT"), "the kernel names EPT");
}
