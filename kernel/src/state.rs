//! The kernel's state and its one entry point for syscalls and faults.
//!
//! The bare-metal layer saves the user registers into the current TCB and calls
//! [`Kernel::syscall`] or [`Kernel::fault`]; everything else is decided here, against
//! the object store, so the whole syscall layer runs (and is fuzzed) on the host.

use crate::acpi::MAX_CPUS;
use crate::cap::Cap;
use crate::cnode::SLOT_BITS;
use crate::irq::IrqTable;
use crate::kernel_message::KernelMessage;
use crate::sched::Scheduler;
use crate::schedulable::Kind;
use crate::store::{tcb_slot, Store, TcbSlot};
use crate::tcb::ThreadState;
use crate::vspace::VSpaces;
use protocols::error::Error;
use protocols::fault::FaultMessage;
use protocols::io::PortWidth;
use protocols::syscall::{ShutdownStatus, Syscall, DEBUG_WRITE_MAX};

/// What the kernel needs from the machine that is not memory: the only way the logic in
/// this crate touches hardware, so host tests can stand in for it. There is no kernel log:
/// what happens to a thread at run time reaches user space as a message or an error.
pub trait Platform {
    /// Write bytes to the debug console (for `DebugWrite`).
    fn debug_write(&mut self, bytes: &[u8]);
    /// Read an I/O port for the holder of an `IoPorts` capability that covers it.
    fn port_in(&mut self, port: u16, width: PortWidth) -> u32;
    /// Write an I/O port for the holder of an `IoPorts` capability that covers it.
    fn port_out(&mut self, port: u16, width: PortWidth, value: u32);
    /// Mask an IRQ line at the interrupt controller.
    fn mask_irq(&mut self, irq: u8);
    /// Unmask an IRQ line at the interrupt controller.
    fn unmask_irq(&mut self, irq: u8);
}

/// What the bare-metal layer does after a syscall or fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Return to the (possibly new) current thread.
    Run,
    /// No thread is runnable: wait for an interrupt.
    Idle,
    /// The root task asked to stop the machine.
    Shutdown(ShutdownStatus),
}

/// A syscall's effect on the caller's registers.
pub(crate) enum Done {
    /// Success with a result word in `rdx`.
    Value(u64),
    /// The IPC path already wrote the caller's registers (or it is blocked).
    Handled,
    /// A delete or revoke stopped at a preemption point: the caller makes the same
    /// syscall again, which continues it.
    Restart,
}

/// The whole kernel state. `Clone` lets the fuzzer run one step twice, fastpath on and
/// off, from the same state.
#[derive(Clone)]
pub struct Kernel<S: Store> {
    /// Every object.
    pub store: S,
    /// Run queues.
    pub sched: Scheduler,
    /// Live address spaces.
    pub vspaces: VSpaces,
    /// How many CPUs are online (threads may be moved to `0..cpus`).
    pub cpus: usize,
    /// The CPU this kernel entry runs on (set by [`Self::enter_on`]).
    pub cpu: usize,
    /// The thread or vCPU running on [`Self::cpu`] (0: it idles).
    pub current: u64,
    /// What runs on every other CPU (0: it idles); the entry for [`Self::cpu`] is stale.
    pub elsewhere: [u64; MAX_CPUS],
    /// CPUs a wake-up or a move gave a thread that outranks what they run: the hardware
    /// layer sends each a reschedule IPI before this entry ends (bit `i`: CPU `i`).
    pub reschedule: u64,
    /// Bring CPU `cpu` into the kernel and wait until it is there, its thread's registers
    /// saved and its caches of kernel objects (FPU owner, active VMCS, page tables,
    /// TLB) dropped: before a thread that runs there is changed, moved or deleted. The
    /// hardware layer's; host tests keep threads' registers in memory and need nothing.
    pub stall: fn(usize),
    /// PML4 entries 256..511, copied into every new address space.
    pub kernel_half: [u64; 256],
    /// Whether page tables may use the NX bit.
    pub nx: bool,
    /// VT-x, where present.
    pub vmx: Option<crate::vcpu::VmxInfo>,
    /// A VCpu was destroyed: the hardware layer must VMCLEAR the active VMCS before its
    /// memory can be reused.
    pub vmcs_released: bool,
    /// A guest mapping went away: the hardware layer must invalidate EPT translations.
    pub ept_stale: bool,
    /// A process mapping went away: the hardware layer must flush the TLB.
    pub tlb_stale: bool,
    /// Why the current syscall failed, for the caller's `rdx`, `r10` and `r8`: a refused
    /// batch's `[BatchError code, field, 0]` or a refused start's `StartError` words.
    pub(crate) refusal: Option<[u64; 3]>,
    /// The IRQ lines: who handles each, which are unmasked.
    pub irqs: IrqTable,
    /// Counts deletions of `IoPorts` capabilities: a VCpu whose pass-through was computed
    /// at an older count checks its ports before it next runs.
    pub io_ports_generation: u64,
    /// The slot of the zombie on top of the finalisation stack (0: none); see
    /// `finalise`.
    pub dying: u64,
    /// Deletion steps this kernel entry may still take.
    pub(crate) work_left: u32,
}

impl<S: Store> Kernel<S> {
    /// A kernel with no threads (built in place at compile time on the machine: its run
    /// queues are too large for a stack).
    pub const fn new(store: S, kernel_half: [u64; 256], nx: bool) -> Self {
        Self {
            store,
            sched: Scheduler::new(),
            vspaces: VSpaces::new(),
            cpus: 1,
            cpu: 0,
            current: 0,
            elsewhere: [0; MAX_CPUS],
            reschedule: 0,
            stall: |_| {},
            kernel_half,
            nx,
            vmx: None,
            vmcs_released: false,
            ept_stale: false,
            tlb_stale: false,
            io_ports_generation: 0,
            refusal: None,
            irqs: IrqTable::EMPTY,
            dying: 0,
            work_left: crate::finalise::WORK_PER_ENTRY,
        }
    }

    /// Take this kernel entry on CPU `cpu`: [`Self::current`] becomes what runs there.
    #[inline(always)]
    pub fn enter_on(&mut self, cpu: usize) {
        if cpu != self.cpu {
            self.elsewhere[self.cpu] = self.current;
            self.cpu = crate::sched::index(cpu);
            self.current = self.elsewhere[self.cpu];
        }
    }

    /// What runs on CPU `cpu` (0: it idles).
    pub fn running_on(&self, cpu: usize) -> u64 {
        if cpu == self.cpu {
            self.current
        } else {
            self.elsewhere[crate::sched::index(cpu)]
        }
    }

    /// The CPU other than this entry's on which `t` runs, if any.
    pub(crate) fn cpu_running(&self, t: u64) -> Option<usize> {
        if t == 0 {
            return None;
        }
        (0..MAX_CPUS).find(|&c| c != self.cpu && self.elsewhere[c] == t)
    }

    /// Take `t` off the other CPU it runs on, if any (stalling that CPU first, so its
    /// registers are in memory and nothing there refers to it any more). A thread that
    /// stays ready goes back into its CPU's queue when `requeue`.
    pub(crate) fn stop_elsewhere(&mut self, t: u64, requeue: bool) {
        let Some(cpu) = self.cpu_running(t) else { return };
        (self.stall)(cpu);
        self.elsewhere[cpu] = 0;
        self.reschedule |= 1 << cpu;
        if requeue && self.store.sched(t).state == ThreadState::Ready {
            self.enqueue(t);
        }
    }

    /// Queue the ready `tcb` on its CPU; another CPU is asked to reschedule when `tcb`
    /// outranks what runs there.
    pub(crate) fn enqueue(&mut self, tcb: u64) {
        self.sched.enqueue(&mut self.store, tcb);
        let cpu = usize::from(self.store.sched(tcb).cpu);
        if cpu != self.cpu {
            let there = self.running_on(crate::sched::index(cpu));
            if there == 0 || self.store.sched(tcb).priority > self.store.sched(there).priority {
                self.reschedule |= 1 << cpu;
            }
        }
    }

    /// Look up slot `cptr` in the current thread's CSpace: `(slot address, capability)`.
    pub(crate) fn lookup(&mut self, cptr: u64) -> Result<(u64, Cap), Error> {
        let root = self.store.slot(tcb_slot(self.current, TcbSlot::CSpace)).cap;
        let Cap::CNode { addr, radix } = root else { return Err(Error::InvalidCapability) };
        if cptr >> radix != 0 {
            return Err(Error::InvalidCapability);
        }
        let at = addr + (cptr << SLOT_BITS);
        match self.store.slot(at).cap {
            // A slot whose object is being finalised holds nothing usable.
            Cap::Null | Cap::Zombie { .. } => Err(Error::InvalidCapability),
            cap => Ok((at, cap)),
        }
    }

    /// An empty slot `index` in the CNode `cnode` (a destination).
    pub(crate) fn empty_slot(&mut self, cnode: Cap, index: u64) -> Result<u64, Error> {
        let Cap::CNode { addr, radix } = cnode else { return Err(Error::WrongType) };
        if index >> radix != 0 {
            return Err(Error::InvalidArgument);
        }
        let at = addr + (index << SLOT_BITS);
        if self.store.slot(at).cap != Cap::Null {
            return Err(Error::InvalidArgument);
        }
        Ok(at)
    }

    /// An empty slot `index` in the current thread's CSpace root (where invocations that
    /// make capabilities put them).
    pub(crate) fn empty_root_slot(&mut self, index: u64) -> Result<u64, Error> {
        let root = self.store.slot(tcb_slot(self.current, TcbSlot::CSpace)).cap;
        self.empty_slot(root, index)
    }

    /// Make `tcb` runnable (queued behind threads of its priority).
    pub fn make_ready(&mut self, tcb: u64) {
        if tcb != self.current {
            self.enqueue(tcb);
        } else {
            self.store.sched(tcb).state = ThreadState::Ready;
        }
    }

    /// Pick the thread to run next. The current thread keeps the CPU if still ready, still
    /// this CPU's, and no thread of higher priority waits here.
    pub fn schedule(&mut self) -> Next {
        let cur = self.current;
        if cur != 0 && self.store.sched(cur).state == ThreadState::Ready && !self.runnable(cur) {
            self.store.sched(cur).state = ThreadState::Inactive;
        }
        if cur != 0 && self.store.sched(cur).state == ThreadState::Ready {
            let prio = self.store.sched(cur).priority;
            let moved = usize::from(self.store.sched(cur).cpu) != self.cpu;
            if !moved && !self.sched.on(self.cpu).any_above(prio) {
                return Next::Run;
            }
            self.enqueue(cur);
        }
        self.current = 0;
        while let Some(next) = self.sched.dequeue(&mut self.store, self.cpu) {
            if self.runnable(next) {
                self.current = next;
                self.store.sched(next).state = ThreadState::Ready;
                return Next::Run;
            }
            self.store.sched(next).state = ThreadState::Inactive;
        }
        Next::Idle
    }

    /// Whether `t` may run: a thread whose address space was revoked cannot; a vCPU has
    /// its own rule ([`Self::vcpu_runnable`]).
    pub(crate) fn runnable(&mut self, t: u64) -> bool {
        match self.store.sched(t).kind {
            Kind::Thread => {
                matches!(self.store.slot(tcb_slot(t, TcbSlot::VSpace)).cap, Cap::VSpace { .. })
            }
            Kind::VCpu => self.vcpu_runnable(t),
        }
    }

    /// Round-robin at a timer tick: the current thread goes behind its equals.
    pub fn preempt(&mut self) -> Next {
        let cur = self.current;
        if cur != 0 && self.store.sched(cur).state == ThreadState::Ready {
            self.enqueue(cur);
            self.current = 0;
        }
        self.schedule()
    }

    /// The PML4 of the current thread's address space.
    pub fn current_root(&mut self) -> Option<u64> {
        match self.store.slot(tcb_slot(self.current, TcbSlot::VSpace)).cap {
            Cap::VSpace { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// Handle the syscall the current thread made (its registers are in its TCB).
    pub fn syscall(&mut self, p: &mut impl Platform) -> Next {
        let cur = self.current;
        let c = self.store.tcb(cur).context;
        self.refill_budget();
        let result = match Syscall::from_raw(c.rax) {
            None => Err(Error::InvalidSyscall),
            Some(Syscall::DebugWrite) => self.debug_write(p, c.rdi, c.rsi),
            Some(Syscall::ThreadExit) => {
                self.report(cur, FaultMessage::Exit { code: c.rdi });
                Ok(Done::Handled)
            }
            Some(Syscall::Shutdown) => {
                if !self.store.tcb(cur).root_task {
                    Err(Error::NotPermitted)
                } else {
                    match ShutdownStatus::from_raw(c.rdi) {
                        Some(s) => return Next::Shutdown(s),
                        None => Err(Error::InvalidArgument),
                    }
                }
            }
            Some(Syscall::Yield) => {
                self.store.tcb(cur).context.rax = 0;
                return self.preempt();
            }
            Some(Syscall::Send) => self.send(c.rdi, c.rsi, true, false),
            Some(Syscall::NbSend) => self.send(c.rdi, c.rsi, false, false),
            Some(Syscall::Call) => self.call(p, c.rdi, c.rsi),
            Some(Syscall::Recv) => self.recv(c.rdi, true),
            Some(Syscall::NbRecv) => self.recv(c.rdi, false),
            Some(Syscall::Reply) => self.reply().map(|()| Done::Value(0)),
            Some(Syscall::ReplyRecv) => self.reply().and_then(|()| self.recv(c.rdi, true)),
        };
        let ctx = &mut self.store.tcb(cur).context;
        match result {
            Ok(Done::Value(v)) => {
                ctx.rax = 0;
                ctx.rdx = v;
            }
            Ok(Done::Handled) => {}
            // Back to the `syscall` instruction (2 bytes) with every register as it was:
            // the thread makes the same call again once it runs.
            Ok(Done::Restart) => ctx.rip = ctx.rip.wrapping_sub(2),
            Err(e) => ctx.rax = e as u64,
        }
        if let Some(words) = self.refusal.take() {
            [ctx.rdx, ctx.r10, ctx.r8] = words;
        }
        self.schedule()
    }

    fn debug_write(&mut self, p: &mut impl Platform, ptr: u64, len: u64) -> Result<Done, Error> {
        if len > DEBUG_WRITE_MAX as u64 {
            return Err(Error::InvalidArgument);
        }
        let root = self.current_root().ok_or(Error::BadUserPointer)?;
        let mut buf = [0u8; DEBUG_WRITE_MAX];
        let dst = buf.get_mut(..len as usize).ok_or(Error::InvalidArgument)?;
        crate::paging::copy_from_user(&mut self.store, root, ptr, dst)
            .map_err(|_| Error::BadUserPointer)?;
        p.debug_write(dst);
        Ok(Done::Value(len))
    }

    /// The current thread took an exception in ring 3. With a fault endpoint it sends a
    /// fault message there and waits for the handler's reply; without one it stops.
    pub fn fault(&mut self, vector: u64, error: u64, address: u64) -> Next {
        let cur = self.current;
        let rip = self.store.tcb(cur).context.rip;
        self.report(cur, FaultMessage::Fault { vector, error, rip, address });
        self.schedule()
    }

    /// Tell `tcb`'s fault endpoint what became of it; without one it just stops.
    fn report(&mut self, tcb: u64, what: FaultMessage) {
        match self.store.slot(tcb_slot(tcb, TcbSlot::FaultEndpoint)).cap {
            Cap::Endpoint { addr, badge, .. } => {
                self.send_message(tcb, addr, badge, KernelMessage::Thread(what));
            }
            _ => self.store.sched(tcb).state = ThreadState::Inactive,
        }
    }
}
