//! `guest_restart`: a 64-bit guest (`GuestMode::Long64`, CR3 = 0x100000, RIP = the ELF
//! entry point) whose VMM is made to crash in the middle of its serial output, for the
//! `vmm-restart` image. It prints 24 numbered lines through COM1; halfway through line 12
//! it makes the CRASH_VMM hypercall (function 9), at which a VMM in crash-on-hypercall
//! mode panics. The VMM restarted in its place takes up the committed state, the guest
//! makes the hypercall again (it had not retired the VMCALL) and carries on, and no byte
//! of its output may be lost or doubled.
//!
//! Expected serial output, exactly:
//! ```text
//! guest_restart: line 01 of 24: every byte once, in order
//! ...
//! guest_restart: line 24 of 24: every byte once, in order
//! guest_restart: done
//! ```
//! and exit code 0.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../common/long64.s"));

core::arch::global_asm!(
    r#"
    .section .rodata.guest, "a"
gr_line:    .asciz "guest_restart: line "
gr_of:      .asciz " of 24: "
gr_text:    .asciz "every byte once, in order\n"
gr_done:    .asciz "guest_restart: done\n"

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + stack_top]
    call load_gdt64
    call load_data_segments
    call load_idt64
    mov r12d, 1
.Lgr_line:
    lea rsi, [rip + gr_line]
    call puts
    mov eax, r12d
    call put2
    lea rsi, [rip + gr_of]
    call puts
    // Halfway through line 12: CRASH_VMM.
    cmp r12d, 12
    jne .Lgr_text
    mov eax, 9
    vmcall
.Lgr_text:
    lea rsi, [rip + gr_text]
    call puts
    inc r12d
    cmp r12d, 24
    jbe .Lgr_line
    lea rsi, [rip + gr_done]
    call puts
    xor ebx, ebx
    jmp guest_exit

// put2: write eax (0-99) as two decimal digits.
put2:
    push rax
    push rcx
    push rdx
    xor edx, edx
    mov ecx, 10
    div ecx
    add al, 0x30
    call putc
    mov al, dl
    add al, 0x30
    call putc
    pop rdx
    pop rcx
    pop rax
    ret
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
