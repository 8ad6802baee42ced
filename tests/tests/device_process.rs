//! A device out of process end to end: the `device-process` image runs guest64 twice,
//! one VM after the other, first with its UART inside the VMM and then with the UART as
//! a process of its own (`uart-model`, reached over `protocols::device_model`). The
//! guest's serial output must be the same byte for byte: every port access, string I/O
//! batch, interrupt and putchar byte took the other path and the guest cannot tell.

use system_tests::{assert_suite_passed, boot, check, Emulator};

/// The guest's lines of the VM whose VMM's closing line starts with `stopped`, from the
/// end of the VM before it (the VMs run one after the other, so their lines do not mix).
fn guest_output<'a>(serial: &'a str, from: Option<&str>, stopped: &str) -> Vec<&'a str> {
    let lines = serial.lines().map(str::trim_end);
    let lines = lines.skip_while(|l| from.is_some_and(|f| !l.starts_with(f)));
    lines.take_while(|l| !l.starts_with(stopped)).filter(|l| l.starts_with("guest64:")).collect()
}

#[test]
fn the_uart_in_or_out_of_process_prints_the_same() {
    let out = boot("device-process", Emulator::Bochs);
    assert_suite_passed(&out, 50);
    for vm in ["vm_uart_in_vmm", "vm_uart_in_process"] {
        check(&out, out.serial.contains(&format!("TEST PASS {vm}")), &format!("{vm} failed"));
    }
    let first_stop = "vmm vm_uart_in_vmm: VM stopped";
    let inside = guest_output(&out.serial, None, first_stop);
    let outside = guest_output(&out.serial, Some(first_stop), "vmm vm_uart_in_process: VM stopped");
    check(&out, inside.len() >= 39, "guest64 printed its lines with the UART in the VMM");
    check(&out, inside.last() == Some(&"guest64: done"), "guest64 ran to its end");
    check(&out, inside == outside, &format!("the outputs differ:\n{inside:#?}\n{outside:#?}"));
}
