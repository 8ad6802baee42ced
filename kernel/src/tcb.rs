//! The thread control block: scheduling and IPC state, saved registers, FPU state.
//! The TCB's own capability slots (CSpace, VSpace, fault endpoint) follow it in the same
//! object, at `store::TCB_SLOTS_OFFSET`.

use crate::context::UserContext;
use crate::schedulable::{Kind, Schedulable};

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
    /// Saved user registers; first, because the entry stubs build the frame from ring 3
    /// right here (the kernel stack pointer for ring 3 is the context's end).
    pub context: UserContext,
    /// Saved x87/SSE registers.
    pub fpu: FpuArea,
    /// Scheduling and IPC state, at [`SCHED_OFFSET`] as in a VCpu.
    pub sched: Schedulable,
    /// The root task holds the machine-control authority (shutdown).
    pub root_task: bool,
}

const _: () = assert!(core::mem::size_of::<Tcb>() <= crate::store::TCB_SLOTS_OFFSET as usize);

impl Default for Tcb {
    fn default() -> Self {
        Self {
            context: UserContext::default(),
            fpu: FpuArea::default(),
            sched: Schedulable::new(Kind::Thread),
            root_task: false,
        }
    }
}

/// Where a thread's and a vCPU's scheduling part lies in its object, so that queues and
/// the scheduler reach either by its address.
pub const SCHED_OFFSET: u64 = core::mem::offset_of!(Tcb, sched) as u64;
const _: () = assert!(core::mem::offset_of!(Tcb, context) == 0, "the entry stubs' frame");
