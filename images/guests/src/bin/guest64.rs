//! `guest64`: a 64-bit guest entered directly in IA-32e mode (`GuestMode::Long64`, CR3 =
//! 0x100000, RIP = the ELF entry point), exercising the VT-x features of issue 4 one
//! test at a time. Each test prints one line on COM1 and reports its result by hypercall
//! (VMCALL rax = 1, rbx = test number, rcx = 0 for pass); the guest ends with VMCALL
//! rax = 2, rbx = the number of failed tests (0 = all passed).
//!
//! What the VMM must provide: guest RAM at 0-2 MiB (the image is at 1-2 MiB), the 16550
//! at 0x3f8, the 8259 pair and the 8254 (for the HLT test), 256 bytes of scratch
//! registers by MMIO at 0x3fe00000 that read back what was written (a test-modes VMM's
//! `devices::scratch`, for the MMIO tests 23-30), a local APIC with x2APIC and the
//! TSC-deadline timer (tests 31-35, vectors 0x28-0x2e), HLT, MONITOR and MWAIT
//! exiting (MWAIT with interrupts off would otherwise sleep for good), and #GP injection
//! for a missing MSR. Exiting on RDTSC, INVLPG, CR3 loads and the exception bitmap is
//! optional: the results are the same either way, which is the point (the VMM's
//! exit handlers must be invisible to the guest).
//!
//! Expected serial output under Bochs (`corei7_skylake_x`), exactly:
//! ```text
//! guest64: hello from 64-bit long mode
//! guest64: cpuid vendor GenuineIntel ok
//! guest64: cpuid.1 hides vmx ok
//! guest64: cpuid hypervisor leaf CapVMMCapVMM ok
//! guest64: in from the uart lsr ok
//! guest64: rep outsb string i/o ok
//! guest64: vmcall putchar ok
//! guest64: rdtsc monotonic ok
//! guest64: cr0=0x0000000080010033 cr4=0x0000000000000020
//! guest64: cr0/cr4 read shadows hide vmxe ok
//! guest64: mov to cr4 (osfxsr) ok
//! guest64: mov to cr3 ok
//! guest64: mov to/from cr8 ok
//! guest64: invlpg ok
//! guest64: monitor/mwait ok
//! guest64: int3 -> #BP handled ok
//! guest64: ud2 -> #UD handled ok
//! guest64: rdmsr IA32_MISC_ENABLE ok
//! guest64: wrmsr/rdmsr IA32_SYSENTER_ESP ok
//! guest64: rdmsr of a missing MSR -> #GP ok
//! guest64: hlt woken by PIT irq0 (vector 0x20) ok
//! guest64: #db intercepted and reflected ok
//! guest64: #ac intercepted and reflected ok
//! guest64: ring-3 vmcall refused ok
//! guest64: mmio stores: mov of every width from registers and immediates ok
//! guest64: mmio loads: mov, movzx, movsx, movsxd and their extension rules ok
//! guest64: mmio absolute, 32-bit, moffs and scaled-index addressing ok
//! guest64: mmio load whose instruction crosses a page ok
//! guest64: mmio access past the device reads all ones ok
//! guest64: mmio add, or, and, sub, xor, cmp, test and their flags ok
//! guest64: mmio xchg and lock add ok
//! guest64: mmio rep stos and rep movs to, from and within the device ok
//! guest64: apic base, id, version, virtual-wire lint0 and tpr as firmware leaves them ok
//! guest64: apic self-ipi by icr: pending in irr, in service in the handler, eoi ok
//! guest64: apic one-shot timer wakes hlt ok
//! guest64: apic tpr and cr8 hold back a lower priority class ok
//! guest64: x2apic by msr: id, version, self ipi and the tsc-deadline timer ok
//! guest64: mmio rep movs from an unmapped page: #pf with cr2, the elements before it done ok
//! guest64: done
//! ```
//! and exit code 0. A failed test prints ` FAIL` instead of ` ok`; an exception the guest
//! did not expect prints `guest: unexpected vector 0x... at rip 0x...` and exits with
//! code 0xee. If the VMM injects an NMI, `guest: NMI received` appears and the run goes on.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../common/long64.s"));

core::arch::global_asm!(
    r#"
    .section .rodata.guest, "a"
g64_hello:      .asciz "guest64: hello from 64-bit long mode\n"
g64_vendor:     .asciz "guest64: cpuid vendor "
g64_vmx:        .asciz "guest64: cpuid.1 hides vmx"
g64_hv:         .asciz "guest64: cpuid hypervisor leaf "
g64_in:         .asciz "guest64: in from the uart lsr"
g64_outsb:      .ascii "guest64: rep outsb string i/o"
g64_outsb_end:
g64_putchar:    .asciz "guest64: vmcall putchar"
g64_rdtsc:      .asciz "guest64: rdtsc monotonic"
g64_cr0:        .asciz "guest64: cr0="
g64_cr4:        .asciz " cr4="
g64_shadow:     .asciz "guest64: cr0/cr4 read shadows hide vmxe"
g64_cr4w:       .asciz "guest64: mov to cr4 (osfxsr)"
g64_cr3:        .asciz "guest64: mov to cr3"
g64_cr8:        .asciz "guest64: mov to/from cr8"
g64_invlpg:     .asciz "guest64: invlpg"
g64_mwait:      .asciz "guest64: monitor/mwait"
g64_bp:         .asciz "guest64: int3 -> #BP handled"
g64_ud:         .asciz "guest64: ud2 -> #UD handled"
g64_misc:       .asciz "guest64: rdmsr IA32_MISC_ENABLE"
g64_sysenter:   .asciz "guest64: wrmsr/rdmsr IA32_SYSENTER_ESP"
g64_gp:         .asciz "guest64: rdmsr of a missing MSR -> #GP"
g64_hlt:        .asciz "guest64: hlt woken by PIT irq0 (vector 0x20)"
g64_db:         .asciz "guest64: #db intercepted and reflected"
g64_ac:         .asciz "guest64: #ac intercepted and reflected"
g64_vmcall3:    .asciz "guest64: ring-3 vmcall refused"
g64_mmio_st:    .asciz "guest64: mmio stores: mov of every width from registers and immediates"
g64_mmio_ld:    .asciz "guest64: mmio loads: mov, movzx, movsx, movsxd and their extension rules"
g64_mmio_addr:  .asciz "guest64: mmio absolute, 32-bit, moffs and scaled-index addressing"
g64_mmio_cross: .asciz "guest64: mmio load whose instruction crosses a page"
g64_mmio_past:  .asciz "guest64: mmio access past the device reads all ones"
g64_mmio_alu:   .asciz "guest64: mmio add, or, and, sub, xor, cmp, test and their flags"
g64_mmio_xchg:  .asciz "guest64: mmio xchg and lock add"
g64_mmio_str:   .asciz "guest64: mmio rep stos and rep movs to, from and within the device"
g64_mmio_pat:   .quad 0x0807060504030201
g64_apic_regs:  .asciz "guest64: apic base, id, version, virtual-wire lint0 and tpr as firmware leaves them"
g64_apic_ipi:   .asciz "guest64: apic self-ipi by icr: pending in irr, in service in the handler, eoi"
g64_apic_timer: .asciz "guest64: apic one-shot timer wakes hlt"
g64_apic_tpr:   .asciz "guest64: apic tpr and cr8 hold back a lower priority class"
g64_x2apic:     .asciz "guest64: x2apic by msr: id, version, self ipi and the tsc-deadline timer"
g64_mmio_pf:    .asciz "guest64: mmio rep movs from an unmapped page: #pf with cr2, the elements before it done"
g64_done:       .asciz "guest64: done\n"

    .section .bss.guest, "aw", @nobits
    .balign 64
g64_text:       .skip 16
g64_monitor:    .skip 64
g64_user_rax:   .skip 8
g64_aligned:    .skip 16

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + stack_top]
    call load_gdt64
    call load_data_segments
    call load_idt64
    lea rsi, [rip + g64_hello]
    call puts

    // 1: CPUID leaf 0 names the vendor and has leaf 1.
    xor eax, eax
    xor ecx, ecx
    cpuid
    mov [rip + g64_text], ebx
    mov [rip + g64_text + 4], edx
    mov [rip + g64_text + 8], ecx
    mov byte ptr [rip + g64_text + 12], 0
    lea rsi, [rip + g64_vendor]
    call puts
    lea rsi, [rip + g64_text]
    call puts
    xor ecx, ecx
    cmp eax, 1
    setb cl
    mov ebx, 1
    xor esi, esi
    call check

    // 2: CPUID.1:ECX.VMX (bit 5) is hidden from the guest.
    mov eax, 1
    xor ecx, ecx
    cpuid
    shr ecx, 5
    and ecx, 1
    mov ebx, 2
    lea rsi, [rip + g64_vmx]
    call check

    // 3: the hypervisor leaf 0x40000000 carries the VMM's signature.
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    mov [rip + g64_text], ebx
    mov [rip + g64_text + 4], ecx
    mov [rip + g64_text + 8], edx
    mov byte ptr [rip + g64_text + 12], 0
    lea rsi, [rip + g64_hv]
    call puts
    lea rsi, [rip + g64_text]
    call puts
    xor ecx, ecx
    cmp eax, 0x40000000
    setb cl
    mov ebx, 3
    xor esi, esi
    call check

    // 4: IN from the UART's line-status register: THR empty (bit 5).
    mov dx, 0x3fd
    in al, dx
    xor ecx, ecx
    test al, 0x20
    setz cl
    mov ebx, 4
    lea rsi, [rip + g64_in]
    call check

    // 5: string output, one REP OUTSB the VMM emulates through the guest's page tables.
    lea rsi, [rip + g64_outsb]
    lea rcx, [rip + g64_outsb_end]
    sub rcx, rsi
    mov dx, 0x3f8
    cld
    rep outsb
    xor ecx, ecx
    mov ebx, 5
    xor esi, esi
    call check

    // 6: the putchar hypercall; every call must return status 0.
    lea rdi, [rip + g64_putchar]
    xor r12d, r12d
.Lg64_putchar_next:
    movzx ebx, byte ptr [rdi]
    test ebx, ebx
    jz .Lg64_putchar_done
    xor eax, eax
    vmcall
    or r12, rax
    inc rdi
    jmp .Lg64_putchar_next
.Lg64_putchar_done:
    xor ecx, ecx
    test r12, r12
    setnz cl
    mov ebx, 6
    xor esi, esi
    call check

    // 7: RDTSC never goes backwards (with or without RDTSC exiting and a TSC offset).
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r12, rax
    rdtsc
    shl rdx, 32
    or rax, rdx
    xor ecx, ecx
    cmp rax, r12
    setb cl
    mov ebx, 7
    lea rsi, [rip + g64_rdtsc]
    call check

    // 8: CR0 and CR4 as the read shadows show them: a 64-bit CPU without VMXE.
    lea rsi, [rip + g64_cr0]
    call puts
    mov rax, cr0
    mov r12, rax
    call puthex
    lea rsi, [rip + g64_cr4]
    call puts
    mov rax, cr4
    mov r13, rax
    call puthex
    lea rsi, [rip + msg_newline]
    call puts
    xor ecx, ecx
    bt r13, 13
    adc ecx, 0
    bt r12, 31
    jc .Lg64_pg_ok
    or ecx, 2
.Lg64_pg_ok:
    mov ebx, 8
    lea rsi, [rip + g64_shadow]
    call check

    // 9: MOV to CR4 of guest-owned bits (OSFXSR, OSXMMEXCPT) reads back.
    mov rax, cr4
    or rax, 0x600
    mov cr4, rax
    mov rax, cr4
    and eax, 0x600
    xor ecx, ecx
    cmp eax, 0x600
    setne cl
    mov ebx, 9
    lea rsi, [rip + g64_cr4w]
    call check

    // 10: MOV to CR3 (CR3-load exiting when the VMM asks for it) keeps the mapping.
    mov rax, cr3
    mov r12, rax
    mov cr3, rax
    mov rax, cr3
    xor ecx, ecx
    cmp rax, r12
    setne cl
    mov ebx, 10
    lea rsi, [rip + g64_cr3]
    call check

    // 11: MOV to and from CR8 (the TPR), which always exits under the kernel's policy.
    mov eax, 5
    mov cr8, rax
    mov rax, cr8
    xor ecx, ecx
    cmp rax, 5
    setne cl
    xor eax, eax
    mov cr8, rax
    mov ebx, 11
    lea rsi, [rip + g64_cr8]
    call check

    // 12: INVLPG.
    invlpg [rip + g64_text]
    xor ecx, ecx
    mov ebx, 12
    lea rsi, [rip + g64_invlpg]
    call check

    // 13: MONITOR then MWAIT (both exit; the VMM treats MWAIT as a NOP).
    lea rax, [rip + g64_monitor]
    xor ecx, ecx
    xor edx, edx
    monitor
    xor eax, eax
    xor ecx, ecx
    mwait
    xor ecx, ecx
    mov ebx, 13
    lea rsi, [rip + g64_mwait]
    call check

    // 14: INT3 reaches the guest's #BP handler (directly, or reflected by the VMM if the
    // exception bitmap intercepts it); a trap, so nothing to skip.
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 0
    mov qword ptr [rip + expected_vector], 3
    int3
    mov rcx, [rip + fault_hits]
    xor rcx, 1
    mov ebx, 14
    lea rsi, [rip + g64_bp]
    call check

    // 15: UD2 reaches the #UD handler, which skips the two-byte instruction.
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 2
    mov qword ptr [rip + expected_vector], 6
    ud2
    mov rcx, [rip + fault_hits]
    xor rcx, 1
    mov ebx, 15
    lea rsi, [rip + g64_ud]
    call check

    // 16: RDMSR of an MSR the VMM emulates: IA32_MISC_ENABLE has fast strings (bit 0).
    mov ecx, 0x1a0
    rdmsr
    mov ecx, eax
    and ecx, 1
    xor ecx, 1
    mov ebx, 16
    lea rsi, [rip + g64_misc]
    call check

    // 17: WRMSR then RDMSR of IA32_SYSENTER_ESP (guest state in the VMCS).
    mov ecx, 0x175
    mov eax, 0x12345678
    xor edx, edx
    wrmsr
    xor eax, eax
    rdmsr
    xor ecx, ecx
    cmp eax, 0x12345678
    setne cl
    mov ebx, 17
    lea rsi, [rip + g64_sysenter]
    call check

    // 18: RDMSR of an MSR nobody implements: the VMM injects #GP, the handler skips it.
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 2
    mov qword ptr [rip + expected_vector], 13
    mov ecx, 0x00012345
    rdmsr
    mov rcx, [rip + fault_hits]
    xor rcx, 1
    mov ebx, 18
    lea rsi, [rip + g64_gp]
    call check

    // 19: HLT with interrupts on wakes on the PIT's IRQ0, injected by the VMM as vector
    // 0x20 (HLT exiting, interrupt-window exiting, event injection).
    mov qword ptr [rip + ticks], 0
    call start_timer
    mov r12d, 1000
.Lg64_hlt_again:
    sti
    hlt
    cli
    cmp qword ptr [rip + ticks], 0
    jne .Lg64_hlt_woken
    dec r12d
    jnz .Lg64_hlt_again
.Lg64_hlt_woken:
    call stop_timer
    xor ecx, ecx
    cmp qword ptr [rip + ticks], 0
    sete cl
    mov ebx, 19
    lea rsi, [rip + g64_hlt]
    call check

    // 20: single-stepping raises #DB, which the kernel always intercepts; the VMM
    // reflects it, and DR6 (the VMM's, MOV DR exits) says it was a single step (BS).
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 0
    mov qword ptr [rip + expected_vector], 1
    pushfq
    or qword ptr [rsp], 0x100
    popfq
    nop
    xor ecx, ecx
    cmp qword ptr [rip + fault_hits], 1
    setne cl
    mov rax, dr6
    bt rax, 14
    jc .Lg64_db_bs
    or ecx, 2
.Lg64_db_bs:
    xor eax, eax
    mov dr6, rax
    mov ebx, 20
    lea rsi, [rip + g64_db]
    call check

    // 21 and 22 run in ring 3: a misaligned load with CR0.AM and RFLAGS.AC raises #AC,
    // always intercepted and reflected (the handler skips the 3-byte load); a VMCALL of
    // EXIT from ring 3 must be refused with STATUS_DENIED (-2) and stop nothing.
    call enter_user_setup
    mov rax, cr0
    bts rax, 18
    mov cr0, rax
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 3
    mov qword ptr [rip + expected_vector], 17
    lea rdi, [rip + g64_user_code]
    call run_user
    mov rax, cr0
    btr rax, 18
    mov cr0, rax
    mov rcx, [rip + fault_hits]
    xor rcx, 1
    mov ebx, 21
    lea rsi, [rip + g64_ac]
    call check
    xor ecx, ecx
    cmp qword ptr [rip + g64_user_rax], -2
    setne cl
    mov ebx, 22
    lea rsi, [rip + g64_vmcall3]
    call check

    // 23-27: MMIO on the scratch registers at 0x3fe00000 (no RAM there: every access is
    // an EPT violation the VMM decodes and emulates). Each check keeps its first failing
    // step's number in ecx (0: all passed).
    .set G64_SCRATCH, 0x3fe00000

    // 23: stores of every width, from registers (including AH) and immediates (an imm32
    // sign-extended to 64 bits), read back through RAM-side compares in test 24.
    mov rbx, G64_SCRATCH
    mov byte ptr [rbx], 0x81
    mov word ptr [rbx + 2], 0x8382
    mov dword ptr [rbx + 4], 0x87868584
    mov rax, 0x8f8e8d8c8b8a8988
    mov [rbx + 8], rax
    mov qword ptr [rbx + 16], -2
    mov r10d, 0x11223344
    mov [rbx + 24], r10d
    mov r11w, 0x5566
    mov [rbx + 28], r11w
    mov dl, 0x77
    mov [rbx + 30], dl
    mov ah, 0x99
    mov [rbx + 31], ah
    mov r9, 0x0123456789abcdef
    mov [rbx + 32], r9
    mov r15b, 0xab
    mov [rbx + 40], r15b
    // Every stored byte, read back by 8-byte loads (themselves MMIO).
    xor ecx, ecx
    mov rdx, 0x8786858483820081
    mov rax, [rbx]
    cmp rax, rdx
    jne .Lg64_mmio_st_1
    mov rdx, 0x8f8e8d8c8b8a8988
    mov rax, [rbx + 8]
    cmp rax, rdx
    jne .Lg64_mmio_st_2
    mov rax, [rbx + 16]
    cmp rax, -2
    jne .Lg64_mmio_st_3
    mov rdx, 0x9977556611223344
    mov rax, [rbx + 24]
    cmp rax, rdx
    jne .Lg64_mmio_st_4
    mov rdx, 0x0123456789abcdef
    mov rax, [rbx + 32]
    cmp rax, rdx
    jne .Lg64_mmio_st_5
    movzx eax, byte ptr [rbx + 40]
    cmp eax, 0xab
    jne .Lg64_mmio_st_6
    jmp .Lg64_mmio_st_done
.Lg64_mmio_st_6: inc ecx
.Lg64_mmio_st_5: inc ecx
.Lg64_mmio_st_4: inc ecx
.Lg64_mmio_st_3: inc ecx
.Lg64_mmio_st_2: inc ecx
.Lg64_mmio_st_1: inc ecx
.Lg64_mmio_st_done:
    mov ebx, 23
    lea rsi, [rip + g64_mmio_st]
    call check

    // 24: loads and their extension rules: 8 and 16-bit destinations keep the rest of
    // the register, 32-bit ones clear bits 63:32, MOVZX/MOVSX/MOVSXD widen.
    mov rbx, G64_SCRATCH
    xor ecx, ecx
    mov rax, -1
    movzx eax, byte ptr [rbx]
    cmp rax, 0x81
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov rax, 0
    movsx rax, byte ptr [rbx]
    cmp rax, -0x7f
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov rax, -1
    movsx eax, word ptr [rbx + 2]
    mov rdx, 0xffff8382
    cmp rax, rdx
    jne .Lg64_mmio_ld_fail
    inc ecx
    movsxd rax, dword ptr [rbx + 4]
    mov rdx, 0xffffffff87868584
    cmp rax, rdx
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov rax, -1
    mov eax, [rbx + 8]
    mov rdx, 0x8b8a8988
    cmp rax, rdx
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov rax, -1
    mov ax, [rbx + 2]
    cmp rax, -0x7c7e
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov rax, -1
    mov al, [rbx + 30]
    cmp rax, -0x89
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov rax, -1
    mov ah, [rbx + 31]
    cmp rax, -0x6601
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov r12, -1
    movzx r12d, word ptr [rbx + 28]
    cmp r12, 0x5566
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov r13, -1
    movsx r13w, byte ptr [rbx + 40]
    cmp r13, -0x55
    jne .Lg64_mmio_ld_fail
    inc ecx
    mov rax, -1
    mov eax, [rbx + 0x80]
    test rax, rax
    jnz .Lg64_mmio_ld_fail
    xor ecx, ecx
    jmp .Lg64_mmio_ld_done
.Lg64_mmio_ld_fail:
    inc ecx
.Lg64_mmio_ld_done:
    mov ebx, 24
    lea rsi, [rip + g64_mmio_ld]
    call check

    // 25: the same registers through other address forms: a 32-bit absolute address
    // (SIB without base), a 32-bit address size (0x67), 64-bit moffs loads and stores
    // (MOV EAX, [imm64] and back) and base + index * scale.
    xor ecx, ecx
    mov eax, dword ptr [G64_SCRATCH + 4]
    cmp eax, 0x87868584
    jne .Lg64_mmio_addr_1
    mov ebx, G64_SCRATCH
    mov eax, dword ptr [ebx + 24]
    cmp eax, 0x11223344
    jne .Lg64_mmio_addr_2
    movabs eax, dword ptr [G64_SCRATCH + 8]
    cmp eax, 0x8b8a8988
    jne .Lg64_mmio_addr_3
    mov rbx, G64_SCRATCH
    mov esi, 4
    mov eax, [rbx + rsi * 8]
    cmp eax, 0x89abcdef
    jne .Lg64_mmio_addr_4
    movabs dword ptr [G64_SCRATCH + 0x44], eax
    mov eax, [rbx + 0x44]
    cmp eax, 0x89abcdef
    jne .Lg64_mmio_addr_5
    jmp .Lg64_mmio_addr_done
.Lg64_mmio_addr_5: inc ecx
.Lg64_mmio_addr_4: inc ecx
.Lg64_mmio_addr_3: inc ecx
.Lg64_mmio_addr_2: inc ecx
.Lg64_mmio_addr_1: inc ecx
.Lg64_mmio_addr_done:
    mov ebx, 25
    lea rsi, [rip + g64_mmio_addr]
    call check

    // 26: a load whose 3 instruction bytes straddle a 4 KiB page boundary: the VMM
    // fetches across it.
    mov rbx, G64_SCRATCH
    mov rax, -1
    call g64_cross_page_load
    xor ecx, ecx
    mov rdx, 0x87868584
    cmp rax, rdx
    setne cl
    mov ebx, 26
    lea rsi, [rip + g64_mmio_cross]
    call check

    // 27: a 4-byte load that starts in the last 2 bytes of the device and ends past it
    // hits no device whole: it reads all ones, as an undriven bus does.
    mov rbx, G64_SCRATCH
    mov word ptr [rbx + 0xfe], 0x1234
    mov rax, 0
    mov eax, [rbx + 0xfe]
    xor ecx, ecx
    cmp eax, -1
    setne cl
    mov ebx, 27
    lea rsi, [rip + g64_mmio_past]
    call check

    // 28: ALU instructions with the device as destination or source: each result, and
    // the flags the VMM computes for it (CF, ZF, SF tested right after each).
    mov rbx, G64_SCRATCH
    xor ecx, ecx
    mov dword ptr [rbx + 0x50], 0x0f
    add dword ptr [rbx + 0x50], 1
    jc .Lg64_mmio_alu_fail
    inc ecx
    cmp dword ptr [rbx + 0x50], 0x10
    jne .Lg64_mmio_alu_fail
    inc ecx
    or byte ptr [rbx + 0x50], 0x81
    jns .Lg64_mmio_alu_fail
    inc ecx
    and word ptr [rbx + 0x50], 0xf0
    cmp dword ptr [rbx + 0x50], 0x90
    jne .Lg64_mmio_alu_fail
    inc ecx
    sub dword ptr [rbx + 0x50], 0x91
    jnc .Lg64_mmio_alu_fail
    inc ecx
    cmp dword ptr [rbx + 0x50], -1
    jne .Lg64_mmio_alu_fail
    inc ecx
    xor dword ptr [rbx + 0x50], -1
    jnz .Lg64_mmio_alu_fail
    inc ecx
    mov eax, 5
    add eax, [rbx + 0x50]
    cmp eax, 5
    jne .Lg64_mmio_alu_fail
    inc ecx
    mov byte ptr [rbx + 0x50], 0x40
    test byte ptr [rbx + 0x50], 0x40
    jz .Lg64_mmio_alu_fail
    inc ecx
    mov edx, 0x41
    sub edx, [rbx + 0x50]
    cmp edx, 1
    jne .Lg64_mmio_alu_fail
    xor ecx, ecx
    jmp .Lg64_mmio_alu_done
.Lg64_mmio_alu_fail:
    inc ecx
.Lg64_mmio_alu_done:
    mov ebx, 28
    lea rsi, [rip + g64_mmio_alu]
    call check

    // 29: XCHG swaps a register with the device; LOCK ADD is a read and a write.
    mov rbx, G64_SCRATCH
    xor ecx, ecx
    mov dword ptr [rbx + 0x58], 0x11111111
    mov eax, 0x22222222
    xchg [rbx + 0x58], eax
    cmp eax, 0x11111111
    jne .Lg64_mmio_xchg_fail
    inc ecx
    lock add dword ptr [rbx + 0x58], 1
    cmp dword ptr [rbx + 0x58], 0x22222223
    jne .Lg64_mmio_xchg_fail
    xor ecx, ecx
    jmp .Lg64_mmio_xchg_done
.Lg64_mmio_xchg_fail:
    inc ecx
.Lg64_mmio_xchg_done:
    mov ebx, 29
    lea rsi, [rip + g64_mmio_xchg]
    call check

    // 30: REP STOSD fills device registers; REP MOVSB copies them to RAM, copies RAM to
    // the device, and (backwards, DF set) within the device; RCX, RSI, RDI end where
    // the CPU would leave them.
    mov rbx, G64_SCRATCH
    xor r12d, r12d
    cld
    lea rdi, [rbx + 0x60]
    mov eax, 0xa5a5a5a5
    mov ecx, 4
    rep stosd
    lea rdx, [rbx + 0x70]
    cmp rdi, rdx
    jne .Lg64_mmio_str_fail
    inc r12d
    lea rsi, [rbx + 0x60]
    lea rdi, [rip + g64_text]
    mov ecx, 16
    rep movsb
    test ecx, ecx
    jnz .Lg64_mmio_str_fail
    inc r12d
    mov rax, 0xa5a5a5a5a5a5a5a5
    cmp [rip + g64_text + 8], rax
    jne .Lg64_mmio_str_fail
    inc r12d
    lea rsi, [rip + g64_mmio_pat]
    lea rdi, [rbx + 0x90]
    mov ecx, 8
    rep movsb
    mov rax, [rip + g64_mmio_pat]
    cmp [rbx + 0x90], rax
    jne .Lg64_mmio_str_fail
    inc r12d
    std
    lea rsi, [rbx + 0x97]
    lea rdi, [rbx + 0xa7]
    mov ecx, 8
    rep movsb
    cld
    lea rdx, [rbx + 0x9f]
    cmp rdi, rdx
    jne .Lg64_mmio_str_fail
    inc r12d
    mov rax, [rip + g64_mmio_pat]
    cmp [rbx + 0xa0], rax
    jne .Lg64_mmio_str_fail
    xor r12d, r12d
    jmp .Lg64_mmio_str_done
.Lg64_mmio_str_fail:
    cld
    inc r12d
.Lg64_mmio_str_done:
    mov ecx, r12d
    mov ebx, 30
    lea rsi, [rip + g64_mmio_str]
    call check

    // 31: the local APIC as firmware leaves it: IA32_APIC_BASE at 0xfee00000, enabled,
    // bootstrap processor; ID 0; version 0x14 with seven LVT entries; LINT0 in ExtINT
    // mode, level (the 8259's virtual wire); TPR writable.
    .set G64_APIC, 0xfee00000
    xor r12d, r12d
    mov ecx, 0x1b
    rdmsr
    cmp eax, 0xfee00900
    jne .Lg64_apic_regs_fail
    inc r12d
    mov rbx, G64_APIC
    mov eax, [rbx + 0x20]
    test eax, eax
    jnz .Lg64_apic_regs_fail
    inc r12d
    mov eax, [rbx + 0x30]
    and eax, 0x00ff00ff
    cmp eax, 0x00060014
    jne .Lg64_apic_regs_fail
    inc r12d
    mov eax, [rbx + 0x350]
    cmp eax, 0x8700
    jne .Lg64_apic_regs_fail
    inc r12d
    mov dword ptr [rbx + 0x80], 0x20
    mov eax, [rbx + 0x80]
    cmp eax, 0x20
    jne .Lg64_apic_regs_fail
    mov dword ptr [rbx + 0x80], 0
    xor r12d, r12d
    jmp .Lg64_apic_regs_done
.Lg64_apic_regs_fail:
    inc r12d
.Lg64_apic_regs_done:
    mov ecx, r12d
    mov ebx, 31
    lea rsi, [rip + g64_apic_regs]
    call check

    // 32: a fixed self-IPI (shorthand self, vector 0x28) with interrupts off waits in IRR;
    // once they are on it is delivered, in service (ISR) while its handler runs, and the
    // handler's EOI clears it.
    mov rbx, G64_APIC
    xor r12d, r12d
    mov qword ptr [rip + apic_hits], 0
    mov dword ptr [rbx + 0x300], 0x40028
    mov eax, [rbx + 0x210]
    test eax, 0x100
    jz .Lg64_apic_ipi_fail
    inc r12d
    sti
    nop
    cli
    cmp qword ptr [rip + apic_hits], 1
    jne .Lg64_apic_ipi_fail
    inc r12d
    cmp qword ptr [rip + apic_vector], 0x28
    jne .Lg64_apic_ipi_fail
    inc r12d
    mov rax, [rip + apic_isr1]
    test eax, 0x100
    jz .Lg64_apic_ipi_fail
    inc r12d
    mov eax, [rbx + 0x110]
    test eax, eax
    jnz .Lg64_apic_ipi_fail
    xor r12d, r12d
    jmp .Lg64_apic_ipi_done
.Lg64_apic_ipi_fail:
    inc r12d
.Lg64_apic_ipi_done:
    mov ecx, r12d
    mov ebx, 32
    lea rsi, [rip + g64_apic_ipi]
    call check

    // 33: the LVT timer in one-shot mode (divide by 1, vector 0x29) wakes a HLT; the
    // count has run out and the initial count stays.
    mov rbx, G64_APIC
    xor r12d, r12d
    mov qword ptr [rip + apic_hits], 0
    mov dword ptr [rbx + 0x3e0], 0xb
    mov dword ptr [rbx + 0x320], 0x29
    mov dword ptr [rbx + 0x380], 1000000
    mov r13d, 1000
.Lg64_apic_timer_again:
    sti
    hlt
    cli
    cmp qword ptr [rip + apic_hits], 0
    jne .Lg64_apic_timer_woken
    dec r13d
    jnz .Lg64_apic_timer_again
.Lg64_apic_timer_woken:
    cmp qword ptr [rip + apic_hits], 1
    jne .Lg64_apic_timer_fail
    inc r12d
    cmp qword ptr [rip + apic_vector], 0x29
    jne .Lg64_apic_timer_fail
    inc r12d
    mov eax, [rbx + 0x390]
    test eax, eax
    jnz .Lg64_apic_timer_fail
    inc r12d
    mov eax, [rbx + 0x380]
    cmp eax, 1000000
    jne .Lg64_apic_timer_fail
    xor r12d, r12d
    jmp .Lg64_apic_timer_done
.Lg64_apic_timer_fail:
    inc r12d
.Lg64_apic_timer_done:
    mov dword ptr [rbx + 0x320], 0x10029
    mov ecx, r12d
    mov ebx, 33
    lea rsi, [rip + g64_apic_timer]
    call check

    // 34: CR8 is the TPR's class: at 2 a self-IPI of vector 0x2a (class 2) waits, and
    // the PPR says why; lowering CR8 to 0 lets it in.
    mov rbx, G64_APIC
    xor r12d, r12d
    mov qword ptr [rip + apic_hits], 0
    mov eax, 2
    mov cr8, rax
    mov eax, [rbx + 0x80]
    cmp eax, 0x20
    jne .Lg64_apic_tpr_fail
    inc r12d
    mov dword ptr [rbx + 0x300], 0x4002a
    sti
    nop
    cli
    cmp qword ptr [rip + apic_hits], 0
    jne .Lg64_apic_tpr_fail
    inc r12d
    mov eax, [rbx + 0xa0]
    cmp eax, 0x20
    jne .Lg64_apic_tpr_fail
    inc r12d
    xor eax, eax
    mov cr8, rax
    sti
    nop
    cli
    cmp qword ptr [rip + apic_hits], 1
    jne .Lg64_apic_tpr_fail
    inc r12d
    cmp qword ptr [rip + apic_vector], 0x2a
    jne .Lg64_apic_tpr_fail
    xor r12d, r12d
    jmp .Lg64_apic_tpr_done
.Lg64_apic_tpr_fail:
    xor eax, eax
    mov cr8, rax
    inc r12d
.Lg64_apic_tpr_done:
    mov ecx, r12d
    mov ebx, 34
    lea rsi, [rip + g64_apic_tpr]
    call check

    // 35: x2APIC mode (IA32_APIC_BASE EXTD): the ID and version by MSR, a self-IPI by
    // the SELF IPI MSR (vector 0x2b), and the TSC-deadline timer (vector 0x2c) waking a
    // HLT; EOIs by MSR. Then back to xAPIC through the disabled state, which resets the
    // registers, and the page answers again.
    xor r12d, r12d
    mov ecx, 0x1b
    rdmsr
    or eax, 0xc00
    wrmsr
    mov qword ptr [rip + apic_x2], 1
    mov ecx, 0x802
    rdmsr
    test eax, eax
    jnz .Lg64_x2apic_fail
    inc r12d
    mov ecx, 0x803
    rdmsr
    and eax, 0x00ff00ff
    cmp eax, 0x00060014
    jne .Lg64_x2apic_fail
    inc r12d
    mov qword ptr [rip + apic_hits], 0
    mov ecx, 0x83f
    mov eax, 0x2b
    xor edx, edx
    wrmsr
    sti
    nop
    cli
    cmp qword ptr [rip + apic_vector], 0x2b
    jne .Lg64_x2apic_fail
    inc r12d
    mov qword ptr [rip + apic_hits], 0
    mov ecx, 0x832
    mov eax, 0x4002c
    xor edx, edx
    wrmsr
    rdtsc
    shl rdx, 32
    or rax, rdx
    add rax, 2000000
    mov rdx, rax
    shr rdx, 32
    mov ecx, 0x6e0
    wrmsr
    mov r13d, 1000
.Lg64_x2apic_again:
    sti
    hlt
    cli
    cmp qword ptr [rip + apic_hits], 0
    jne .Lg64_x2apic_woken
    dec r13d
    jnz .Lg64_x2apic_again
.Lg64_x2apic_woken:
    cmp qword ptr [rip + apic_vector], 0x2c
    jne .Lg64_x2apic_fail
    inc r12d
    mov ecx, 0x1b
    rdmsr
    and eax, ~0xc00
    wrmsr
    or eax, 0x800
    wrmsr
    mov qword ptr [rip + apic_x2], 0
    mov rbx, G64_APIC
    mov eax, [rbx + 0x30]
    and eax, 0x00ff00ff
    cmp eax, 0x00060014
    jne .Lg64_x2apic_fail
    xor r12d, r12d
    jmp .Lg64_x2apic_done
.Lg64_x2apic_fail:
    mov qword ptr [rip + apic_x2], 0
    inc r12d
.Lg64_x2apic_done:
    mov ecx, r12d
    mov ebx, 35
    lea rsi, [rip + g64_x2apic]
    call check

    // 36: a REP MOVSB from RAM into the device that runs into a page the guest's tables
    // do not map (the 2 MiB at 0x200000, unmapped for the test): the two bytes before it
    // reach the device, then a #PF (not present, a read) with CR2 at the first byte it
    // could not read, and RCX, RSI and RDI where the fault left them.
    xor r12d, r12d
    mov qword ptr [rip + guest_pd + 8], 0
    invlpg [0x200000]
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 2
    mov qword ptr [rip + expected_vector], 14
    mov rbx, G64_SCRATCH
    mov dword ptr [rbx + 0xb0], 0
    mov esi, 0x1ffffe
    lea rdi, [rbx + 0xb0]
    mov ecx, 4
    cld
    rep movsb
    mov r13, cr2
    cmp qword ptr [rip + fault_hits], 1
    jne .Lg64_mmio_pf_fail
    inc r12d
    cmp r13, 0x200000
    jne .Lg64_mmio_pf_fail
    inc r12d
    cmp ecx, 2
    jne .Lg64_mmio_pf_fail
    inc r12d
    cmp esi, 0x200000
    jne .Lg64_mmio_pf_fail
    inc r12d
    mov ax, [0x1ffffe]
    cmp ax, [rbx + 0xb0]
    jne .Lg64_mmio_pf_fail
    inc r12d
    cmp word ptr [rbx + 0xb2], 0
    jne .Lg64_mmio_pf_fail
    xor r12d, r12d
    jmp .Lg64_mmio_pf_done
.Lg64_mmio_pf_fail:
    inc r12d
.Lg64_mmio_pf_done:
    mov qword ptr [rip + expected_vector], -1
    mov rax, 0x200000 + 0x87
    mov [rip + guest_pd + 8], rax
    invlpg [0x200000]
    mov ecx, r12d
    mov ebx, 36
    lea rsi, [rip + g64_mmio_pf]
    call check

    lea rsi, [rip + g64_done]
    call puts
    mov rbx, [rip + failures]
    jmp guest_exit

// MOV EAX, [RBX + 4] (8b 43 04) placed so that its last byte is on the next page.
    .balign 4096
    .skip 4094, 0xcc
g64_cross_page_load:
    mov eax, [rbx + 4]
    ret

// Ring 3 (run_user): #AC, then the EXIT hypercall, then back to ring 0.
g64_user_code:
    pushfq
    or qword ptr [rsp], 0x40000
    popfq
    lea rdx, [rip + g64_aligned]
    mov eax, [rdx + 1]
    pushfq
    and qword ptr [rsp], ~0x40000
    popfq
    mov eax, 2
    mov ebx, 0x77
    vmcall
    mov [rip + g64_user_rax], rax
    int 0x2f
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
