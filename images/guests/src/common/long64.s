// Shared by the 64-bit guests (Intel syntax, included into global_asm!): identity page
// tables at 0x100000, a flat GDT, serial output, the test-result hypercall, and an IDT
// whose 48 stubs report any vector the guest does not expect.
//
// Hypercalls (VMCALL): rax = 0 putchar(rbx), 1 report(test rbx, status rcx; 0 = pass),
// 2 exit(code rbx). Output goes to COM1 (port 0x3f8) unless a test says otherwise.

    .code64

// ---- Page tables: the first GiB identity-mapped with 2 MiB pages (linker script puts
// this section at 0x100000, the entry CR3).
    .section .pagetables, "aw"
    .balign 4096
    .global guest_pml4
guest_pml4:
    .quad guest_pdpt + 3
    .fill 511, 8, 0
guest_pdpt:
    .quad guest_pd + 3
    .fill 511, 8, 0
guest_pd:
    .set guest_pd_index, 0
    .rept 512
    .quad guest_pd_index * 0x200000 + 0x83
    .set guest_pd_index, guest_pd_index + 1
    .endr

// ---- Flat GDT: 0x08 64-bit code, 0x10 data (accessed bits preset, so loading a
// selector never writes the table).
    .section .data.guest, "aw"
    .balign 16
gdt64:
    .quad 0
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
gdt64_end:
    .balign 8
    .short 0, 0, 0
gdt64_ptr:
    .short gdt64_end - gdt64 - 1
    .quad gdt64
    .short 0, 0, 0
idt64_ptr:
    .short 48 * 16 - 1
    .quad idt64
failures:
    .quad 0
ticks:
    .quad 0
nmis:
    .quad 0
fault_hits:
    .quad 0
expected_vector:
    .quad -1
skip_len:
    .quad 0

    .section .bss.guest, "aw", @nobits
    .balign 16
idt64:
    .skip 48 * 16
    .balign 16
    .skip 16384
stack_top:

    .section .rodata.guest, "a"
msg_ok:
    .asciz " ok\n"
msg_fail:
    .asciz " FAIL\n"
msg_unexpected:
    .asciz "guest: unexpected vector "
msg_at_rip:
    .asciz " at rip "
msg_nmi:
    .asciz "guest: NMI received\n"
msg_newline:
    .asciz "\n"

    .section .text.guest, "ax"

// Enter the flat segments of gdt64; clobbers rax.
load_gdt64:
    lgdt [rip + gdt64_ptr]
    pop rax
    push 0x08
    push rax
    retfq

// Reload DS, ES, SS, FS, GS with the flat data selector; clobbers ax.
load_data_segments:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    ret

// putc: write al to COM1.
putc:
    push rdx
    mov dx, 0x3f8
    out dx, al
    pop rdx
    ret

// puts: write the NUL-terminated string at rsi.
puts:
    push rax
    push rsi
.Lputs_next:
    lodsb
    test al, al
    jz .Lputs_done
    call putc
    jmp .Lputs_next
.Lputs_done:
    pop rsi
    pop rax
    ret

// puthex: write rax as 0x followed by 16 lower-case hex digits.
puthex:
    push rax
    push rcx
    push rdx
    mov rdx, rax
    mov al, 0x30
    call putc
    mov al, 0x78
    call putc
    mov ecx, 16
.Lhex_digit:
    rol rdx, 4
    mov al, dl
    and al, 0x0f
    add al, 0x30
    cmp al, 0x39
    jbe .Lhex_put
    add al, 0x27
.Lhex_put:
    call putc
    dec ecx
    jnz .Lhex_digit
    pop rdx
    pop rcx
    pop rax
    ret

// check: finish the line of test rbx with " ok" (rcx = 0) or " FAIL", after printing the
// name at rsi if rsi is not 0; count failures; report the result by hypercall.
check:
    push rax
    push rsi
    test rsi, rsi
    jz .Lcheck_result
    call puts
.Lcheck_result:
    lea rsi, [rip + msg_ok]
    test rcx, rcx
    jz .Lcheck_print
    lea rsi, [rip + msg_fail]
    inc qword ptr [rip + failures]
.Lcheck_print:
    call puts
    mov eax, 1
    vmcall
    pop rsi
    pop rax
    ret

// guest_exit: stop the VM with exit code rbx; never returns.
guest_exit:
    mov eax, 2
    vmcall
.Lexit_hang:
    cli
    hlt
    jmp .Lexit_hang

// ---- Interrupts: 48 stubs, 16 bytes apart, pushing a dummy error code where the CPU
// pushes none, then the vector.
    .balign 16
isr_stubs:
    .set isr_vector, 0
    .rept 48
    .balign 16
    .if (isr_vector == 8) || ((isr_vector >= 10) && (isr_vector <= 14)) || (isr_vector == 17) || (isr_vector == 21) || (isr_vector == 29) || (isr_vector == 30)
    push isr_vector
    .else
    push 0
    push isr_vector
    .endif
    jmp isr_common
    .set isr_vector, isr_vector + 1
    .endr

// Frame after the nine pushes: vector at +72, error code at +80, RIP at +88.
isr_common:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    mov rax, [rsp + 72]
    cmp rax, 0x20
    je .Lisr_timer
    cmp rax, 2
    je .Lisr_nmi
    cmp rax, [rip + expected_vector]
    jne .Lisr_unexpected
    inc qword ptr [rip + fault_hits]
    mov qword ptr [rip + expected_vector], -1
    mov rcx, [rip + skip_len]
    add [rsp + 88], rcx
    jmp .Lisr_return
.Lisr_timer:
    inc qword ptr [rip + ticks]
    mov al, 0x20
    out 0x20, al
    jmp .Lisr_return
.Lisr_nmi:
    inc qword ptr [rip + nmis]
    lea rsi, [rip + msg_nmi]
    call puts
    jmp .Lisr_return
.Lisr_unexpected:
    lea rsi, [rip + msg_unexpected]
    call puts
    call puthex
    lea rsi, [rip + msg_at_rip]
    call puts
    mov rax, [rsp + 88]
    call puthex
    lea rsi, [rip + msg_newline]
    call puts
    mov ebx, 0xee
    jmp guest_exit
.Lisr_return:
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    add rsp, 16
    iretq

// Fill idt64 with interrupt gates (selector 0x08, DPL 0) to the stubs and load it.
load_idt64:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    lea rdi, [rip + idt64]
    lea rsi, [rip + isr_stubs]
    xor ecx, ecx
.Lidt_entry:
    mov rdx, rsi
    mov eax, edx
    and eax, 0xffff
    mov r8, rdx
    shr r8, 16
    and r8, 0xffff
    shl r8, 48
    or rax, r8
    movabs r8, 0x00008e0000080000
    or rax, r8
    mov [rdi], rax
    mov rax, rdx
    shr rax, 32
    mov [rdi + 8], rax
    add rdi, 16
    add rsi, 16
    inc ecx
    cmp ecx, 48
    jne .Lidt_entry
    lidt [rip + idt64_ptr]
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    ret

// Remap the 8259 pair to vectors 0x20-0x2f with only IRQ0 unmasked, and start PIT
// channel 0 at about 100 Hz (mode 2, divisor 11932).
start_timer:
    push rax
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
    pop rax
    ret

// Mask every PIC line again.
stop_timer:
    push rax
    mov al, 0xff
    out 0x21, al
    pop rax
    ret
