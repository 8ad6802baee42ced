// Shared by the 64-bit guests (Intel syntax, included into global_asm!): identity page
// tables at 0x100000, a flat GDT, serial output, the test-result hypercall, and an IDT
// whose 48 stubs report any vector the guest does not expect.
//
// Hypercalls (VMCALL): rax = 0 putchar(rbx), 1 report(test rbx, status rcx; 0 = pass),
// 2 exit(code rbx). Output goes to the UART at console_port: COM1 (0x3f8) unless the
// guest says otherwise (guest_devices' VM has its UART at COM2).

    .code64

// ---- Page tables: the first GiB identity-mapped with 2 MiB pages (linker script puts
// this section at 0x100000, the entry CR3), user-accessible so ring-3 tests can run; and
// the 2 MiB holding the I/O APIC and the local APIC (0xfec00000-0xfeffffff), uncached.
    .section .pagetables, "aw"
    .balign 4096
    .global guest_pml4
guest_pml4:
    .quad guest_pdpt + 7
    .fill 511, 8, 0
guest_pdpt:
    .quad guest_pd + 7
    .quad 0, 0
    .quad guest_pd_apic + 7
    .fill 508, 8, 0
guest_pd:
    .set guest_pd_index, 0
    .rept 512
    .quad guest_pd_index * 0x200000 + 0x87
    .set guest_pd_index, guest_pd_index + 1
    .endr
guest_pd_apic:
    .fill 502, 8, 0
    .quad 0xfec00000 + 0x9b
    .quad 0xfee00000 + 0x9b
    .fill 8, 8, 0

// ---- Flat GDT: 0x08 64-bit code, 0x10 data, 0x18 ring-3 data, 0x20 ring-3 64-bit code
// (accessed bits preset, so loading a selector never writes the table), 0x28 the TSS
// (filled in by enter_user_setup).
    .section .data.guest, "aw"
    .balign 16
gdt64:
    .quad 0
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
    .quad 0x00cff3000000ffff
    .quad 0x00affb000000ffff
gdt64_tss:
    .quad 0
    .quad 0
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
// The UART's base port, which putc writes.
console_port:
    .short 0x3f8
    .balign 8
ticks:
    .quad 0
nmis:
    .quad 0
fault_hits:
    .quad 0
expected_vector:
    .quad -1
// The APIC tests' vectors (0x28-0x2e): how many arrived, the last, its ISR word (ISR
// bits 63:32) as the handler saw it, and whether the APIC is in x2APIC mode (EOI by MSR).
    .global apic_hits, apic_vector, apic_isr1, apic_x2
apic_hits:
    .quad 0
apic_vector:
    .quad 0
apic_isr1:
    .quad 0
apic_x2:
    .quad 0
skip_len:
    .quad 0

    .section .bss.guest, "aw", @nobits
    .balign 16
idt64:
    .skip 48 * 16
    .balign 16
    .skip 16384
stack_top:
    .balign 16
tss64:
    .skip 104
    .balign 16
    .skip 4096
ring0_entry_stack_top:
    .skip 4096
user_stack_top:
kernel_rsp:
    .skip 8

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

// putc: write al to the UART at console_port.
putc:
    push rdx
    mov dx, word ptr [rip + console_port]
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
    cmp rax, 0x2f
    je user_return
    cmp rax, 0x28
    jb .Lisr_not_apic
    cmp rax, 0x2e
    jbe .Lisr_apic
.Lisr_not_apic:
    cmp rax, [rip + expected_vector]
    jne .Lisr_unexpected
    inc qword ptr [rip + fault_hits]
    mov qword ptr [rip + expected_vector], -1
    mov rcx, [rip + skip_len]
    add [rsp + 88], rcx
    // A #DB from single-stepping: stop stepping once the handler returns.
    cmp rax, 1
    jne .Lisr_return
    and qword ptr [rsp + 104], ~0x100
    jmp .Lisr_return
.Lisr_timer:
    inc qword ptr [rip + ticks]
    mov al, 0x20
    out 0x20, al
    jmp .Lisr_return
.Lisr_apic:
    inc qword ptr [rip + apic_hits]
    mov [rip + apic_vector], rax
    cmp qword ptr [rip + apic_x2], 0
    jne .Lisr_apic_x2
    mov rax, 0xfee00000
    mov ecx, [rax + 0x110]
    mov [rip + apic_isr1], rcx
    mov dword ptr [rax + 0xb0], 0
    jmp .Lisr_return
.Lisr_apic_x2:
    mov ecx, 0x811
    rdmsr
    mov [rip + apic_isr1], rax
    mov ecx, 0x80b
    xor eax, eax
    xor edx, edx
    wrmsr
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

// ---- Ring 3: enter_user_setup loads the TSS (RSP0 for interrupts from ring 3) and lets
// ring 3 use vector 0x2f; run_user runs the ring-3 code at rdi on its own stack with
// interrupts off until that code executes `int 0x2f`, then returns (rbx, rbp, r12-r15
// kept; everything else as ring 3 left it).
enter_user_setup:
    push rax
    push rcx
    push rdx
    lea rax, [rip + ring0_entry_stack_top]
    mov [rip + tss64 + 4], rax
    lea rax, [rip + tss64]
    // Low half: limit 103, base 23:0 in bits 39:16, present 64-bit TSS (0x89), base
    // 31:24 in bits 63:56; high half: base 63:32.
    mov rdx, rax
    and rdx, 0xffffff
    shl rdx, 16
    or rdx, 103
    mov rcx, rax
    shr rcx, 24
    and rcx, 0xff
    shl rcx, 56
    or rdx, rcx
    movabs rcx, 0x0000890000000000
    or rdx, rcx
    mov [rip + gdt64_tss], rdx
    shr rax, 32
    mov [rip + gdt64_tss + 8], rax
    mov ax, 0x28
    ltr ax
    // Gate 0x2f: DPL 3, so ring 3 may raise it.
    mov byte ptr [rip + idt64 + 0x2f * 16 + 5], 0xee
    pop rdx
    pop rcx
    pop rax
    ret

run_user:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + kernel_rsp], rsp
    push 0x1b
    lea rax, [rip + user_stack_top]
    push rax
    pushfq
    and qword ptr [rsp], ~0x200
    push 0x23
    push rdi
    iretq

// Reached from isr_common when ring 3 raised vector 0x2f: drop its frame and return from
// run_user in ring 0.
user_return:
    mov rsp, [rip + kernel_rsp]
    call load_data_segments
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
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
