//! The thread control block: saved registers, FPU state, scheduling and IPC state.
//! The TCB's own capability slots (CSpace, VSpace, fault endpoint) follow it in the same
//! object, at `store::TCB_SLOTS_OFFSET`.

use crate::context::UserContext;
use crate::kernel_message::KernelMessage;

/// An FXSAVE area (x87 and SSE state).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpuArea(pub [u8; 512]);

impl Default for FpuArea {
    /// The reset state: x87 control word 0x37f, MXCSR 0x1f80 (all exceptions masked).
    fn default() -> Self {
        let mut s = Self([0; 512]);
        s.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        s.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        s
    }
}

/// What a thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThreadState {
    /// Not started, suspended, exited, or stopped after a fault nobody handles.
    #[default]
    Inactive,
    /// Runnable (running or in a run queue).
    Ready,
    /// Waiting for a receiver on an endpoint.
    BlockedSend {
        /// The endpoint.
        ep: u64,
        /// The badge of the capability it sent through.
        badge: u64,
        /// It made a `Call` and waits for the reply afterwards.
        call: bool,
        /// Its capability allowed a capability transfer.
        grant: bool,
    },
    /// Waiting for a sender on an endpoint.
    BlockedRecv {
        /// The endpoint.
        ep: u64,
    },
    /// Waiting for the reply to a `Call`.
    BlockedReply {
        /// The thread that received the call and owes the reply (0 if it is gone).
        server: u64,
    },
    /// Waiting for a reply its server put aside in a Reply object.
    BlockedSavedReply {
        /// The Reply object.
        reply: u64,
    },
    /// Waiting for a signal on a notification.
    BlockedNotification {
        /// The notification.
        ntfn: u64,
    },
}

/// A thread control block.
#[repr(C, align(16))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcb {
    /// Saved user registers; the entry stubs write here directly.
    pub context: UserContext,
    /// Saved x87/SSE registers.
    pub fpu: FpuArea,
    /// Scheduling and IPC state.
    pub state: ThreadState,
    /// Priority, 0 (lowest) to 255.
    pub priority: u8,
    /// Link in whichever queue the thread is in (run queue, endpoint or notification).
    pub next: u64,
    /// The thread waiting for this thread's reply (0: none).
    pub caller: u64,
    /// A message the kernel sends for the thread instead of its registers (a fault, so
    /// the handler can resume it unchanged; its exit; a vCPU's VMX failure).
    pub message: Option<KernelMessage>,
    /// The root task holds the machine-control authority (shutdown).
    pub root_task: bool,
    /// This TCB is the schedulable part of a VCpu: running it means entering the guest.
    pub vcpu: bool,
}

const _: () = assert!(core::mem::size_of::<Tcb>() <= crate::store::TCB_SLOTS_OFFSET as usize);

impl Default for Tcb {
    fn default() -> Self {
        Self {
            context: UserContext::default(),
            fpu: FpuArea::default(),
            state: ThreadState::Inactive,
            priority: 0,
            next: 0,
            caller: 0,
            message: None,
            root_task: false,
            vcpu: false,
        }
    }
}
