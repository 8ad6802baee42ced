//! Devices per VM end to end: the `devices` image's one VM lists its devices (the 8259
//! pair, the local APIC, a UART moved to COM2 on IRQ 3) and its guest prints through
//! COM2, finds the devices it was not given absent, and takes the UART's interrupt on
//! IRQ 3: the list travelled from the manifest through the root task's VM description to
//! the VMM's buses.

use system_tests::{assert_suite_passed, boot, check, Emulator};

#[test]
fn a_vm_gets_the_devices_its_manifest_lists() {
    let out = boot("devices", Emulator::Bochs);
    assert_suite_passed(&out, 50);
    check(&out, out.serial.contains("TEST PASS vm_devices"), "guest_devices did not pass");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/guests/src/bin/guest_devices.rs");
    let src = std::fs::read_to_string(path).unwrap_or_default();
    let doc: Vec<&str> = src.lines().filter_map(|l| l.strip_prefix("//!")).map(str::trim).collect();
    let start = doc.iter().position(|l| *l == "```text").map_or(doc.len(), |i| i + 1);
    let lines: Vec<&str> = doc.iter().skip(start).take_while(|l| **l != "```").copied().collect();
    check(&out, lines.len() == 6, "guest_devices documents its output");
    for line in lines {
        check(&out, out.serial.contains(line), &format!("missing line {line:?}"));
    }
}
