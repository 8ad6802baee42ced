//! Boot the default image under both emulators: the kernel reaches `init` in ring 3,
//! init's checks pass, the manifest's processes start in order, the console driver prints
//! through COM1 with its IRQ, the in-image syscall fuzzer runs and the kernel survives it,
//! the VT-x probe says what each emulator offers, and after its boot log the kernel prints
//! nothing until its closing lines (init's threads exit and fault, and those reach user
//! space instead). The same ISO boots through UEFI (OVMF under QEMU) as through a BIOS.
//! NMIs sent while it runs change nothing.

use system_tests::{
    assert_cross_cpu_checks_passed, assert_kernel_quiet_at_run_time, assert_suite_passed, boot,
    boot_with, check, Emulator, Firmware, Outcome, RunOptions,
};

/// How many checks init runs at least.
const INIT_CHECKS: u32 = 55;

/// The in-image syscall fuzzer ran its iterations and the kernel served some and
/// rejected others, then still worked (init's checks of that are counted in the suite).
fn assert_fuzzer_ran(out: &Outcome) {
    let line = out.serial.lines().find(|l| l.starts_with("fuzz: ") && l.contains(" served, "));
    let counts = line.and_then(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        Some((words.get(1)?.parse::<u64>().ok()?, words.get(4)?.parse::<u64>().ok()?))
    });
    check(out, counts.is_some_and(|(s, r)| s > 0 && r > 0), &format!("fuzz line: {line:?}"));
    check(
        out,
        out.serial.contains("TEST PASS in_image_fuzzer_accounts_for_every_operation")
            && out.serial.contains("TEST PASS kernel_alive_after_fuzzing"),
        "the in-image fuzzer's checks",
    );
}

/// The ring-3 console driver greeted on COM1, and init's checks came through it.
fn assert_console_driver_printed(out: &Outcome) {
    let greeting = "console: COM1 driver ready, transmitting on IRQ 4";
    check(out, out.serial.contains(greeting), "the console driver did not print");
    check(out, out.serial.contains("TEST PASS console_output_paced_by_irq4"), "no IRQ 4");
}

/// The manifest's processes started in order: the console driver before every other
/// check, the fuzzer only after the last VM's line.
fn assert_manifest_processes_started(out: &Outcome) {
    let at = |line: &str| out.serial.find(line);
    let console = at("TEST PASS console_driver_started");
    let first_check = at("TEST PASS ring3_cpl");
    check(out, console.is_some() && console < first_check, "the console driver started first");
    let fuzzer = at("TEST PASS in_image_fuzzer_started");
    let last_vm = out.serial.rfind("TEST PASS vm_");
    check(out, fuzzer.is_some() && last_vm < fuzzer, "the fuzzer started after the VMs");
}

#[test]
fn qemu_boots_init_in_ring3_and_reports_no_vmx() {
    let out = boot("default", Emulator::Qemu);
    assert_suite_passed(&out, INIT_CHECKS);
    check(&out, out.serial.contains("init: hello from ring 3"), "init did not print");
    assert_console_driver_printed(&out);
    assert_manifest_processes_started(&out);
    assert_fuzzer_ran(&out);
    check(
        &out,
        out.serial.contains("vmx: absent: CPUID.1:ECX.VMX = 0"),
        "QEMU TCG must be reported as having no VMX",
    );
    check(&out, !out.serial.contains("vmx: present"), "VMX reported present under TCG");
    check(&out, out.serial.contains("kernel: firmware: BIOS"), "not booted through a BIOS");
    assert_platform_from_acpi(&out);
    assert_kernel_quiet_at_run_time(&out);
}

/// NMIs are nobody's fault: sent to both CPUs every 50 ms from the moment init runs
/// until the machine stops (arriving in ring 3, in the kernel, while a CPU idles), they
/// kill no thread and stop no kernel, and the suite passes as without them.
#[test]
fn nmis_while_the_suite_runs_change_nothing() {
    let opts = RunOptions {
        cpus: 2,
        nmis_after: Some("init: hello from ring 3".into()),
        ..RunOptions::default()
    };
    let out = boot_with("default", Emulator::Qemu, &opts);
    let sent = std::fs::read_to_string(out.dir.join("nmis.txt")).unwrap_or_default();
    let sent: u32 = sent.trim().parse().unwrap_or(0);
    check(&out, sent >= 10, &format!("only {sent} NMIs went: the run proves nothing"));
    check(&out, !out.serial.contains("KERNEL PANIC"), "an NMI stopped the kernel");
    assert_suite_passed(&out, INIT_CHECKS);
    assert_cross_cpu_checks_passed(&out);
}

/// The kernel read the machine from the firmware's ACPI tables (one CPU, the I/O APIC,
/// the PM timer) and routes device IRQs through the I/O APIC.
fn assert_platform_from_acpi(out: &Outcome) {
    for line in [
        "acpi: 1 CPUs, local APIC IDs [0]",
        " at 0xfec00000, GSIs from 0",
        "acpi: 8259 PICs present",
        "acpi: PM timer at port 0x",
        "of the ACPI PM timer)",
        "kernel: device IRQs through the I/O APIC",
    ] {
        check(out, out.serial.contains(line), &format!("no {line:?} in the boot log"));
    }
}

#[test]
fn qemu_boots_the_same_iso_through_uefi() {
    let opts = RunOptions { firmware: Firmware::Uefi, ..RunOptions::default() };
    let out = boot_with("default", Emulator::Qemu, &opts);
    assert_suite_passed(&out, INIT_CHECKS);
    // OVMF's boot manager names the ISO's EFI boot entry on the serial console.
    check(&out, out.serial.contains("BdsDxe: starting Boot"), "OVMF did not boot the ISO");
    check(&out, out.serial.contains("kernel: firmware: UEFI (system table at 0x"), "not UEFI");
    assert_platform_from_acpi(&out);
    assert_console_driver_printed(&out);
    assert_manifest_processes_started(&out);
    assert_fuzzer_ran(&out);
    assert_kernel_quiet_at_run_time(&out);
}

/// Two CPUs: the kernel finds both in the MADT, starts the second (INIT, STARTUP) and
/// reports both online; the suite runs as on one CPU (threads run on the boot CPU).
fn assert_two_cpus_online(out: &Outcome) -> u32 {
    let skipped = assert_suite_passed(out, INIT_CHECKS);
    assert_cross_cpu_checks_passed(out);
    check(out, out.serial.contains("acpi: 2 CPUs, local APIC IDs [0, 1]"), "MADT CPUs");
    check(out, out.serial.contains("smp: 2 CPUs online"), "the second CPU did not come up");
    check(out, !out.serial.contains("did not start"), "a CPU did not start");
    skipped
}

#[test]
fn two_cpus_come_online_under_qemu_through_bios_and_uefi() {
    for firmware in [Firmware::Bios, Firmware::Uefi] {
        let opts = RunOptions { cpus: 2, firmware, ..RunOptions::default() };
        let _ = assert_two_cpus_online(&boot_with("default", Emulator::Qemu, &opts));
    }
}

#[test]
fn two_cpus_come_online_under_bochs() {
    let opts = RunOptions {
        cpus: 2,
        timeout: std::time::Duration::from_secs(600),
        ..RunOptions::default()
    };
    let out = boot_with("default", Emulator::Bochs, &opts);
    let skipped = assert_two_cpus_online(&out);
    check(&out, skipped == 0, "a VM check was skipped with two CPUs");
    let vmx = "smp: 1 of 1 started CPUs in VMX root operation";
    check(&out, out.serial.contains(vmx), "the second CPU did not enter VMX operation");
    // Two VMs at once, one on each CPU (vm_guest64 on CPU 0, beside it vm_guest32).
    check(&out, out.serial.contains("init: vm_guest32: runs on CPU 1"), "vm_guest32 not moved");
    for vm in ["vm_guest32", "vm_guest64"] {
        check(&out, out.serial.contains(&format!("TEST PASS {vm}")), vm);
    }
}

#[test]
fn bochs_boots_init_in_ring3_and_finds_vmx() {
    let out = boot("default", Emulator::Bochs);
    assert_suite_passed(&out, INIT_CHECKS);
    check(&out, out.serial.contains("kernel: entering init in ring 3"), "init not entered");
    assert_console_driver_printed(&out);
    assert_manifest_processes_started(&out);
    assert_fuzzer_ran(&out);
    let probe = out.serial.lines().find(|l| l.starts_with("vmx: present")).unwrap_or_default();
    check(
        &out,
        probe.contains("EPT yes") && probe.contains("unrestricted guest yes"),
        &format!("VMX probe line lacks EPT/unrestricted guest: {probe:?}"),
    );
    check(&out, probe.contains("VMCS revision 0x"), "no VMCS revision in the probe line");
    assert_platform_from_acpi(&out);
    assert_kernel_quiet_at_run_time(&out);
}

#[test]
fn the_tick_comes_from_the_local_apic_timer_or_the_pit() {
    for emulator in [Emulator::Qemu, Emulator::Bochs] {
        let out = boot("default", emulator);
        check(&out, out.serial.contains("kernel: tick from the local APIC timer"), "no LAPIC tick");
        check(&out, out.serial.contains("smp: 1 CPUs online"), "one CPU, reported");
        check(
            &out,
            out.serial.contains("TEST PASS timer_preempts_a_spinning_thread"),
            "no preemption",
        );
    }
    let out = boot("pit-tick", Emulator::Qemu);
    assert_suite_passed(&out, INIT_CHECKS);
    check(&out, out.serial.contains("kernel: tick from the PIT (IRQ 0)"), "no PIT fallback");
    check(&out, out.serial.contains("device IRQs through the 8259 PICs"), "no 8259 fallback");
    check(
        &out,
        out.serial.contains("TEST PASS timer_preempts_a_spinning_thread"),
        "PIT preemption",
    );
}
