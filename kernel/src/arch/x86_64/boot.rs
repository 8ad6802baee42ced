//! The Multiboot2 header and the 32-bit entry that switches to long mode.
//!
//! GRUB enters `_start` in 32-bit protected mode without paging. The stub builds
//! temporary page tables (the first GiB identity-mapped and mirrored at the kernel's
//! higher-half base), enables long mode and jumps to `kernel_entry` in Rust, which then
//! replaces these tables with its own.

core::arch::global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long 0xe85250d6
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - 0xe85250d6 - (mb2_header_end - mb2_header)
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .boot.data, "aw"
    .balign 4096
    .global boot_pml4
boot_pml4:      .fill 4096, 1, 0
boot_pdpt_low:  .fill 4096, 1, 0
boot_pdpt_high: .fill 4096, 1, 0
boot_pd:        .fill 4096, 1, 0
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_ptr:
    .short boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt
boot_magic: .long 0
boot_info:  .long 0
boot_nx:    .long 0
no_lm_msg:  .ascii "kernel: this CPU has no 64-bit long mode; halting\r\n\0"

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl %eax, boot_magic
    movl %ebx, boot_info

    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb 9f
    movl $0x80000001, %eax
    cpuid
    testl $(1 << 29), %edx
    jz 9f
    andl $(1 << 20), %edx
    movl %edx, boot_nx

    movl $boot_pdpt_low + 3, boot_pml4
    movl $boot_pdpt_high + 3, boot_pml4 + 511 * 8
    movl $boot_pd + 3, boot_pdpt_low
    movl $boot_pd + 3, boot_pdpt_high + 510 * 8
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl $0xc0000080, %ecx
    rdmsr
    orl $(1 << 8), %eax
    cmpl $0, boot_nx
    je 2f
    orl $(1 << 11), %eax
2:  wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $3f

9:  movl $no_lm_msg, %esi
    movw $0x3f8, %dx
8:  lodsb
    testb %al, %al
    jz 7f
    outb %al, %dx
    jmp 8b
7:  cli
    hlt
    jmp 7b

    .code64
3:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $kernel_stack_top, %rsp
    movl boot_magic, %edi
    movl boot_info, %esi
    movabsq $kernel_entry, %rax
    callq *%rax
6:  cli
    hlt
    jmp 6b
"#,
    options(att_syntax)
);
