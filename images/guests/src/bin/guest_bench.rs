//! `guest_bench`: measures VM-exit round trips from inside a 64-bit guest, in TSC ticks
//! (under Bochs one tick is one emulated instruction, so the figure counts everything the
//! exit costs: the kernel, the IPC to the ring-3 VMM, the VMM's emulation, the reply's
//! validation and the VM entry). RDTSC does not exit, so the guest reads the real count.
//!
//! Each figure is the average over 1000 round trips minus the same loop without the
//! exiting instruction. The VMM handles CPUID from its table; the port write goes to the
//! 16550 model's scratch register (port 0x3ff); the MMIO read is a 4-byte MOV from the
//! local APIC's version register at 0xfee00030 (decoded by the VMM and answered by its
//! APIC model).
//!
//! Expected serial output (numbers vary with the code, the format does not):
//! ```text
//! guest_bench: cpuid exit round trip 0x...
//! guest_bench: port-io exit round trip 0x...
//! guest_bench: mmio exit round trip 0x...
//! ```
//! then exit code 0.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../common/long64.s"));

core::arch::global_asm!(
    r#"
    .section .rodata.guest, "a"
gb_cpuid:   .asciz "guest_bench: cpuid exit round trip "
gb_io:      .asciz "guest_bench: port-io exit round trip "
gb_mmio:    .asciz "guest_bench: mmio exit round trip "

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + stack_top]
    call load_gdt64
    call load_data_segments

    // CPUID: with the exit, then the same loop without it.
    mov r12, 1000
    xor r13, r13
1:  rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    xor eax, eax
    xor ecx, ecx
    cpuid
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    add r13, rax
    dec r12
    jnz 1b
    mov r12, 1000
    xor r15, r15
2:  rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    xor eax, eax
    xor ecx, ecx
    nop
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    add r15, rax
    dec r12
    jnz 2b
    lea rsi, [rip + gb_cpuid]
    call puts
    mov rax, r13
    sub rax, r15
    xor edx, edx
    mov ecx, 1000
    div rcx
    call puthex
    mov al, 10
    call putc

    // Port I/O: OUT to the UART's scratch register.
    mov r12, 1000
    xor r13, r13
3:  rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov dx, 0x3ff
    mov al, 0x5a
    out dx, al
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    add r13, rax
    dec r12
    jnz 3b
    mov r12, 1000
    xor r15, r15
4:  rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov dx, 0x3ff
    mov al, 0x5a
    nop
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    add r15, rax
    dec r12
    jnz 4b
    lea rsi, [rip + gb_io]
    call puts
    mov rax, r13
    sub rax, r15
    xor edx, edx
    mov ecx, 1000
    div rcx
    call puthex
    mov al, 10
    call putc

    // MMIO: a 4-byte read of the local APIC's version register.
    mov rbx, 0xfee00020
    mov r12, 1000
    xor r13, r13
5:  rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov eax, [rbx + 0x10]
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    add r13, rax
    dec r12
    jnz 5b
    mov r12, 1000
    xor r15, r15
6:  rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov eax, ebx
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    add r15, rax
    dec r12
    jnz 6b
    lea rsi, [rip + gb_mmio]
    call puts
    mov rax, r13
    sub rax, r15
    xor edx, edx
    mov ecx, 1000
    div rcx
    call puthex
    mov al, 10
    call putc

    xor ebx, ebx
    jmp guest_exit
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
