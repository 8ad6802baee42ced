//! `guest_real`: a real-mode guest (`GuestMode::Real`, needs unrestricted guest), loaded
//! at linear 0x1000 and entered at 0000:1000. It prints through OUT to COM1, runs CPUID
//! (32-bit registers work in real mode), checks that CR0 reads back with PE and PG clear,
//! reports each test by VMCALL (eax = 1, ebx = test, ecx = 0 for pass) and ends with
//! VMCALL eax = 2, ebx = the number of failed tests. It never touches the IVT, so the VMM
//! needs no interrupt controller for it; guest RAM must cover 0-64 KiB.
//!
//! Expected serial output under Bochs (`corei7_skylake_x`), exactly:
//! ```text
//! guest_real: hello from real mode
//! guest_real: cpuid vendor GenuineIntel ok
//! guest_real: cr0=0x60000010 (PE and PG clear) ok
//! guest_real: done
//! ```
//! and exit code 0. On a CPU without unrestricted guest (`corei5_lynnfield_750`,
//! `core2_penryn_t9600`) the kernel refuses the VCpu with "real-mode guest needs
//! unrestricted guest, which this CPU lacks" and nothing is printed by the guest.
#![no_std]
#![no_main]

core::arch::global_asm!(
    r#"
    .code16

    .section .data.guest, "aw"
gr_failures:
    .long 0

    .section .bss.guest, "aw", @nobits
    .balign 16
gr_text:
    .skip 16
    .skip 2048
gr_stack_top:

    .section .rodata.guest, "a"
gr_hello:   .asciz "guest_real: hello from real mode\n"
gr_vendor:  .asciz "guest_real: cpuid vendor "
gr_cr0:     .asciz "guest_real: cr0="
gr_cr0_end: .asciz " (PE and PG clear)"
gr_done:    .asciz "guest_real: done\n"
gr_ok:      .asciz " ok\n"
gr_fail:    .asciz " FAIL\n"

    .section .text.guest, "ax"
    .global _start
_start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, offset gr_stack_top
    cld
    mov si, offset gr_hello
    call gr_puts

    // 1: CPUID leaf 0.
    xor eax, eax
    xor ecx, ecx
    cpuid
    mov dword ptr [gr_text], ebx
    mov dword ptr [gr_text + 4], edx
    mov dword ptr [gr_text + 8], ecx
    mov byte ptr [gr_text + 12], 0
    mov si, offset gr_vendor
    call gr_puts
    mov si, offset gr_text
    call gr_puts
    xor ecx, ecx
    cmp eax, 1
    setb cl
    mov ebx, 1
    call gr_check

    // 2: CR0 through its read shadow: real mode, PE = PG = 0.
    mov si, offset gr_cr0
    call gr_puts
    mov eax, cr0
    call gr_puthex32
    mov si, offset gr_cr0_end
    call gr_puts
    xor ecx, ecx
    test eax, 0x80000001
    setnz cl
    mov ebx, 2
    call gr_check

    mov si, offset gr_done
    call gr_puts
    mov ebx, dword ptr [gr_failures]
    mov eax, 2
    vmcall
.Lgr_hang:
    cli
    hlt
    jmp .Lgr_hang

// gr_puts: write the NUL-terminated string at ds:si to COM1.
gr_puts:
    push ax
    push dx
    push si
    mov dx, 0x3f8
.Lgr_puts_next:
    lodsb
    test al, al
    jz .Lgr_puts_done
    out dx, al
    jmp .Lgr_puts_next
.Lgr_puts_done:
    pop si
    pop dx
    pop ax
    ret

// gr_puthex32: write eax as 0x followed by 8 hex digits.
gr_puthex32:
    push eax
    push ebx
    push ecx
    push edx
    mov ebx, eax
    mov dx, 0x3f8
    mov al, 0x30
    out dx, al
    mov al, 0x78
    out dx, al
    mov cx, 8
.Lgr_hex_digit:
    rol ebx, 4
    mov al, bl
    and al, 0x0f
    add al, 0x30
    cmp al, 0x39
    jbe .Lgr_hex_put
    add al, 0x27
.Lgr_hex_put:
    out dx, al
    dec cx
    jnz .Lgr_hex_digit
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

// gr_check: finish the line with " ok" (ecx = 0) or " FAIL"; report test ebx.
gr_check:
    push eax
    push si
    mov si, offset gr_ok
    test ecx, ecx
    jz .Lgr_check_print
    mov si, offset gr_fail
    inc dword ptr [gr_failures]
.Lgr_check_print:
    call gr_puts
    mov eax, 1
    vmcall
    pop si
    pop eax
    ret

    .code64
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
