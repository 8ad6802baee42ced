//! What threads and vCPUs share: the part of either object that the scheduler, the run
//! queues and IPC work with. It sits at the same offset in a TCB and in a VCpu
//! (`tcb::SCHED_OFFSET`), so a queue links either by the object's address; everything else about them (a thread's registers and slots,
//! a vCPU's VMCS, guest registers and bindings) lives in their own objects.

use crate::kernel_message::KernelMessage;
use crate::tcb::ThreadState;

/// What running the object means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    /// A thread ([`crate::tcb::Tcb`]): return to ring 3 with its registers.
    #[default]
    Thread,
    /// A VCpu ([`crate::vcpu`]): enter its guest.
    VCpu,
}

/// Scheduling and IPC state of a thread or a vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Schedulable {
    /// What it is doing.
    pub state: ThreadState,
    /// Priority, 0 (lowest) to 255.
    pub priority: u8,
    /// What running it means.
    pub kind: Kind,
    /// The CPU that runs it (its affinity): it waits in that CPU's run queue.
    pub cpu: u8,
    /// Link in whichever queue it is in (run queue, endpoint or notification).
    pub next: u64,
    /// The thread waiting for its reply (0: none).
    pub caller: u64,
    /// A message the kernel sends in its stead (a thread's fault or exit, so the handler
    /// can resume it unchanged; a vCPU's exit when its VMM was not waiting, or its VMX
    /// failure).
    pub message: Option<KernelMessage>,
}

impl Schedulable {
    /// A fresh, inactive object of `kind`.
    pub fn new(kind: Kind) -> Self {
        Self { kind, ..Self::default() }
    }
}
