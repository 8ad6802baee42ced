//! `guest_triple`: a 64-bit guest (`GuestMode::Long64`, CR3 = 0x100000, RIP = the ELF
//! entry point) that loads an empty IDT (limit 0) and executes UD2. Delivering #UD then
//! faults on the IDT limit (#GP), delivering #GP faults again (#DF), and delivering #DF
//! faults a third time: a triple fault, which VMX turns into a VM exit (reason 2). The
//! VMM must stop this VM, and only this one; the kernel and other VMs keep running.
//!
//! The exception bitmap must not intercept #UD, #GP or #DF for this guest (it is 0 by
//! default), or the VMM sees the exception instead of the triple fault.
//!
//! Expected serial output, exactly:
//! ```text
//! guest_triple: loading an empty IDT, then ud2; the VM must stop with a triple fault
//! ```
//! followed by a triple-fault exit; no exit hypercall. If the guest keeps running it
//! prints `guest_triple: still running after the triple fault (FAIL)` and exits with
//! code 0xee.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../common/long64.s"));

core::arch::global_asm!(
    r#"
    .section .data.guest, "aw"
    .balign 8
    .short 0, 0, 0
gt_empty_idt:
    .short 0
    .quad 0

    .section .rodata.guest, "a"
gt_hello:   .asciz "guest_triple: loading an empty IDT, then ud2; the VM must stop with a triple fault\n"
gt_alive:   .asciz "guest_triple: still running after the triple fault (FAIL)\n"

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + stack_top]
    call load_gdt64
    call load_data_segments
    lea rsi, [rip + gt_hello]
    call puts
    lidt [rip + gt_empty_idt]
    ud2
    lea rsi, [rip + gt_alive]
    call puts
    mov ebx, 0xee
    jmp guest_exit
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
