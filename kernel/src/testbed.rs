//! A booted kernel on the host, for the syscall tests and the syscall fuzzer: a root
//! thread with a CSpace, an address space with a mapped page, and untyped memory.

use crate::cap::Cap;
use crate::cnode;
use crate::context::UserContext;
use crate::paging::{FrameSize, USER, WRITABLE};
use crate::state::{Kernel, Next, Platform};
use crate::store::fake::FakeStore;
use crate::store::{cnode_slot, tcb_slot, Store, TcbSlot};
use protocols::io::PortWidth;
use protocols::ipc::MsgInfo;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::Syscall;
use std::collections::HashMap;

/// The root thread's TCB.
pub const ROOT_TCB: u64 = 0x10_0000;
/// The root CNode (radix [`ROOT_RADIX`]).
pub const ROOT_CNODE: u64 = 0x20_0000;
/// Slots in the root CNode, log2.
pub const ROOT_RADIX: u8 = 8;
/// The root VSpace.
pub const ROOT_VSPACE: u64 = 0x30_0000;
/// The untyped region given to the root thread.
pub const UNTYPED_BASE: u64 = 0x100_0000;
/// Its size, log2: room for a large frame.
pub const UNTYPED_BITS: u8 = 22;
/// A user page mapped writable in the root VSpace.
pub const USER_PAGE: u64 = 0x40_0000;
/// The kernel's IRQ node.
pub const IRQ_NODE: u64 = 0x60_0000;

/// Fixed slots of the root CSpace.
pub mod slot {
    /// The root thread's TCB.
    pub const TCB: u64 = 1;
    /// The root CNode itself.
    pub const CNODE: u64 = 2;
    /// The root VSpace.
    pub const VSPACE: u64 = 3;
    /// The untyped region.
    pub const UNTYPED: u64 = 4;
    /// The IRQ control capability, as at boot.
    pub const IRQ_CONTROL: u64 = protocols::bootinfo::slot::IRQ_CONTROL;
    /// The first of the I/O-port capabilities, as at boot.
    pub const FIRST_IO_PORTS: u64 = protocols::bootinfo::slot::FIRST_IO_PORTS;
    /// First free slot.
    pub const FREE: u64 = 16;
}

/// One port access the kernel made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAccess {
    /// A read.
    In(u16, PortWidth),
    /// A write of a value.
    Out(u16, PortWidth, u32),
}

/// Stands in for the machine: collects console output, records port accesses, answers
/// port reads, and keeps the interrupt controller's mask.
#[derive(Clone, Default)]
pub struct Recorder {
    /// Bytes written with `DebugWrite`.
    pub console: Vec<u8>,
    /// Port accesses, in order.
    pub ports: Vec<PortAccess>,
    /// What reading a port returns (0 for ports not listed).
    pub port_values: HashMap<u16, u32>,
    /// IRQ lines unmasked at the interrupt controller (bit `i` = line `i`); all start
    /// masked, as the bare-metal kernel leaves them.
    pub unmasked: u16,
}

impl Platform for Recorder {
    fn debug_write(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
    }
    fn port_in(&mut self, port: u16, width: PortWidth) -> u32 {
        self.ports.push(PortAccess::In(port, width));
        self.port_values.get(&port).copied().unwrap_or(0)
    }
    fn port_out(&mut self, port: u16, width: PortWidth, value: u32) {
        self.ports.push(PortAccess::Out(port, width, value));
    }
    fn mask_irq(&mut self, irq: u8) {
        self.unmasked &= !(1 << irq);
    }
    fn unmask_irq(&mut self, irq: u8) {
        self.unmasked |= 1 << irq;
    }
}

/// The kernel plus its platform.
#[derive(Clone)]
pub struct Testbed {
    /// The kernel.
    pub k: Kernel<FakeStore>,
    /// What it printed.
    pub out: Recorder,
    /// Kernel entries [`Testbed::sys`] made, restarts included.
    pub entries: u64,
}

impl Default for Testbed {
    fn default() -> Self {
        Self::new()
    }
}

impl Testbed {
    /// Boot: the root thread runs with its capabilities in place.
    pub fn new() -> Self {
        let mut k = Kernel::new(FakeStore::default(), [0; 256], true);
        let s = &mut k.store;
        let roots = [
            (slot::TCB, Cap::Tcb { addr: ROOT_TCB }),
            (slot::CNODE, Cap::CNode { addr: ROOT_CNODE, radix: ROOT_RADIX }),
            (slot::VSPACE, Cap::VSpace { addr: ROOT_VSPACE, size_bits: 16 }),
            (slot::UNTYPED, Cap::Untyped { base: UNTYPED_BASE, size_bits: UNTYPED_BITS, free: 0 }),
        ];
        for (i, cap) in roots {
            cnode::insert_root(s, cnode_slot(ROOT_CNODE, i), cap).expect("empty slot");
        }
        for (which, i) in [(TcbSlot::CSpace, slot::CNODE), (TcbSlot::VSpace, slot::VSPACE)] {
            let cap = s.slot(cnode_slot(ROOT_CNODE, i)).cap;
            cnode::insert_child(s, cnode_slot(ROOT_CNODE, i), tcb_slot(ROOT_TCB, which), cap)
                .expect("empty slot");
        }
        s.tcb(ROOT_TCB).root_task = true;
        s.sched(ROOT_TCB).priority = 100;
        s.tcb(ROOT_TCB).context = UserContext::new_user(0x40_0000, 0x7000_0000);
        k.vspaces.add(ROOT_VSPACE, ROOT_VSPACE + 4096, 15).expect("room");
        k.vspaces
            .map(
                &mut k.store,
                ROOT_VSPACE,
                USER_PAGE,
                (0x50_0000, FrameSize::Small),
                USER | WRITABLE,
            )
            .expect("map");
        crate::bootstrap::hand_over_devices(&mut k, ROOT_CNODE, IRQ_NODE);
        k.current = ROOT_TCB;
        k.store.sched(ROOT_TCB).state = crate::tcb::ThreadState::Ready;
        Self { k, out: Recorder::default(), entries: 0 }
    }

    /// The same, on a CPU with VT-x (Bochs's Skylake model).
    pub fn with_vmx() -> Self {
        use crate::vmx::{caps::VmxCaps, ept::EptVpidCaps, samples, validator::Policy};
        let mut t = Self::new();
        let caps = VmxCaps::from_all(&samples::SKYLAKE);
        t.k.vmx = Some(
            crate::vcpu::VmxInfo {
                caps,
                policy: Policy::new(&caps, true, false),
                ept: EptVpidCaps::from_raw(samples::EPT_CAPS),
                host: samples::host(),
                maxphyaddr: samples::MAXPHYADDR,
                host_msrs: samples::host_msrs(),
                tsc_hz: 0,
                backstop: 0,
            }
            .with_clock(samples::TSC_HZ, 100),
        );
        t
    }

    /// Make a syscall as the current thread: `rax`, then `rdi, rsi, rdx, r10, r8, r9`.
    /// A call the kernel stops at a preemption point is made again, as the thread would
    /// by re-executing its `syscall` instruction.
    pub fn sys(&mut self, number: u64, args: [u64; 6]) -> Next {
        let cur = self.k.current;
        let c = &mut self.k.store.tcb(cur).context;
        c.rax = number;
        [c.rdi, c.rsi, c.rdx, c.r10, c.r8, c.r9] = args;
        loop {
            let rip = self.k.store.tcb(cur).context.rip;
            let next = self.k.syscall(&mut self.out);
            self.entries += 1;
            let c = &mut self.k.store.tcb(cur).context;
            if self.k.current != cur || c.rip != rip.wrapping_sub(2) {
                return next;
            }
            c.rip = rip;
        }
    }

    /// Invoke the kernel object in slot `cptr` as the current thread: its status word.
    pub fn invoke(&mut self, cptr: u64, label: Invocation, words: &[u64]) -> u64 {
        let mut w = [0u64; 4];
        w.iter_mut().zip(words).for_each(|(d, s)| *d = *s);
        let info = MsgInfo::new(label as u64, words.len() as u8).to_raw();
        self.sys(Syscall::Call as u64, [cptr, info, w[0], w[1], w[2], w[3]]);
        self.regs(self.k.current)[0]
    }

    /// Retype `count` objects from the root's untyped into slots `dst..`: the status.
    pub fn retype(&mut self, ty: ObjectType, bits: u64, dst: u64, count: u64) -> u64 {
        self.invoke(slot::UNTYPED, Invocation::UntypedRetype, &[ty as u64, bits, dst, count])
    }

    /// The current thread's `(rax, rdi, rsi, rdx, r10, r8, r9)` after a syscall.
    pub fn regs(&mut self, tcb: u64) -> [u64; 7] {
        let c = self.k.store.tcb(tcb).context;
        [c.rax, c.rdi, c.rsi, c.rdx, c.r10, c.r8, c.r9]
    }

    /// The capability in root slot `i`.
    pub fn cap(&mut self, i: u64) -> Cap {
        self.k.store.slot(cnode_slot(ROOT_CNODE, i)).cap
    }

    /// Every right.
    pub fn all() -> u64 {
        u64::from(Rights::ALL.bits())
    }
}
