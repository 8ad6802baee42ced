//! A position-independent program that tries port I/O itself: `in al, dx`, then
//! `out dx, al`, on COM1. Ring 3 runs with IOPL 0 and the TSS has no I/O permission
//! bitmap, so each instruction raises #GP, whatever capabilities the process holds; its
//! fault handler resumes it past the first (one byte) and stops it at the second.

/// The program's bytes.
pub fn code() -> &'static [u8] {
    crate::process::code_between!(port_probe_start, port_probe_end)
}

core::arch::global_asm!(
    r#"
    .section .text.port_probe, "ax"
    .global port_probe_start
    .global port_probe_end
port_probe_start:
    mov edx, {port}
    in al, dx
    out dx, al
    ud2
port_probe_end:
"#,
    port = const protocols::console::PORTS.0,
);
