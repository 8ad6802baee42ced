//! `guest_controls`: a 64-bit guest (`GuestMode::Long64`, like `guest64`) that checks the
//! VT-x controls a VMM sets for it and that must change what exits and what the guest
//! sees: I/O-bitmap pass-through, RDTSC exiting and the TSC offset, CR3-load exiting
//! and CR3-target values, the exception bitmap with the #PF error-code mask and match,
//! NMI injection, and MSRs the kernel switches on entry and exit (VM-entry MSR-load,
//! VM-exit MSR-store and MSR-load). It asks the VMM by hypercall to set each control and
//! to say how many exits of a reason it served (`vmm_server::hypercall`: 3 exit count,
//! 4 inject NMI, 5 RDTSC exiting, 6 TSC offset, 7 CR3 targets, 8 exception bitmap), and
//! reports each result by hypercall like the other guests.
//!
//! What the VMM must provide beyond `guest64`'s: the VCpu's pass-through of port 0x80
//! (the manifest's `pass_ports`; every other port exits), the kernel's switching of
//! IA32_LSTAR (the VMM asks for it at start), the test hypercalls, and the reflection of
//! intercepted exceptions. Guest memory above 1 GiB is unmapped in its page tables, so
//! touching 0x4000_0000 page-faults with error code 2 (write) or 0 (read).
//!
//! Expected serial output under Bochs (`corei7_skylake_x`), exactly:
//! ```text
//! guest_controls: hello from 64-bit long mode
//! guest_controls: out to passed-through port 0x80 stays in the guest ok
//! guest_controls: out to port 0x81 exits to the vmm ok
//! guest_controls: rdtsc exiting returns the vmm's values ok
//! guest_controls: tsc offset 2^40 shows in rdtsc ok
//! guest_controls: mov to cr3 exits with cr3-load exiting ok
//! guest_controls: mov to cr3 of a cr3-target value stays in the guest ok
//! guest_controls: mov to cr3 of another value exits ok
//! guest_controls: int3 exits (exception bitmap) and is reflected ok
//! guest_controls: read #pf (error code not matching) stays in the guest ok
//! guest_controls: write #pf (error code matching) exits, reflected with cr2 ok
//! guest: NMI received
//! guest_controls: nmi injected by the vmm ok
//! guest_controls: wrmsr/rdmsr lstar stay in the guest ok
//! guest_controls: lstar survives exits (msr store and loads) ok
//! guest_controls: done
//! ```
//! and exit code 0. A failed test prints ` FAIL` instead of ` ok`; an unexpected
//! exception prints `guest: unexpected vector 0x... at rip 0x...` and exits with 0xee.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../common/long64.s"));

core::arch::global_asm!(
    r#"
    .set EXIT_EXCEPTION, 0
    .set EXIT_RDTSC, 16
    .set EXIT_CR_ACCESS, 28
    .set EXIT_IO, 30
    .set EXIT_RDMSR, 31
    .set EXIT_WRMSR, 32
    .set HC_EXIT_COUNT, 3
    .set HC_INJECT_NMI, 4
    .set HC_RDTSC_EXITING, 5
    .set HC_TSC_OFFSET, 6
    .set HC_CR3_TARGETS, 7
    .set HC_EXCEPTION_BITMAP, 8
    .set IA32_LSTAR, 0xc0000082

    .section .rodata.guest, "a"
gc_hello:       .asciz "guest_controls: hello from 64-bit long mode\n"
gc_io_pass:     .asciz "guest_controls: out to passed-through port 0x80 stays in the guest"
gc_io_exit:     .asciz "guest_controls: out to port 0x81 exits to the vmm"
gc_rdtsc:       .asciz "guest_controls: rdtsc exiting returns the vmm's values"
gc_offset:      .asciz "guest_controls: tsc offset 2^40 shows in rdtsc"
gc_cr3_exit:    .asciz "guest_controls: mov to cr3 exits with cr3-load exiting"
gc_cr3_target:  .asciz "guest_controls: mov to cr3 of a cr3-target value stays in the guest"
gc_cr3_other:   .asciz "guest_controls: mov to cr3 of another value exits"
gc_bp:          .asciz "guest_controls: int3 exits (exception bitmap) and is reflected"
gc_pf_read:     .asciz "guest_controls: read #pf (error code not matching) stays in the guest"
gc_pf_write:    .asciz "guest_controls: write #pf (error code matching) exits, reflected with cr2"
gc_nmi:         .asciz "guest_controls: nmi injected by the vmm"
gc_msr:         .asciz "guest_controls: wrmsr/rdmsr lstar stay in the guest"
gc_msr_kept:    .asciz "guest_controls: lstar survives exits (msr store and loads)"
gc_done:        .asciz "guest_controls: done\n"

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + stack_top]
    call load_gdt64
    call load_data_segments
    call load_idt64
    lea rsi, [rip + gc_hello]
    call puts

    // 1, 2: OUT to port 0x80, which the VMM passed through, does not exit; OUT to its
    // neighbour 0x81 does (the VMM ignores the write).
    mov ebx, EXIT_IO
    call exit_count
    mov r12, rax
    mov al, 0x55
    out 0x80, al
    mov ebx, EXIT_IO
    call exit_count
    mov r13, rax
    mov al, 0x55
    out 0x81, al
    mov ebx, EXIT_IO
    call exit_count
    mov r14, rax
    xor ecx, ecx
    cmp r13, r12
    setne cl
    mov ebx, 1
    lea rsi, [rip + gc_io_pass]
    call check
    lea rax, [r13 + 1]
    xor ecx, ecx
    cmp r14, rax
    setne cl
    mov ebx, 2
    lea rsi, [rip + gc_io_exit]
    call check

    // 3: with RDTSC exiting, RDTSC returns the VMM's value, then one more, each an exit.
    mov ebx, EXIT_RDTSC
    call exit_count
    mov r12, rax
    mov eax, HC_RDTSC_EXITING
    mov ebx, 1
    movabs rcx, 0x1122334455667788
    vmcall
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r13, rax
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov eax, HC_RDTSC_EXITING
    xor ebx, ebx
    vmcall
    mov ebx, EXIT_RDTSC
    call exit_count
    xor ecx, ecx
    sub rax, r12
    cmp rax, 2
    setne cl
    movabs rax, 0x1122334455667788
    cmp r13, rax
    setne al
    or cl, al
    movabs rax, 0x1122334455667789
    cmp r14, rax
    setne al
    or cl, al
    mov ebx, 3
    lea rsi, [rip + gc_rdtsc]
    call check

    // 4: a TSC offset of 2^40 shows in the next RDTSC (the call itself takes well under
    // 2^32 ticks).
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r12, rax
    mov eax, HC_TSC_OFFSET
    movabs rbx, 0x10000000000
    vmcall
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r12
    movabs rdx, 0x10000000000
    sub rax, rdx
    xor ecx, ecx
    shr rax, 32
    setnz cl
    mov ebx, 4
    lea rsi, [rip + gc_offset]
    call check

    // 5-7: with CR3-load exiting, MOV to CR3 exits, unless the value is a CR3-target
    // value. The same tables with PWT set (bit 3) are another value.
    mov eax, HC_CR3_TARGETS
    mov ebx, 1
    xor ecx, ecx
    vmcall
    mov r15, cr3
    mov ebx, EXIT_CR_ACCESS
    call exit_count
    mov r12, rax
    mov cr3, r15
    mov ebx, EXIT_CR_ACCESS
    call exit_count
    mov r13, rax
    lea rax, [r12 + 1]
    xor ecx, ecx
    cmp r13, rax
    setne cl
    mov ebx, 5
    lea rsi, [rip + gc_cr3_exit]
    call check
    mov eax, HC_CR3_TARGETS
    mov ebx, 1
    mov ecx, 1
    mov rdx, r15
    vmcall
    mov ebx, EXIT_CR_ACCESS
    call exit_count
    mov r12, rax
    mov cr3, r15
    mov ebx, EXIT_CR_ACCESS
    call exit_count
    xor ecx, ecx
    cmp rax, r12
    setne cl
    mov ebx, 6
    lea rsi, [rip + gc_cr3_target]
    call check
    mov ebx, EXIT_CR_ACCESS
    call exit_count
    mov r12, rax
    lea rax, [r15 + 8]
    mov cr3, rax
    mov cr3, r15
    mov ebx, EXIT_CR_ACCESS
    call exit_count
    lea rdx, [r12 + 1]
    xor ecx, ecx
    cmp rax, rdx
    setne cl
    mov rax, cr3
    cmp rax, r15
    setne al
    or cl, al
    mov ebx, 7
    lea rsi, [rip + gc_cr3_other]
    call check

    // 8: with #BP in the exception bitmap, INT3 exits; the VMM reflects it to the
    // guest's handler.
    mov eax, HC_EXCEPTION_BITMAP
    mov ebx, 1 << 3
    xor ecx, ecx
    xor edx, edx
    vmcall
    mov ebx, EXIT_EXCEPTION
    call exit_count
    mov r12, rax
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 0
    mov qword ptr [rip + expected_vector], 3
    int3
    mov ebx, EXIT_EXCEPTION
    call exit_count
    lea rdx, [r12 + 1]
    xor ecx, ecx
    cmp rax, rdx
    setne cl
    mov rax, [rip + fault_hits]
    xor rax, 1
    or rcx, rax
    mov ebx, 8
    lea rsi, [rip + gc_bp]
    call check

    // 9, 10: #PF in the bitmap with error-code mask = match = 2 (W): a read fault
    // (error code 0) goes straight to the guest's handler, a write fault (2) exits and
    // the VMM reflects it; the kernel then gives the guest CR2 = the faulting address
    // (the read fault left 0x40001000 there).
    mov eax, HC_EXCEPTION_BITMAP
    mov ebx, 1 << 14
    mov ecx, 2
    mov edx, 2
    vmcall
    mov ebx, EXIT_EXCEPTION
    call exit_count
    mov r12, rax
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 2
    mov qword ptr [rip + expected_vector], 14
    mov eax, 0x40001000
    mov cl, [rax]
    mov ebx, EXIT_EXCEPTION
    call exit_count
    mov r13, rax
    xor ecx, ecx
    cmp r13, r12
    setne cl
    mov rax, [rip + fault_hits]
    xor rax, 1
    or rcx, rax
    mov ebx, 9
    lea rsi, [rip + gc_pf_read]
    call check
    mov qword ptr [rip + fault_hits], 0
    mov qword ptr [rip + skip_len], 2
    mov qword ptr [rip + expected_vector], 14
    mov eax, 0x40000000
    mov [rax], cl
    mov r14, cr2
    mov ebx, EXIT_EXCEPTION
    call exit_count
    lea rdx, [r13 + 1]
    xor ecx, ecx
    cmp rax, rdx
    setne cl
    mov rax, [rip + fault_hits]
    xor rax, 1
    or rcx, rax
    cmp r14, 0x40000000
    setne al
    or cl, al
    mov ebx, 10
    lea rsi, [rip + gc_pf_write]
    call check
    mov eax, HC_EXCEPTION_BITMAP
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    vmcall

    // 11: the VMM injects an NMI as the hypercall returns; the handler counts it.
    mov qword ptr [rip + nmis], 0
    mov eax, HC_INJECT_NMI
    vmcall
    mov rcx, [rip + nmis]
    xor rcx, 1
    mov ebx, 11
    lea rsi, [rip + gc_nmi]
    call check

    // 12: IA32_LSTAR, which the kernel switches, is read and written without exits.
    mov ebx, EXIT_WRMSR
    call exit_count
    mov r12, rax
    mov ebx, EXIT_RDMSR
    call exit_count
    mov r13, rax
    movabs r15, 0xffff800012345678
    mov ecx, IA32_LSTAR
    mov rax, r15
    mov rdx, r15
    shr rdx, 32
    wrmsr
    xor eax, eax
    xor edx, edx
    rdmsr
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov ebx, EXIT_WRMSR
    call exit_count
    xor ecx, ecx
    cmp rax, r12
    setne cl
    mov ebx, EXIT_RDMSR
    call exit_count
    cmp rax, r13
    setne al
    or cl, al
    cmp r14, r15
    setne al
    or cl, al
    mov ebx, 12
    lea rsi, [rip + gc_msr]
    call check

    // 13: after many exits (the line just printed; a CPUID) the guest still reads its
    // own value: each exit stored it and loaded the kernel's, each entry loaded it back.
    // The VMM made system calls between them, on the kernel's LSTAR.
    xor eax, eax
    cpuid
    mov ecx, IA32_LSTAR
    rdmsr
    shl rdx, 32
    or rax, rdx
    xor ecx, ecx
    cmp rax, r15
    setne cl
    mov ebx, 13
    lea rsi, [rip + gc_msr_kept]
    call check

    lea rsi, [rip + gc_done]
    call puts
    mov rbx, [rip + failures]
    jmp guest_exit

// exit_count: rax = how many exits of basic reason rbx the VMM has served.
exit_count:
    mov eax, HC_EXIT_COUNT
    vmcall
    ret
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
