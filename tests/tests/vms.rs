//! Virtual machines end to end: every test guest runs through its own ring-3 VMM under
//! Bochs and prints what its source file says it must; CPU models without unrestricted
//! guest or EPT refuse exactly the guests they cannot run, with a clear message from the
//! VMM (the kernel prints nothing at run time); QEMU's TCG (no VT-x) makes every VMM say
//! that no VM can run. A VMM answering real exits with mutated batches finds none the
//! kernel should have refused.

use system_tests::{
    assert_kernel_quiet_at_run_time, assert_suite_passed_one_cpu, boot, boot_with, check, Emulator,
    Outcome, RunOptions,
};

const GUESTS: [&str; 5] = ["guest64", "guest32", "guest_real", "guest_triple", "guest_controls"];
/// The default image's VMs beside one per guest: the hostile VMM's, the mutating VMM's,
/// the benchmark's two (its UART in the VMM, and out of process), guest64's second VM (of
/// 64 MiB) and the one whose VMM crashes.
const OTHER_VMS: usize = 6;

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
    let skipped = assert_suite_passed_one_cpu(&out, 51);
    check(&out, skipped == 0, &format!("{skipped} checks skipped on a CPU that runs every guest"));
    for g in GUESTS {
        check(
            &out,
            out.serial.contains(&format!("TEST PASS vm_{g}")),
            &format!("vm_{g} did not pass"),
        );
        assert_guest_output(&out, g);
    }
    check(
        &out,
        out.serial.contains("vmm vm_guest_triple: VM stopped: triple fault"),
        "triple fault not reported",
    );
    // A VMM that panics mid-run is reported by its VM's name; the others ran on (every
    // other VM's check passed above).
    check(
        &out,
        out.serial.contains("init: vm vm_vmm_crash: vmm crashed: panicked"),
        "the crashed VMM was not reported by name",
    );
    check(&out, out.serial.contains("TEST PASS vm_vmm_crash"), "the crash was not expected");
    check(
        &out,
        out.serial.contains("vmx: VMX operation left (VMXOFF, CR4.VMXE clear)"),
        "no VMXOFF at shutdown",
    );
    // Each hostile batch refused with the error the liveness and ownership rules give,
    // naming the field it wrote.
    for (case, error, field) in [
        ("host-rip", "field not writable", "HostRip"),
        ("host-cr3", "field not writable", "HostCr3"),
        ("ept-pointer", "field not writable", "EptPointer"),
        ("io-bitmap-a", "field not writable", "IoBitmapA"),
        ("msr-bitmap", "field not writable", "MsrBitmap"),
        ("vmcs-link-pointer", "field not writable", "VmcsLinkPointer"),
        ("notify-window", "field not writable", "NotifyWindow"),
        (
            "pin-controls-without-external-interrupt-exiting",
            "control bits rejected by kernel policy",
            "PinBasedControls",
        ),
        (
            "pin-controls-without-nmi-exiting",
            "control bits rejected by kernel policy",
            "PinBasedControls",
        ),
        ("proc-controls-reserved-bits", "control bits rejected by the CPU", "ProcBasedControls"),
        (
            "proc-controls-without-mov-dr-exiting",
            "control bits rejected by kernel policy",
            "ProcBasedControls",
        ),
        (
            "activity-state-wait-for-sipi",
            "would keep the CPU from the kernel",
            "GuestActivityState",
        ),
        ("activity-state-shutdown", "would keep the CPU from the kernel", "GuestActivityState"),
        ("exception-bitmap-without-ac", "would keep the CPU from the kernel", "ExceptionBitmap"),
        ("exception-bitmap-without-db", "would keep the CPU from the kernel", "ExceptionBitmap"),
        ("injection-vector-32", "bad event injection", "EntryInterruptionInfo"),
    ] {
        let line = format!("hostile: {case} refused: {error} ({field})");
        check(&out, out.serial.lines().any(|l| l == line), &format!("missing {line:?}"));
    }
    // The hostile batches the kernel accepts: the guest halts with interrupts off and no
    // preemption timer, or spins with them off and the longest timer, and the kernel
    // still regains the CPU while the guest is at it (its VMM runs again).
    for case in [
        "halted with interrupts off and no timer",
        "spinning with interrupts off and a timer of 2^32 - 1",
    ] {
        let line = format!("hostile: a guest {case} gave the CPU back");
        check(&out, out.serial.contains(&line), &format!("missing {line:?}"));
    }
    check(&out, out.serial.contains("TEST PASS vm_hostile_vmm_refused"), "hostile VMM check");
    // The mutating VMM's batches: some applied, some refused, none wrongly applied, and
    // the kernel and the other VMs carried on.
    let mutated =
        out.serial.lines().find(|l| l.starts_with("vmm vm_mutated_batches: 48 mutated batches"));
    check(&out, mutated.is_some_and(|l| l.ends_with(", 0 accepted wrongly")), "mutating VMM line");
    check(&out, out.serial.contains("TEST PASS vm_mutated_batches"), "mutating VMM check");
    check(&out, out.serial.contains("guest64: done"), "guest64 did not finish");
    assert_kernel_quiet_at_run_time(&out);
}

#[test]
fn qemu_without_vtx_makes_every_vmm_say_no_vm_can_run() {
    let out = boot("default", Emulator::Qemu);
    let skipped = assert_suite_passed_one_cpu(&out, 51);
    let refusals =
        out.serial.matches(": no VM can run here: VCpu creation is not supported").count();
    // Every VM's: none of their checks passes where none ran.
    let vms = GUESTS.len() + OTHER_VMS;
    check(&out, refusals == vms, &format!("{refusals} VMMs said no VM can run"));
    check(&out, skipped as usize == vms, &format!("{skipped} VM checks skipped, want {vms}"));
    check(&out, !out.serial.contains("TEST PASS vm_"), "a VM check passed without VT-x");
    check(&out, !a_guest_ran(&out), "a guest ran without VT-x");
}

#[test]
fn bochs_lynnfield_refuses_guests_that_need_unrestricted_guest() {
    let out = bochs_on("corei5_lynnfield_750");
    let skipped = assert_suite_passed_one_cpu(&out, 51);
    check(&out, skipped == 2, &format!("{skipped} VM checks skipped, want the 2 unrunnable"));
    check(&out, out.serial.contains("unrestricted guest no"), "probe line");
    // The VMMs say why their VCpuStart was refused.
    let refused = out
        .serial
        .lines()
        .filter(|l| {
            l.starts_with("vmm vm_") && l.contains(": the kernel cannot start this guest: ")
        })
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
    let skipped = assert_suite_passed_one_cpu(&out, 51);
    let vms = GUESTS.len() + OTHER_VMS;
    check(&out, skipped as usize == vms, &format!("{skipped} VM checks skipped"));
    check(&out, out.serial.contains("vmx: present"), "penryn has VMX");
    check(&out, out.serial.contains("EPT no"), "probe line says no EPT");
    check(&out, !a_guest_ran(&out), "a guest ran without EPT");
    check(&out, out.serial.contains("VMs disabled: this CPU lacks EPT"), "the kernel names EPT");
}
