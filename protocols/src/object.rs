//! Kernel object types and the invocation labels of `Call` on a kernel-object capability.
//!
//! A `Call` whose capability names a kernel object (not an endpoint) is an invocation:
//! the message label selects the operation and the message words are its arguments,
//! seL4-style. Each operation's words are listed on its label.

/// A kernel object type, as passed to `Untyped::Retype`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// Untyped memory (a smaller untyped carved from a larger one).
    Untyped = 0,
    /// A capability node of `2^size_bits` slots.
    CNode = 1,
    /// A thread control block.
    Tcb = 2,
    /// A synchronous IPC endpoint.
    Endpoint = 3,
    /// An asynchronous notification word.
    Notification = 4,
    /// A 4 KiB page of memory.
    Frame = 5,
    /// An address space (a PML4 and the page tables below it).
    VSpace = 6,
    /// A virtual CPU: a schedulable context that runs a guest (VMCS, guest registers).
    /// Retyping one fails with `NotSupported` where VT-x is absent.
    VCpu = 7,
    /// A guest-physical address space (an EPT hierarchy and its table pool).
    GuestSpace = 8,
    /// A reply object: holds one caller whose reply a server has put aside
    /// (`ReplySave`), so the server can take other calls and answer this one later by
    /// `Send` on the reply capability.
    Reply = 9,
    /// A 2 MiB page of memory (a large frame), aligned to 2 MiB: the frame invocations
    /// take it as they take a 4 KiB one and map it with one 2 MiB leaf, so guest RAM
    /// costs one capability per 2 MiB.
    LargeFrame = 10,
}

impl ObjectType {
    /// Decode a raw type; `None` for an unknown one.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            0 => Self::Untyped,
            1 => Self::CNode,
            2 => Self::Tcb,
            3 => Self::Endpoint,
            4 => Self::Notification,
            5 => Self::Frame,
            6 => Self::VSpace,
            7 => Self::VCpu,
            8 => Self::GuestSpace,
            9 => Self::Reply,
            10 => Self::LargeFrame,
            _ => return None,
        })
    }
}

/// What a `Call` on a kernel-object capability does (the message label).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Untyped: `[type, size_bits, first destination slot, count]`; the new capabilities
    /// land in the caller's CSpace root.
    UntypedRetype = 1,
    /// CNode: `[source slot, destination slot, rights]`: copy with rights narrowed. The
    /// source is a slot of the caller's CSpace, the destination a slot of this CNode.
    CNodeCopy = 2,
    /// CNode: `[source slot, destination slot, rights, badge]`: copy with a badge set
    /// (endpoint and notification capabilities whose badge is still 0).
    CNodeMint = 3,
    /// CNode: `[source slot, destination slot]`: move from the caller's CSpace into
    /// this CNode.
    CNodeMove = 4,
    /// CNode: `[slot]`: delete the capability.
    CNodeDelete = 5,
    /// CNode: `[slot]`: delete every capability derived from it.
    CNodeRevoke = 6,
    /// TCB: `[cspace slot, vspace slot, fault endpoint slot or u64::MAX]`.
    TcbConfigure = 7,
    /// TCB: `[rip, rsp, rdi]`: set the start registers.
    TcbWriteRegisters = 8,
    /// TCB: `[]`: make the thread runnable.
    TcbResume = 9,
    /// TCB: `[]`: stop the thread.
    TcbSuspend = 10,
    /// TCB: `[priority]`: at most the caller's own priority.
    TcbSetPriority = 11,
    /// Frame: `[vspace slot, vaddr, rights]`: map it (read always; write and execute if
    /// both the capability and `rights` allow; never write and execute together). A large
    /// frame maps as one 2 MiB page: `vaddr` must be 2 MiB aligned, and no page table
    /// may exist for that 2 MiB yet.
    FrameMap = 12,
    /// Frame: `[]`: unmap it.
    FrameUnmap = 13,
    /// Frame: `[]`: its physical address (for device drivers and the VMM).
    FrameAddress = 14,
    /// Frame: `[guest space slot, guest-physical address, rights]`: map it into a guest
    /// (readable always; `map::WRITE`, `map::EXECUTE` as asked and allowed). A large
    /// frame maps as one 2 MiB EPT leaf at a 2 MiB-aligned address (`NotSupported` where
    /// the CPU has no 2 MiB EPT pages).
    FrameMapGuest = 15,
    /// VCpu: `[guest space slot, exit endpoint slot, message frame slot, transfer mask]`:
    /// bind the guest memory, where exits are sent (the endpoint's badge names the vCPU to
    /// the VMM), the frame that carries exit messages and reply batches, and which
    /// optional `vmexit::TransferMask` groups every exit message carries.
    VCpuConfigure = 16,
    /// VCpu: `[mode | priority << 8 | primary controls << 16, rip, rsp, cr3]`: set up
    /// the VMCS and run. `mode` is one of [`vcpu_mode`], plus
    /// [`vcpu_mode::WITH_BATCH`] to apply the batch in the message frame's reply area
    /// before the first entry (validated like a reply, against the initial state: GPRs
    /// such as a boot protocol's RSI, descriptor tables, segments); the primary
    /// processor-based controls named are set from the first entry on (HLT exiting, …)
    /// where the kernel's policy lets the VMM choose them. A VMCS that fails a check the
    /// kernel makes before entry is `StartRefused`, the check in the result registers
    /// (`vcpu_start::StartError`); a refused batch is `BatchRejected` (`rdx` = the
    /// `BatchError` code, `r10` = the field), and the vCPU is not started.
    VCpuStart = 17,
    /// IoPorts: `[port, width]`: read the port (width 1, 2 or 4 bytes, every byte inside
    /// the capability's range); the value is the result word.
    IoPortIn = 18,
    /// IoPorts: `[port, width, value]`: write the port (the value must fit the width).
    IoPortOut = 19,
    /// IoPorts: `[first, last, destination slot]`: a capability for the narrower range
    /// `first..=last` (inside this one's), derived from it, in the caller's CSpace root.
    IoPortsCarve = 20,
    /// IrqControl: `[irq, destination slot]`: the handler capability of one IRQ line, in
    /// the caller's CSpace root. Each line has at most one live handler (`InUse`); the
    /// timer line (0) and the cascade (2) are the kernel's (`NotPermitted`).
    IrqControlGet = 21,
    /// IrqHandler: `[notification slot]`: signal this notification (it needs the `WRITE`
    /// right) when the line fires, with its badge, or `1 << irq` if it has none. The
    /// kernel keeps a copy derived from that capability: revoking it unbinds the line.
    IrqHandlerSetNotification = 22,
    /// IrqHandler: `[]`: unmask the line. The kernel masks it when it fires, so the
    /// driver acknowledges each interrupt once it has served the device.
    IrqHandlerAck = 23,
    /// VCpu: `[IoPorts slot]`: let the guest reach the capability's ports directly: the
    /// kernel clears their bits in the VCpu's I/O bitmaps, so the guest's IN/OUT to them
    /// run on the hardware without a VM exit. Every other port keeps exiting to the VMM.
    /// The VCpu keeps a copy derived from the capability: revoking it (or deleting the
    /// VCpu) withdraws the pass-through before the guest next runs. At most four ranges
    /// per VCpu (`InUse` beyond).
    VCpuPassPorts = 24,
    /// VCpu: `[msr index, guest value]`: have the kernel switch one of
    /// [`vm::SWITCHABLE_MSRS`] on every VM entry and exit: the guest's value is loaded on
    /// entry and saved on exit (VM-entry MSR-load and VM-exit MSR-store areas, which the
    /// kernel owns), the host's value is loaded on exit (VM-exit MSR-load area), and the
    /// guest reads and writes the MSR without exiting. Naming an MSR already switched
    /// sets its guest value. `NotSupported` for an MSR outside the list or one this CPU
    /// lacks; `InvalidArgument` for a value the MSR cannot hold (a non-canonical address,
    /// reserved bits).
    VCpuSwitchMsr = 25,
    /// Reply: `[]`: move the reply the invoking thread owes (to the caller of the `Call`
    /// it received last) into this reply object; the caller keeps waiting. Answer it
    /// later with `Send`/`NbSend` on the reply capability (a message, or a VMCS-write
    /// batch for a vCPU); deleting the last reply capability wakes the caller with
    /// `ObjectDeleted`. `WouldBlock` when the thread owes no reply, `InUse` when the
    /// object already holds one.
    ReplySave = 26,
    /// TCB: `[frame slot or u64::MAX]`: the frame (with the write right) that holds the
    /// thread's message words beyond the registers (`ipc::MAX_LEN`), or none.
    TcbSetIpcBuffer = 27,
    /// TCB or VCpu: `[cpu]`: the CPU that runs it from now on (below the boot
    /// information's CPU count, `InvalidArgument` otherwise). A thread or vCPU running on
    /// another CPU is stopped there first; a VCpu's VMCS is cleared on its old CPU.
    TcbSetAffinity = 28,
    /// VCpu: `[]`: make the vCPU leave its guest for its VMM soon, so that an interrupt
    /// the VMM made pending for it (an IPI from another vCPU, a device's message) is
    /// injected. A vCPU in its guest (here or on another CPU) or ready to enter it takes
    /// a VMX-preemption-timer exit (reason 52) before its next guest instruction; the
    /// result is 1. A vCPU that waits for its VMM's reply, or is stopped, needs no kick:
    /// nothing changes and the result is 0. `NotSupported` where the CPU has no
    /// VMX-preemption timer.
    VCpuKick = 29,
}

/// Guest modes for `VCpuStart`.
pub mod vcpu_mode {
    /// 64-bit long mode (IA-32e guest).
    pub const LONG64: u64 = 0;
    /// 32-bit protected mode, flat segments, paging off.
    pub const PROTECTED32: u64 = 1;
    /// Real mode (needs unrestricted guest).
    pub const REAL: u64 = 2;
    /// Flag (bit 7 of the mode byte): apply the reply area's batch before the first entry.
    pub const WITH_BATCH: u64 = 0x80;
}

/// The VM-exit protocol between the kernel and a VMM.
///
/// On each exit the vCPU calls its exit endpoint with label [`vm::EXIT_LABEL`] and words
/// `[basic exit reason, qualification, guest rip, instruction length]`; the full
/// `vmexit::ExitMessage` is in the message frame at [`vm::EXIT_OFFSET`]. The VMM answers
/// with `Reply`/`ReplyRecv` after writing a `vmexit::ExitReply` at [`vm::REPLY_OFFSET`].
/// A batch the kernel refuses makes the reply syscall fail with `BatchRejected`
/// (`rdx` = the `BatchError` code, `r10` = the offending field's encoding) and leaves the
/// vCPU stopped. A VMX instruction that fails while the kernel runs the vCPU stops it too,
/// and the VMM learns why from a message with label [`vm::FAILURE_LABEL`].
pub mod vm {
    /// Label of an exit message.
    pub const EXIT_LABEL: u64 = 0x766d_6578; // "vmex"
    /// Label of the one-way message that says a VMX instruction failed while the kernel
    /// ran the vCPU, which is stopped: words as `vmx_failure::VmxFailure::to_words`.
    pub const FAILURE_LABEL: u64 = 0x766d_666c; // "vmfl"
    /// Byte offset of the `ExitMessage` in the message frame ([`crate::vcpu_page`]).
    pub const EXIT_OFFSET: usize = crate::vcpu_page::EXIT_OFFSET;
    /// Byte offset of the `ExitReply` in the message frame.
    pub const REPLY_OFFSET: usize = crate::vcpu_page::REPLY_OFFSET;

    /// The MSRs `VCpuSwitchMsr` accepts: live CPU state that the VMCS does not hold and
    /// that a guest must own while it runs (the SYSCALL MSRs, the SWAPGS base, the RDTSCP
    /// value): IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK, IA32_KERNEL_GS_BASE,
    /// IA32_TSC_AUX.
    pub const SWITCHABLE_MSRS: [u32; 6] =
        [0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0xc000_0102, 0xc000_0103];
}

impl Invocation {
    /// Every invocation, in ABI order.
    pub const ALL: [Self; 29] = [
        Self::UntypedRetype,
        Self::CNodeCopy,
        Self::CNodeMint,
        Self::CNodeMove,
        Self::CNodeDelete,
        Self::CNodeRevoke,
        Self::TcbConfigure,
        Self::TcbWriteRegisters,
        Self::TcbResume,
        Self::TcbSuspend,
        Self::TcbSetPriority,
        Self::FrameMap,
        Self::FrameUnmap,
        Self::FrameAddress,
        Self::FrameMapGuest,
        Self::VCpuConfigure,
        Self::VCpuStart,
        Self::IoPortIn,
        Self::IoPortOut,
        Self::IoPortsCarve,
        Self::IrqControlGet,
        Self::IrqHandlerSetNotification,
        Self::IrqHandlerAck,
        Self::VCpuPassPorts,
        Self::VCpuSwitchMsr,
        Self::ReplySave,
        Self::TcbSetIpcBuffer,
        Self::TcbSetAffinity,
        Self::VCpuKick,
    ];

    /// Decode a label.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|i| *i as u64 == raw)
    }
}

/// Frame-mapping rights (`FrameMap`'s third word).
pub mod map {
    /// Writable mapping.
    pub const WRITE: u64 = 1 << 0;
    /// Executable mapping.
    pub const EXECUTE: u64 = 1 << 1;
}

#[cfg(test)]
mod tests {
    use super::{Invocation, ObjectType};

    #[test]
    fn labels_round_trip() {
        for (i, inv) in Invocation::ALL.iter().enumerate() {
            assert_eq!(*inv as u64, i as u64 + 1);
            assert_eq!(Invocation::from_raw(*inv as u64), Some(*inv));
        }
        assert_eq!(Invocation::from_raw(0), None);
        for t in 0..11 {
            assert_eq!(ObjectType::from_raw(t).map(|o| o as u64), Some(t));
        }
        assert_eq!(ObjectType::from_raw(11), None);
    }
}
