//! A position-independent program the root task copies into a separate process with its
//! own address space and a CSpace holding one endpoint (slot 1). It probes what it can
//! reach, reports to the root task by calling the endpoint, then serves calls on it
//! (the cross-address-space IPC benchmarks: a call with label 0 gets a plain reply, which
//! the fastpath handles; any other label gets a reply with the grant flag, which the
//! fastpath leaves to the general path).
//!
//! It reports `[DebugWrite status on the root task's boot-information page, Send status
//! on its empty slot 4]`, which isolation makes `[BadUserPointer, InvalidCapability]`.

use protocols::bootinfo::BOOTINFO_ADDR;
use protocols::syscall::Syscall;

/// The program's bytes.
pub fn code() -> &'static [u8] {
    crate::process::code_between!(isolated_start, isolated_end)
}

core::arch::global_asm!(
    r#"
    .section .text.isolated, "ax"
    .global isolated_start
    .global isolated_end
isolated_start:
    mov eax, {debug_write}
    mov rdi, {bootinfo}
    mov esi, 8
    syscall
    mov r14, rax
    mov eax, {send}
    mov edi, 4
    xor esi, esi
    syscall
    mov r15, rax
    mov eax, {call}
    mov edi, 1
    mov esi, (1 << 12) | 2
    mov rdx, r14
    mov r10, r15
    syscall
    mov eax, {recv}
    mov edi, 1
    syscall
2:
    mov rax, rsi
    shr rax, 12
    mov esi, 1
    test rax, rax
    jz 3f
    mov esi, 9
3:
    mov eax, {reply_recv}
    mov edi, 1
    syscall
    jmp 2b
isolated_end:
"#,
    debug_write = const Syscall::DebugWrite as u64,
    send = const Syscall::Send as u64,
    call = const Syscall::Call as u64,
    recv = const Syscall::Recv as u64,
    reply_recv = const Syscall::ReplyRecv as u64,
    bootinfo = const BOOTINFO_ADDR,
);
