//! Every way into the kernel from ring 3 or from an exception: the 256 interrupt stubs,
//! the `syscall` entry, and the single return path to user mode.
//!
//! A frame from ring 3 is built directly in the current thread's save area
//! (`CURRENT_CONTEXT`, whose end is also the TSS's RSP0), then the stub switches to the
//! kernel stack and calls a safe Rust handler. Returning to user mode always reloads
//! `CURRENT_CONTEXT`, which the handler may have changed to switch threads.

use crate::context::{CONTEXT_SIZE, SYSCALL_VECTOR};
use core::sync::atomic::AtomicU64;

/// Address of the current thread's `UserContext`; read by the stubs.
#[no_mangle]
pub static CURRENT_CONTEXT: AtomicU64 = AtomicU64::new(0);

/// Scratch slot for the user stack pointer during `syscall` entry (one CPU, interrupts
/// off, so one slot suffices).
#[no_mangle]
static SYSCALL_USER_RSP: AtomicU64 = AtomicU64::new(0);

/// Size of each interrupt stub; the IDT is filled from `isr_stubs + vector * ISR_STUB_SIZE`.
pub const ISR_STUB_SIZE: u64 = 16;

extern "C" {
    /// The first of the 256 interrupt stubs.
    pub fn isr_stubs();
    /// The `syscall` entry point (IA32_LSTAR).
    pub fn syscall_entry();
    /// Load the current thread's frame and `iretq` to it.
    pub fn return_to_user() -> !;
}

core::arch::global_asm!(
    r#"
    .section .text
    .macro PUSH_GPRS
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    .endm

    .macro POP_GPRS
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    .endm


    .global isr_common
isr_common:
    PUSH_GPRS
    test byte ptr [rsp + 18 * 8], 3
    jz 1f
    mov rdi, rsp
    lea rsp, [rip + kernel_stack_top]
    call trap_from_user
    jmp return_to_user
1:  mov rdi, rsp
    call trap_from_kernel
    POP_GPRS
    add rsp, 16
    iretq

    .global syscall_entry
syscall_entry:
    mov [rip + SYSCALL_USER_RSP], rsp
    mov rsp, [rip + CURRENT_CONTEXT]
    add rsp, {context_size}
    push {user_ss}
    push qword ptr [rip + SYSCALL_USER_RSP]
    push r11
    push {user_cs}
    push rcx
    push 0
    push {syscall_vector}
    PUSH_GPRS
    mov rdi, rsp
    lea rsp, [rip + kernel_stack_top]
    call syscall_from_user
    .global return_to_user
return_to_user:
    mov rsp, [rip + CURRENT_CONTEXT]
    POP_GPRS
    add rsp, 16
    iretq
"#,
    context_size = const CONTEXT_SIZE,
    user_ss = const crate::context::USER_SS,
    user_cs = const crate::context::USER_CS,
    syscall_vector = const SYSCALL_VECTOR,
);

// The 256 stubs, each ISR_STUB_SIZE bytes: push a zero error code where the CPU pushes
// none, push the vector, and join the common path.
core::arch::global_asm!(
    r#"
    .section .text
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    pushq $vector
    .else
    pushq $0
    pushq $vector
    .endif
    jmp isr_common
    .set vector, vector + 1
    .endr
"#,
    options(att_syntax)
);
