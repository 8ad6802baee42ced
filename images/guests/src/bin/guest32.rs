//! `guest32`: a 32-bit protected-mode guest without paging (`GuestMode::Protected32`,
//! needs unrestricted guest), loaded and entered at 0x100000. It loads its own flat GDT
//! and a small IDT, then exercises CPUID, IN/OUT, HLT woken by the PIT's IRQ0 and the
//! hypercalls, reporting each test by VMCALL (rax = 1, rbx = test, rcx = 0 for pass) and
//! ending with VMCALL rax = 2, rbx = the number of failed tests.
//!
//! What the VMM must provide: guest RAM at 1-2 MiB, the 16550 at 0x3f8, the 8259 pair and
//! the 8254, HLT exiting and interrupt injection.
//!
//! Expected serial output under Bochs (`corei7_skylake_x`), exactly:
//! ```text
//! guest32: hello from 32-bit protected mode
//! guest32: cpuid vendor GenuineIntel ok
//! guest32: in from the uart lsr ok
//! guest32: vmcall putchar ok
//! guest32: cr0 shows PE without PG ok
//! guest32: hlt woken by PIT irq0 (vector 0x20) ok
//! guest32: ring-3 vmcall refused ok
//! guest32: done
//! ```
//! and exit code 0. On a CPU without unrestricted guest the kernel refuses to create the
//! VCpu ("unpaged protected-mode guest needs unrestricted guest, which this CPU lacks")
//! and the guest never runs. An unexpected exception prints
//! `guest32: unexpected exception` and exits with code 0xee.
#![no_std]
#![no_main]

core::arch::global_asm!(
    r#"
    .code32

    .section .data.guest, "aw"
    .balign 16
g32_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff
    .quad 0x00cf93000000ffff
    // Ring 3: 0x18 code, 0x20 data; 0x28 the TSS (filled in at run time).
    .quad 0x00cffb000000ffff
    .quad 0x00cff3000000ffff
g32_gdt_tss:
    .quad 0
g32_gdt_end:
    .balign 8
    .short 0
g32_gdt_ptr:
    .short g32_gdt_end - g32_gdt - 1
    .long g32_gdt
    .short 0
g32_idt_ptr:
    .short 48 * 8 - 1
    .long g32_idt
g32_failures:
    .long 0
g32_ticks:
    .long 0
g32_user_eax:
    .long 0
g32_kernel_esp:
    .long 0

    .section .bss.guest, "aw", @nobits
    .balign 16
g32_idt:
    .skip 48 * 8
g32_text:
    .skip 16
    .balign 16
    .skip 8192
g32_stack_top:
g32_tss:
    .skip 104
    .balign 16
    .skip 2048
g32_ring0_entry_stack_top:
    .skip 2048
g32_user_stack_top:

    .section .rodata.guest, "a"
g32_hello:      .asciz "guest32: hello from 32-bit protected mode\n"
g32_vendor:     .asciz "guest32: cpuid vendor "
g32_in:         .asciz "guest32: in from the uart lsr"
g32_putchar:    .asciz "guest32: vmcall putchar"
g32_cr0:        .asciz "guest32: cr0 shows PE without PG"
g32_hlt:        .asciz "guest32: hlt woken by PIT irq0 (vector 0x20)"
g32_vmcall3:    .asciz "guest32: ring-3 vmcall refused"
g32_done:       .asciz "guest32: done\n"
g32_unexpected: .asciz "guest32: unexpected exception\n"
g32_ok:         .asciz " ok\n"
g32_fail:       .asciz " FAIL\n"

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    mov esp, offset g32_stack_top
    lgdt [g32_gdt_ptr]
    mov eax, 0x08
    push eax
    mov eax, offset .Lg32_flat
    push eax
    retf
.Lg32_flat:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    call g32_load_idt
    mov esi, offset g32_hello
    call g32_puts

    // 1: CPUID leaf 0.
    xor eax, eax
    xor ecx, ecx
    cpuid
    mov [g32_text], ebx
    mov [g32_text + 4], edx
    mov [g32_text + 8], ecx
    mov byte ptr [g32_text + 12], 0
    mov esi, offset g32_vendor
    call g32_puts
    mov esi, offset g32_text
    call g32_puts
    xor ecx, ecx
    cmp eax, 1
    setb cl
    mov ebx, 1
    xor esi, esi
    call g32_check

    // 2: IN from the UART's line-status register: THR empty.
    mov dx, 0x3fd
    in al, dx
    xor ecx, ecx
    test al, 0x20
    setz cl
    mov ebx, 2
    mov esi, offset g32_in
    call g32_check

    // 3: the putchar hypercall.
    mov edi, offset g32_putchar
    xor ebp, ebp
.Lg32_putchar_next:
    movzx ebx, byte ptr [edi]
    test ebx, ebx
    jz .Lg32_putchar_done
    xor eax, eax
    vmcall
    or ebp, eax
    inc edi
    jmp .Lg32_putchar_next
.Lg32_putchar_done:
    xor ecx, ecx
    test ebp, ebp
    setnz cl
    mov ebx, 3
    xor esi, esi
    call g32_check

    // 4: CR0 (through its read shadow): protected mode, paging off.
    mov eax, cr0
    and eax, 0x80000001
    xor ecx, ecx
    cmp eax, 1
    setne cl
    mov ebx, 4
    mov esi, offset g32_cr0
    call g32_check

    // 5: HLT woken by IRQ0.
    mov dword ptr [g32_ticks], 0
    call g32_start_timer
    mov ebp, 1000
.Lg32_hlt_again:
    sti
    hlt
    cli
    cmp dword ptr [g32_ticks], 0
    jne .Lg32_hlt_woken
    dec ebp
    jnz .Lg32_hlt_again
.Lg32_hlt_woken:
    mov al, 0xff
    out 0x21, al
    xor ecx, ecx
    cmp dword ptr [g32_ticks], 0
    sete cl
    mov ebx, 5
    mov esi, offset g32_hlt
    call g32_check

    // 6: a VMCALL of EXIT from ring 3 is refused with STATUS_DENIED (-2 in EAX) and
    // stops nothing.
    call g32_enter_user
    xor ecx, ecx
    cmp dword ptr [g32_user_eax], -2
    setne cl
    mov ebx, 6
    mov esi, offset g32_vmcall3
    call g32_check

    mov esi, offset g32_done
    call g32_puts
    mov ebx, [g32_failures]
g32_exit:
    mov eax, 2
    vmcall
.Lg32_hang:
    cli
    hlt
    jmp .Lg32_hang

// g32_puts: write the NUL-terminated string at esi to COM1.
g32_puts:
    push eax
    push edx
    push esi
    mov dx, 0x3f8
.Lg32_puts_next:
    lodsb
    test al, al
    jz .Lg32_puts_done
    out dx, al
    jmp .Lg32_puts_next
.Lg32_puts_done:
    pop esi
    pop edx
    pop eax
    ret

// g32_check: print the name at esi (if not 0), then " ok" (ecx = 0) or " FAIL"; report
// test ebx by hypercall.
g32_check:
    push eax
    push esi
    test esi, esi
    jz .Lg32_check_result
    call g32_puts
.Lg32_check_result:
    mov esi, offset g32_ok
    test ecx, ecx
    jz .Lg32_check_print
    mov esi, offset g32_fail
    inc dword ptr [g32_failures]
.Lg32_check_print:
    call g32_puts
    mov eax, 1
    vmcall
    pop esi
    pop eax
    ret

// IDT: vector 0x20 is the timer, every other vector below 48 is unexpected.
g32_load_idt:
    mov edi, offset g32_idt
    xor ecx, ecx
.Lg32_idt_entry:
    mov eax, offset g32_unexpected_isr
    cmp ecx, 0x20
    jne .Lg32_idt_gate
    mov eax, offset g32_timer_isr
.Lg32_idt_gate:
    mov edx, eax
    and eax, 0xffff
    or eax, 0x00080000
    and edx, 0xffff0000
    or edx, 0x8e00
    mov [edi], eax
    mov [edi + 4], edx
    add edi, 8
    inc ecx
    cmp ecx, 48
    jne .Lg32_idt_entry
    lidt [g32_idt_ptr]
    ret

// g32_enter_user: load the TSS (ESP0 for interrupts from ring 3), open gate 0x2f to
// ring 3, and run g32_user_code in ring 3 until it raises vector 0x2f.
g32_enter_user:
    push ebx
    push ebp
    push esi
    push edi
    mov dword ptr [g32_tss + 4], offset g32_ring0_entry_stack_top
    mov dword ptr [g32_tss + 8], 0x10
    // Descriptor: limit 103, base 23:0 in bits 39:16, present 32-bit TSS (0x89), base
    // 31:24 in bits 63:56.
    mov eax, offset g32_tss
    mov edx, eax
    shl eax, 16
    or eax, 103
    mov [g32_gdt_tss], eax
    mov eax, edx
    shr eax, 16
    and eax, 0xff
    and edx, 0xff000000
    or eax, edx
    or eax, 0x8900
    mov [g32_gdt_tss + 4], eax
    mov ax, 0x28
    ltr ax
    mov eax, offset g32_user_return
    mov edx, eax
    and eax, 0xffff
    or eax, 0x00080000
    and edx, 0xffff0000
    or edx, 0xee00
    mov [g32_idt + 0x2f * 8], eax
    mov [g32_idt + 0x2f * 8 + 4], edx
    mov [g32_kernel_esp], esp
    mov ax, 0x23
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    push 0x23
    mov eax, offset g32_user_stack_top
    push eax
    pushfd
    and dword ptr [esp], ~0x200
    push 0x1b
    mov eax, offset g32_user_code
    push eax
    iretd

g32_user_code:
    mov eax, 2
    mov ebx, 0x77
    vmcall
    mov [g32_user_eax], eax
    int 0x2f

g32_user_return:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov esp, [g32_kernel_esp]
    pop edi
    pop esi
    pop ebp
    pop ebx
    ret

g32_timer_isr:
    push eax
    inc dword ptr [g32_ticks]
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd

g32_unexpected_isr:
    mov esi, offset g32_unexpected
    call g32_puts
    mov ebx, 0xee
    jmp g32_exit

// The 8259 pair at vectors 0x20-0x2f, only IRQ0 unmasked; PIT channel 0 at ~100 Hz.
g32_start_timer:
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
    mov al, 0xfe
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov al, 0x34
    out 0x43, al
    mov al, 0x9c
    out 0x40, al
    mov al, 0x2e
    out 0x40, al
    ret

    .code64
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
