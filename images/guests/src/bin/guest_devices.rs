//! `guest_devices`: a 64-bit guest (`GuestMode::Long64`, CR3 = 0x100000, RIP = the ELF
//! entry point) for a VM whose manifest lists its devices: the 8259 pair, the local APIC
//! and a 16550 moved to COM2 (0x2f8, IRQ 3), nothing else. It prints through COM2, finds
//! the UART there, finds COM1, the i8042, the PIT and the I/O APIC absent (ports and
//! MMIO read as an undriven bus: all ones), and takes the UART's interrupt on IRQ 3.
//!
//! Expected serial output, exactly:
//! ```text
//! guest_devices: hello through the uart at com2 (0x2f8)
//! guest_devices: com2 lsr: transmitter empty ok
//! guest_devices: com1, the i8042 and the pit are absent: their ports read 0xff ok
//! guest_devices: the ioapic is absent: its window reads all ones ok
//! guest_devices: the uart's thre interrupt arrives on irq 3 (vector 0x23) ok
//! guest_devices: done
//! ```
//! and exit code 0 (the number of failed tests).
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../common/long64.s"));

core::arch::global_asm!(
    r#"
    .section .rodata.guest, "a"
gd_hello:   .asciz "guest_devices: hello through the uart at com2 (0x2f8)\n"
gd_lsr:     .asciz "guest_devices: com2 lsr: transmitter empty"
gd_absent:  .asciz "guest_devices: com1, the i8042 and the pit are absent: their ports read 0xff"
gd_ioapic:  .asciz "guest_devices: the ioapic is absent: its window reads all ones"
gd_irq:     .asciz "guest_devices: the uart's thre interrupt arrives on irq 3 (vector 0x23)"
gd_done:    .asciz "guest_devices: done\n"

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + stack_top]
    call load_gdt64
    call load_data_segments
    call load_idt64
    mov word ptr [rip + console_port], 0x2f8
    lea rsi, [rip + gd_hello]
    call puts

    // 1: COM2's line-status register: THR empty (bit 5).
    mov dx, 0x2fd
    in al, dx
    xor ecx, ecx
    test al, 0x20
    setz cl
    mov ebx, 1
    lea rsi, [rip + gd_lsr]
    call check

    // 2: COM1's LSR, the i8042's status and the PIT's port B: nothing claims them.
    mov dx, 0x3fd
    in al, dx
    mov bl, al
    in al, 0x64
    and bl, al
    in al, 0x61
    and bl, al
    xor ecx, ecx
    cmp bl, 0xff
    setne cl
    mov ebx, 2
    lea rsi, [rip + gd_absent]
    call check

    // 3: the I/O APIC's window (IOREGSEL, IOWIN): unbacked, reads all ones.
    mov rax, 0xfec00000
    mov dword ptr [rax], 1
    mov edx, [rax + 0x10]
    xor ecx, ecx
    cmp edx, 0xffffffff
    setne cl
    mov ebx, 3
    lea rsi, [rip + gd_ioapic]
    call check

    // 4: the 8259 pair at vectors 0x20/0x28 with only IRQ 3 unmasked; enabling the
    // UART's THRE interrupt while THR is empty raises its line at once.
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    out 0xa1, al
    mov al, 0xf7
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 0
    mov qword ptr [rip + expected_vector], 0x23
    mov dx, 0x2f9
    mov al, 0x02
    out dx, al
    mov r12d, 100
.Lgd_wait:
    sti
    nop
    cli
    cmp qword ptr [rip + fault_hits], 0
    jne .Lgd_taken
    dec r12d
    jnz .Lgd_wait
.Lgd_taken:
    mov dx, 0x2f9
    xor eax, eax
    out dx, al
    mov al, 0xff
    out 0x21, al
    mov al, 0x20
    out 0x20, al
    mov rcx, [rip + fault_hits]
    xor rcx, 1
    mov ebx, 4
    lea rsi, [rip + gd_irq]
    call check

    lea rsi, [rip + gd_done]
    call puts
    mov rbx, [rip + failures]
    jmp guest_exit
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
