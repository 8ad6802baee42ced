//! An unmodified Linux under the VMM: Debian's cloud kernel with a busybox initramfs
//! boots in Bochs to a shell on the VM's serial console, and a conversation over that
//! console checks what the VM gives it: the kernel it runs, the local APIC's timer and
//! the I/O APIC's lines ticking, ACPI tables the kernel takes without a complaint,
//! sleeping, the wall-clock date, the manifest's RAM, and a clean (ACPI) power-off that
//! ends only its VM.

use system_tests::{assert_suite_passed, boot_with, check, Emulator, Outcome, RunOptions};
use xtask::linux::INIT_MARKER;
use xtask::serial_input::{SerialInput, Step};

/// The shell's prompt (root's `PS1` ends so).
const PROMPT: &str = "# ";

/// The lines the shell printed for `command` (what follows its echo, up to the next
/// prompt).
fn answer<'a>(out: &'a Outcome, command: &str, nth: usize) -> Vec<&'a str> {
    let mut lines = out.serial.lines().skip_while(|l| !l.contains(INIT_MARKER));
    for _ in 0..=nth {
        if !lines.any(|l| l.ends_with(command)) {
            return Vec::new();
        }
    }
    lines.take_while(|l| !l.contains(PROMPT)).map(str::trim_end).collect()
}

/// The count on a `/proc/interrupts` line (the first CPU's column).
fn count(line: &str) -> Option<u64> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The local APIC timer's count and the sum over the I/O APIC's lines, with the I/O
/// APIC lines' names, in a `/proc/interrupts` listing.
fn apic_counts(listing: &[&str]) -> (Option<u64>, Option<u64>, Vec<String>) {
    let local = listing.iter().find(|l| l.trim_start().starts_with("LOC:")).and_then(|l| count(l));
    let ioapic: Vec<&&str> = listing.iter().filter(|l| l.contains("IO-APIC")).collect();
    let names = ioapic.iter().filter_map(|l| l.split_whitespace().last()).map(String::from);
    let sum = ioapic.iter().map(|l| count(l)).sum::<Option<u64>>().filter(|_| !ioapic.is_empty());
    (local, sum, names.collect())
}

/// The host's date, in UTC and local time (the RTC shows the host's clock).
fn today() -> Vec<String> {
    let date = |args: &[&str]| {
        std::process::Command::new("date")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    vec![date(&["-u", "+%Y-%m-%d"]), date(&["+%Y-%m-%d"])]
}

/// Whether the Linux guest (Debian packages, fetched once) is at hand; without it a test
/// says SKIP, except in CI, where it must be.
fn guest_prepared(test: &str) -> bool {
    let Err(e) = xtask::linux::prepare() else { return true };
    assert!(std::env::var_os("CI").is_none(), "the Linux guest cannot be prepared: {e}");
    println!("SKIP {test}: the Linux guest cannot be prepared here: {e}");
    false
}

/// Boot `image` under Bochs with `cpus` CPUs and type `commands` at its shell, each at
/// the next prompt once /init runs; killed after `timeout` seconds.
fn shell_session(image: &'static str, commands: &[&str], cpus: u8, timeout: u64) -> Outcome {
    let mut script = vec![Step::new(INIT_MARKER, "")];
    script.extend(commands.iter().map(|c| Step::new(PROMPT, &format!("{c}\n"))));
    let found = xtask::image::find(image).unwrap_or_else(|e| panic!("{e}"));
    let opts = RunOptions {
        timeout: std::time::Duration::from_secs(timeout),
        memory_mib: found.memory_mib(),
        cpus,
        serial_input: SerialInput::Script(script),
        ..RunOptions::default()
    };
    boot_with(image, Emulator::Bochs, &opts)
}

#[test]
fn linux_boots_to_a_shell_that_answers_over_the_serial_console() {
    if !guest_prepared("linux_boots_to_a_shell") {
        return;
    }
    let commands = [
        "uname -r",
        "cat /proc/interrupts",
        "cat /proc/interrupts",
        "dmesg | grep -i acpi",
        "sleep 1; echo slept",
        "date +%Y-%m-%d",
        "free -m",
        "poweroff -f",
    ];
    let out = shell_session("linux", &commands, 1, 900);
    check(&out, out.serial.contains(INIT_MARKER), "Linux did not reach /init");
    let release = out
        .serial
        .lines()
        .find_map(|l| l.split("Linux version ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default();
    let uname = answer(&out, "uname -r", 0);
    check(&out, !release.is_empty() && uname == [release], &format!("uname -r: {uname:?}"));
    // The interrupt controllers are the ones ACPI describes: the local APIC's timer
    // ticks, and the devices' lines (the PIT's, the UART's) come through the I/O APIC.
    let (loc1, io1, names) = apic_counts(&answer(&out, "cat /proc/interrupts", 0));
    let (loc2, io2, _) = apic_counts(&answer(&out, "cat /proc/interrupts", 1));
    check(
        &out,
        matches!((loc1, loc2), (Some(a), Some(b)) if b > a),
        &format!("LOC (local timer) counts {loc1:?} then {loc2:?}: the APIC timer does not tick"),
    );
    check(
        &out,
        matches!((io1, io2), (Some(a), Some(b)) if b > a),
        &format!("IO-APIC line counts {io1:?} then {io2:?}: no interrupts through the I/O APIC"),
    );
    check(
        &out,
        ["timer", "ttyS0"].iter().all(|n| names.iter().any(|m| m == n)),
        &format!("I/O APIC lines {names:?}: the PIT's and the UART's should be there"),
    );
    // The tables pass the kernel's ACPI validation: it reports them and complains of
    // nothing (an ACPI BIOS error or warning, a firmware bug).
    let acpi = answer(&out, "dmesg | grep -i acpi", 0);
    check(&out, acpi.iter().any(|l| l.contains("ACPI: RSDP")), "dmesg names no ACPI tables");
    let complaints: Vec<&&str> = acpi
        .iter()
        .filter(|l| {
            let l = l.to_lowercase();
            ["error", "warning", "firmware bug", "exception"].iter().any(|w| l.contains(w))
        })
        .collect();
    check(&out, complaints.is_empty(), &format!("ACPI complaints in dmesg: {complaints:?}"));
    check(&out, answer(&out, "sleep 1; echo slept", 0) == ["slept"], "sleep 1 did not return");
    let date = answer(&out, "date +%Y-%m-%d", 0);
    let days = today();
    check(
        &out,
        date.first().is_some_and(|d| days.iter().any(|t| t == d)),
        &format!("date {date:?}, the host's is {days:?}"),
    );
    let free = answer(&out, "free -m", 0);
    let total: Option<u64> = free
        .iter()
        .find(|l| l.starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|t| t.parse().ok());
    // The manifest gives 128 MiB: the kernel counts all of it but the legacy hole (its
    // boot line "Memory: available/totalK"), and `free` shows what it does not keep for
    // its own image and reserved memory.
    let counted: Option<u64> = out.serial.lines().find_map(|l| {
        l.split("] Memory: ").nth(1)?.split('/').nth(1)?.split('K').next()?.parse().ok()
    });
    check(
        &out,
        counted.is_some_and(|k| (126 * 1024..=128 * 1024).contains(&k)),
        &format!("the kernel counted {counted:?} KiB of RAM, the manifest gives 128 MiB"),
    );
    check(
        &out,
        total.is_some_and(|t| (64..=128).contains(&t)),
        &format!("free -m: total {total:?} MiB of the manifest's 128"),
    );
    assert_powered_off(&out, "vm_linux");
}

/// Every CPU's count on a `/proc/interrupts` line (one column per CPU, as the header's
/// `CPU0 CPU1 ...` names them).
fn counts(listing: &[&str], name: &str, cpus: usize) -> Option<Vec<u64>> {
    let line = listing.iter().find(|l| l.trim_start().starts_with(name))?;
    let counts: Option<Vec<u64>> =
        line.split_whitespace().skip(1).take(cpus).map(|c| c.parse().ok()).collect();
    counts.filter(|c| c.len() == cpus)
}

/// The run ended as the shell's `poweroff -f` ends it: VM `vm`'s VMM says power-off, and
/// the image's one check (that VM's) passed.
#[track_caller]
fn assert_powered_off(out: &Outcome, vm: &str) {
    let line = format!("vmm {vm}: VM stopped: powered off");
    check(out, out.serial.contains(&line), "the VMM did not say power-off");
    assert_suite_passed(out, 1);
}

/// The same Linux in a VM of two vCPUs on a machine of two CPUs: the kernel brings its
/// second processor up through the VMM's local APIC model (INIT and STARTUP), `nproc`
/// says 2, and each CPU's local APIC timer ticks (its `LOC` column rises between two
/// looks); /proc/cpuinfo lists two processors, and the VM powers off.
#[test]
fn linux_boots_on_two_vcpus_and_both_take_timer_interrupts() {
    if !guest_prepared("linux_boots_on_two_vcpus") {
        return;
    }
    let commands = [
        "nproc",
        "cat /proc/interrupts",
        "sleep 1; cat /proc/interrupts",
        "grep -c processor /proc/cpuinfo",
        "poweroff -f",
    ];
    let out = shell_session("linux-smp", &commands, 2, 1200);
    check(&out, out.serial.contains(INIT_MARKER), "Linux did not reach /init");
    check(&out, out.serial.contains("vmm vm_linux_smp: vCPU 1 started at "), "no STARTUP");
    check(
        &out,
        out.serial.contains("smp: Brought up 1 node, 2 CPUs"),
        "Linux did not bring its second CPU up",
    );
    let nproc = answer(&out, "nproc", 0);
    check(&out, nproc == ["2"], &format!("nproc: {nproc:?}"));
    let cpuinfo = answer(&out, "grep -c processor /proc/cpuinfo", 0);
    check(&out, cpuinfo == ["2"], &format!("processors in /proc/cpuinfo: {cpuinfo:?}"));
    let first = counts(&answer(&out, "cat /proc/interrupts", 0), "LOC:", 2);
    let second = counts(&answer(&out, "sleep 1; cat /proc/interrupts", 0), "LOC:", 2);
    let rose =
        matches!((&first, &second), (Some(a), Some(b)) if a.iter().zip(b).all(|(x, y)| y > x));
    check(
        &out,
        rose,
        &format!("LOC (local timer) per CPU {first:?} then {second:?}: each CPU's must rise"),
    );
    assert_powered_off(&out, "vm_linux_smp");
}

/// Bad inputs for Linux VMs: each refused with a message naming the cause, while the
/// test guest beside them runs to its end.
#[test]
fn bad_linux_inputs_are_refused_by_name_and_other_vms_run_on() {
    if !guest_prepared("bad_linux_inputs") {
        return;
    }
    let image = xtask::image::find("linux-refused").unwrap_or_else(|e| panic!("{e}"));
    let opts = RunOptions {
        timeout: std::time::Duration::from_secs(400),
        memory_mib: image.memory_mib(),
        ..RunOptions::default()
    };
    let out = boot_with("linux-refused", Emulator::Bochs, &opts);
    for line in [
        "vmm vm_linux_truncated: the Linux kernel cannot boot: bzImage truncated: the header says ",
        "vmm vm_linux_initrd_too_large: the Linux kernel cannot boot: initramfs of 0x",
        "init: vm_too_much_ram: no free block of 1024 MiB for its RAM",
        "TEST PASS vm_linux_truncated",
        "TEST PASS vm_linux_initrd_too_large",
        "TEST PASS vm_too_much_ram",
        "TEST PASS vm_guest64",
    ] {
        check(&out, out.serial.contains(line), &format!("missing {line:?}"));
    }
    check(&out, out.serial.contains("is larger than the VM's 0x800000 bytes of RAM"), "initramfs");
    assert_suite_passed(&out, 4);
}
