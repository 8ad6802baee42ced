//! A reference model of the kernel's semantics, written to be obviously right rather than
//! fast (the level of seL4's abstract specification): capabilities with rights and
//! badges, the derivation tree and revocation, untyped accounting, IPC with the reply
//! capability, Reply objects, IPC buffers and capability transfer, notifications, IRQ
//! lines, faults, scheduling by priority, and a VMM's reply to a vCPU's exit at the level
//! of accept or refuse.
//!
//! The model is a plain function from one [`State`] and one [`Event`] to the next state.
//! The `syscalls` fuzz target abstracts the kernel's state into a [`State`] before each
//! step, runs the step on both, and compares the abstraction of the kernel's state after
//! it with the model's: each step is checked on its own (a refinement check), so one
//! difference is reported where it happens instead of spreading through the rest of the
//! input. What the model leaves out (page tables, I/O ports, the VMCS rules a VMM's
//! batch must meet, deletion that spans kernel entries) makes [`Outcome::Unmodeled`], and that step is only
//! checked by the target's structural invariants.
//!
//! Objects and slots are named by the kernel's addresses: the layout of a slot inside a
//! CNode or TCB ([`layout`]) and the object sizes are part of what is modelled, since a
//! retype's result word and a capability transfer's destination depend on them.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cap;
pub mod cdt;
mod invoke;
mod ipc;
pub mod layout;
mod sched;
mod syscall;
mod vcpu;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

pub use cap::Cap;
pub use cdt::Cdt;

/// The registers a syscall reads or writes (the rest never carries a message or result).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// Syscall number in, status out.
    pub rax: u64,
    /// Capability in, badge (or notification word) out.
    pub rdi: u64,
    /// Message info.
    pub rsi: u64,
    /// Message word 0 (an invocation's result on success).
    pub rdx: u64,
    /// Message word 1.
    pub r10: u64,
    /// Message word 2.
    pub r8: u64,
    /// Message word 3.
    pub r9: u64,
    /// The slot of the capability a message carries.
    pub r12: u64,
    /// The slot a received capability goes to.
    pub r13: u64,
    /// Where the thread resumes.
    pub rip: u64,
}

impl Regs {
    /// The four message words.
    pub fn words(&self) -> [u64; 4] {
        [self.rdx, self.r10, self.r8, self.r9]
    }
}

/// A message the kernel sends in a thread's or a vCPU's stead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelMessage {
    /// A fault or an exit (to the fault endpoint).
    Thread(protocols::fault::FaultMessage),
    /// A VM exit the VMM was not waiting for: its four words.
    VmExit([u64; 4]),
    /// A VMX instruction failed while the vCPU ran.
    VmxFailure(protocols::vmx_failure::VmxFailure),
}

impl KernelMessage {
    /// Whether the sender waits for a reply: a fault and a VM exit do; the rest is the
    /// sender's last word.
    pub fn awaits_reply(&self) -> bool {
        matches!(self, Self::Thread(protocols::fault::FaultMessage::Fault { .. }) | Self::VmExit(_))
    }

    /// The label, length and words delivered (docs/abi.md).
    pub fn encode(&self) -> (u64, u8, [u64; 4]) {
        use protocols::object::vm;
        use protocols::vmx_failure::VmxFailure;
        match self {
            Self::Thread(m) => m.encode(),
            Self::VmExit(words) => (vm::EXIT_LABEL, 4, *words),
            Self::VmxFailure(f) => (vm::FAILURE_LABEL, VmxFailure::SIZE as u8, f.to_words()),
        }
    }
}

/// What a vCPU's VMM left in the reply area of the vCPU's message frame, read when the
/// VMM answers an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmReply {
    /// The reply area (`None` if the frame cannot hold one).
    pub area: Option<protocols::vmexit::ExitReply>,
    /// The verdict on the writes and the event in it, from the vCPU's state before the
    /// reply: accepted, or refused with the refusal's code and field. The model states
    /// the reply's own rules (which frame, the header, what a refusal does, whether the
    /// vCPU runs on) and takes this verdict as given, since the VMCS rules are the
    /// validator's, judged by the `vmcs_validator` target's invariants.
    pub content: Result<(), (u64, u64)>,
}

/// What a thread is doing (the same states as the kernel's, by design of the ABI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThreadState {
    /// Not started, suspended, exited, or stopped by an unhandled fault.
    #[default]
    Inactive,
    /// Running or queued to run.
    Ready,
    /// Waiting on an endpoint to send (`call`: then for the reply; `grant`: the
    /// capability it sent through allowed a transfer).
    BlockedSend { ep: u64, badge: u64, call: bool, grant: bool },
    /// Waiting on an endpoint to receive.
    BlockedRecv { ep: u64 },
    /// Waiting for `server`'s reply.
    BlockedReply { server: u64 },
    /// Waiting for a reply put aside in a Reply object.
    BlockedSavedReply { reply: u64 },
    /// Waiting for a signal.
    BlockedNotification { ntfn: u64 },
}

/// A thread (or the thread part of a vCPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// Its state.
    pub state: ThreadState,
    /// Its priority.
    pub priority: u8,
    /// The thread whose reply it owes (0: none).
    pub caller: u64,
    /// A kernel message pending for it.
    pub message: Option<KernelMessage>,
    /// Its registers.
    pub regs: Regs,
    /// It may shut the machine down.
    pub root_task: bool,
    /// It is a vCPU.
    pub vcpu: bool,
    /// A vCPU that was started.
    pub started: bool,
    /// The CPU that runs it.
    pub cpu: u8,
}

/// Which kind of thread an endpoint queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Queueing {
    /// Nobody.
    #[default]
    Idle,
    /// Senders.
    Senders,
    /// Receivers.
    Receivers,
}

/// An endpoint: who waits, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Senders or receivers.
    pub kind: Queueing,
    /// The waiting threads, first to be served first.
    pub queue: Vec<u64>,
}

/// A notification: pending bits and the threads waiting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    /// Bits signalled, not yet received.
    pub word: u64,
    /// Signalled since the last receive, with or without bits: a signal through an
    /// unbadged capability wakes the next receiver all the same.
    pub signalled: bool,
    /// The waiting threads.
    pub waiters: Vec<u64>,
}

/// The IRQ lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irqs {
    /// The CNode whose slot `i` holds line `i`'s notification.
    pub node: u64,
    /// Lines whose handler capability was handed out.
    pub issued: u16,
    /// Lines unmasked.
    pub unmasked: u16,
}

/// The whole abstract state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Every capability and how it was derived.
    pub cdt: Cdt,
    /// Threads, by TCB address.
    pub threads: BTreeMap<u64, Thread>,
    /// Endpoints.
    pub endpoints: BTreeMap<u64, Endpoint>,
    /// Notifications.
    pub notifications: BTreeMap<u64, Notification>,
    /// Reply objects: the caller each holds (0: none).
    pub replies: BTreeMap<u64, u64>,
    /// The first [`protocols::ipc::IPC_BUFFER_WORDS`] words of every frame (where a long
    /// message goes once the frame is bound as an IPC buffer).
    pub buffers: BTreeMap<u64, Vec<u64>>,
    /// Ready threads other than the running ones, in the order they became ready (each
    /// CPU takes its own, in this order).
    pub ready: Vec<u64>,
    /// The thread running on the CPU that takes this step (0: that CPU idles).
    pub current: u64,
    /// The CPU that takes the step.
    pub cpu: u8,
    /// How many CPUs are online.
    pub cpus: u8,
    /// What runs on each other CPU (absent: it idles).
    pub elsewhere: BTreeMap<u8, u64>,
    /// IRQ lines.
    pub irqs: Irqs,
    /// How many more address spaces (VSpaces and GuestSpaces) the kernel can track.
    pub space_room: usize,
    /// Whether the CPU has VT-x (a VCpu can be made).
    pub vmx: bool,
    /// Each vCPU's reply area, by vCPU address: input to a reply, never changed by one
    /// (so not compared).
    pub vm_replies: BTreeMap<u64, VmReply>,
}

/// One step of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The current thread makes a syscall; its arguments are in its registers.
    Syscall,
    /// A timer tick.
    Tick,
    /// The current thread takes an exception.
    Fault { vector: u64, error: u64, address: u64 },
    /// Interrupts on these lines (the unmasked ones: the interrupt controller masks the
    /// others).
    Irqs(u16),
    /// Another CPU asked this one to reschedule (or it woke from idle).
    Reschedule,
}

/// What the step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran; the state is the model's prediction.
    Done,
    /// The machine stops (the root task's `Shutdown`).
    Shutdown,
    /// The step needs something the model leaves out; the state is meaningless.
    Unmodeled(&'static str),
}

/// A step that left the model's scope.
pub(crate) type Step<T = ()> = Result<T, &'static str>;

impl State {
    /// Run `event` on this state.
    pub fn step(&mut self, event: Event) -> Outcome {
        let r = match event {
            Event::Syscall => self.syscall(),
            Event::Tick => {
                self.preempt();
                Ok(false)
            }
            Event::Fault { vector, error, address } => {
                let cur = self.current;
                let rip = self.thread(cur).regs.rip;
                let m = protocols::fault::FaultMessage::Fault { vector, error, rip, address };
                self.report(cur, m);
                self.schedule();
                Ok(false)
            }
            Event::Irqs(lines) => {
                self.interrupts(lines);
                Ok(false)
            }
            Event::Reschedule => {
                self.schedule();
                Ok(false)
            }
        };
        match r {
            Ok(true) => Outcome::Shutdown,
            Ok(false) => Outcome::Done,
            Err(why) => Outcome::Unmodeled(why),
        }
    }

    /// The thread at `addr` (a fresh one if the model has none there: a caller only names
    /// threads that a capability or a queue names).
    pub(crate) fn thread(&mut self, addr: u64) -> &mut Thread {
        self.threads.entry(addr).or_default()
    }

    /// The same state with what no capability or thread can reach dropped, so two states
    /// that differ only in dead objects compare equal.
    pub fn normalized(&self) -> State {
        let mut s = self.clone();
        s.vm_replies.clear();
        let mut live: BTreeSet<u64> = BTreeSet::new();
        for (_, cap) in s.cdt.iter() {
            if let Some(a) = cap.object_addr() {
                live.insert(a);
            }
        }
        if s.current != 0 {
            live.insert(s.current);
        }
        s.elsewhere.retain(|_, t| *t != 0);
        live.extend(s.elsewhere.values());
        s.threads.retain(|a, _| live.contains(a));
        // The run queues as the order threads leave them: each CPU's by priority, then
        // first come.
        let prio = |t: &u64| {
            let x = s.threads.get(t);
            (x.map_or(0, |x| x.cpu), core::cmp::Reverse(x.map_or(0, |x| x.priority)))
        };
        let mut ready = s.ready.clone();
        ready.sort_by_key(prio);
        s.ready = ready;
        s.endpoints.retain(|a, e| live.contains(a) && *e != Endpoint::default());
        s.notifications.retain(|a, n| live.contains(a) && *n != Notification::default());
        s.replies.retain(|a, c| live.contains(a) && *c != 0);
        let frames: BTreeSet<u64> = s
            .cdt
            .iter()
            .filter_map(|(_, c)| match c {
                Cap::Frame { addr, .. } => Some(addr),
                _ => None,
            })
            .collect();
        s.buffers.retain(|a, b| frames.contains(a) && b.iter().any(|w| *w != 0));
        s
    }
}
