//! The world switch: VMLAUNCH/VMRESUME into the guest and the landing point of every VM
//! exit, in one assembly stub.
//!
//! The stub is a function to its caller: `vmx_vm_enter` saves the host's callee-saved
//! registers, records the stack pointer in the VMCS's HOST_RSP (so an exit lands on this
//! very frame, whatever the caller's stack depth), loads the guest's GPRs from a
//! [`Gprs`] save area (the VCpu's own, slot 4 unused: RSP is VMCS state) and enters the
//! guest. A VM exit arrives at `vmx_exit_landing`
//! (the VMCS's HOST_RIP, see [`host_rip`]) with the guest's GPRs still live: the landing
//! stores them back into the same save area, restores the host registers and returns 0
//! from `vmx_vm_enter`. If VMLAUNCH/VMRESUME (or the HOST_RSP VMWRITE) fails, execution
//! falls through instead, and the stub returns RFLAGS, whose CF/ZF tell VMfailInvalid
//! from VMfailValid ([`super::vmx_insn::entry_failure`]); RFLAGS bit 1 is always set, so
//! that value is never 0.
//!
//! A VM entry that fails its guest-state checks is not a VMfail: the CPU performs a VM
//! exit with bit 31 of the exit reason set, so the caller reads the exit reason after
//! every successful return.
//!
//! What the CPU does not switch and the kernel must know about (SDM 28.5): on exit RFLAGS
//! is 0x2 (interrupts off), GDTR/IDTR limits are 0xffff and TR's limit is 0x67, and the
//! x87/SSE registers, CR2, DR0-DR6, XCR0 and the SYSCALL MSRs are left as the guest had
//! them. The kernel is soft-float and never touches x87/SSE, so guest FPU state only has to
//! be swapped with the current user thread's around the entry ([`enter_with_fpu`]).

use super::fpu;
use super::vmx_insn::{entry_failure, VmxError, VmxRoot};
use kernel::tcb::FpuArea;
use protocols::vmcs::Field;
use protocols::vmexit::Gprs;

/// Byte offset of GPR `n` in a [`Gprs`] (register-number order, the exit message's):
/// the stub loads and stores the guest's registers in the VCpu's own copy, in place.
const fn gpr(n: u8) -> usize {
    8 * n as usize
}

extern "C" {
    /// Enter the guest of the current VMCS: VMLAUNCH if `launched` is 0, else VMRESUME.
    /// Returns 0 after a VM exit (guest GPRs saved in `*gprs`), or RFLAGS if the entry
    /// instruction or the HOST_RSP VMWRITE failed.
    fn vmx_vm_enter(gprs: *mut Gprs, launched: u64) -> u64;
    /// Where VM exits land; never called, only its address is used.
    fn vmx_exit_landing();
}

core::arch::global_asm!(
    r#"
    .section .text.vmx_vm_enter, "ax"
    .global vmx_vm_enter
vmx_vm_enter:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, {host_rsp}
    vmwrite rax, rsp
    jbe 2f
    test rsi, rsi
    mov rax, [rdi + {rax}]
    mov rcx, [rdi + {rcx}]
    mov rdx, [rdi + {rdx}]
    mov rbx, [rdi + {rbx}]
    mov rbp, [rdi + {rbp}]
    mov rsi, [rdi + {rsi}]
    mov r8, [rdi + {r8}]
    mov r9, [rdi + {r9}]
    mov r10, [rdi + {r10}]
    mov r11, [rdi + {r11}]
    mov r12, [rdi + {r12}]
    mov r13, [rdi + {r13}]
    mov r14, [rdi + {r14}]
    mov r15, [rdi + {r15}]
    mov rdi, [rdi + {rdi}]
    jnz 3f
    vmlaunch
    jmp 2f
3:  vmresume
2:  pushfq
    pop rax
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global vmx_exit_landing
vmx_exit_landing:
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + {rax}], rax
    mov [rdi + {rcx}], rcx
    mov [rdi + {rdx}], rdx
    mov [rdi + {rbx}], rbx
    mov [rdi + {rbp}], rbp
    mov [rdi + {rsi}], rsi
    mov [rdi + {r8}], r8
    mov [rdi + {r9}], r9
    mov [rdi + {r10}], r10
    mov [rdi + {r11}], r11
    mov [rdi + {r12}], r12
    mov [rdi + {r13}], r13
    mov [rdi + {r14}], r14
    mov [rdi + {r15}], r15
    pop qword ptr [rdi + {rdi}]
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    xor eax, eax
    ret
"#,
    host_rsp = const Field::HostRsp as u32,
    rax = const gpr(Gprs::RAX),
    rcx = const gpr(Gprs::RCX),
    rdx = const gpr(Gprs::RDX),
    rbx = const gpr(Gprs::RBX),
    rbp = const gpr(Gprs::RBP),
    rsi = const gpr(Gprs::RSI),
    rdi = const gpr(Gprs::RDI),
    r8 = const gpr(Gprs::R8),
    r9 = const gpr(9),
    r10 = const gpr(10),
    r11 = const gpr(11),
    r12 = const gpr(12),
    r13 = const gpr(13),
    r14 = const gpr(14),
    r15 = const gpr(15),
);

/// The value for [`Field::HostRip`]: the stub's exit landing.
pub fn host_rip() -> u64 {
    let landing: unsafe extern "C" fn() = vmx_exit_landing;
    landing as usize as u64
}

/// Run the guest of the current VMCS until its next VM exit. `launched` says whether this
/// VMCS has been launched since its last VMCLEAR (the caller sets it after the first
/// `Ok`). On `Ok` the guest's GPRs are in `gprs` and the exit information in the VMCS
/// (check the exit reason's bit 31 for a failed entry). On `Err` the guest did not run.
///
/// # Safety
/// The current VMCS was set up by `kernel::vmx::vmcs_setup::initial_vmcs` (or later
/// validated writes) with HOST_RIP = [`host_rip`] and the host state of this CPU as it is
/// now (CR3, GDT, IDT, TSS, segment selectors); interrupts are disabled.
pub unsafe fn enter(root: &VmxRoot, gprs: &mut Gprs, launched: bool) -> Result<(), VmxError> {
    // SAFETY: the caller vouches for the VMCS's host state, so the exit returns into the
    // stub's frame with the kernel's address space; the stub only reads and writes `gprs`.
    let status = unsafe { vmx_vm_enter(gprs, u64::from(launched)) };
    if status == 0 {
        Ok(())
    } else {
        Err(entry_failure(root, status))
    }
}

/// [`enter`] with the guest's x87/SSE state swapped in: the current user thread's state is
/// saved into `user`, the guest's loaded from `guest`, and after the exit the reverse.
///
/// # Safety
/// As for [`enter`]; `guest` holds state from [`FpuArea::default`] or a previous save,
/// and CR0.TS is clear.
#[allow(dead_code, reason = "vcpu_run swaps FPU state through the thread code instead")]
pub unsafe fn enter_with_fpu(
    root: &VmxRoot,
    gprs: &mut Gprs,
    launched: bool,
    guest: &mut FpuArea,
    user: &mut FpuArea,
) -> Result<(), VmxError> {
    fpu::save(user);
    fpu::restore(guest);
    // SAFETY: the caller's guarantees for `enter` are passed through unchanged.
    let result = unsafe { enter(root, gprs, launched) };
    fpu::save(guest);
    fpu::restore(user);
    result
}
