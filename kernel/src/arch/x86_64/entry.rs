//! Every way into the kernel from ring 3 or from an exception: the 256 interrupt stubs,
//! the `syscall` entry, and the single return path to user mode.
//!
//! A frame from ring 3 is built directly in the current thread's save area (this CPU's
//! current context, whose end is also the TSS's RSP0), then the stub switches to the
//! CPU's kernel stack and calls a safe Rust handler. Returning to user mode always
//! reloads the current context, which the handler may have changed to switch threads.
//! The three come from the CPU's block through GS (`percpu.rs`), swapped in on entry from
//! ring 3 and out on the way back.

use super::percpu;
use crate::context::{CONTEXT_SIZE, SYSCALL_VECTOR};

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
    swapgs
    mov rdi, rsp
    mov rsp, gs:[{kernel_stack}]
    call trap_from_user
    jmp return_to_user
1:  mov rdi, rsp
    call trap_from_kernel
    POP_GPRS
    add rsp, 16
    iretq

    .global syscall_entry
syscall_entry:
    swapgs
    mov gs:[{user_rsp}], rsp
    mov rsp, gs:[{current_context}]
    add rsp, {context_size}
    push {user_ss}
    push qword ptr gs:[{user_rsp}]
    push r11
    push {user_cs}
    push rcx
    push 0
    push {syscall_vector}
    PUSH_GPRS
    mov rdi, rsp
    mov rsp, gs:[{kernel_stack}]
    call syscall_from_user
    .global return_to_user
return_to_user:
    mov rsp, gs:[{current_context}]
    POP_GPRS
    add rsp, 16
    swapgs
    iretq
"#,
    current_context = const percpu::CURRENT_CONTEXT,
    user_rsp = const percpu::USER_RSP,
    kernel_stack = const percpu::KERNEL_STACK,
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
