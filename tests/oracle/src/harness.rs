//! Fuzzes the whole syscall layer (`kernel::testbed::Testbed`): capabilities, IPC,
//! untyped retyping, threads, faults, scheduling and the vCPU exit path, driven by an
//! arbitrary sequence of operations made by whichever thread is current, as the
//! bare-metal layer would make them (fastpath first, then `Kernel::syscall`; timer
//! ticks as `preempt`; device interrupts on unmasked lines; faults; for a current vCPU,
//! VM exits with arbitrary messages, external interrupts and failed VMX instructions). Inputs can spawn threads and build vCPUs, so
//! the current thread changes; the VMM's reply area is written with arbitrary batches.
//!
//! Invariants after every step, not only "no panic":
//! - the derivation tree is well formed (links agree both ways, every capability is on
//!   one list, depths step by at most one) and rights never escalate: every capability's
//!   rights are within its parent's (so within every ancestor's), a badge once set is kept
//!   by every copy, and a child names its parent's object unless the parent is untyped
//!   (or an authority that names no memory, such as IRQ control);
//! - after a successful `CNodeRevoke` every capability that descended from the slot is
//!   Null and the slot has no descendant;
//! - every capability names an object that was made (by retyping, or at boot) and not
//!   made over since; no two live objects overlap unless one is an untyped region that
//!   the other was made from; every object lies below its nearest untyped ancestor's
//!   watermark; page tables stay inside their VSpace or GuestSpace object;
//! - every present user mapping (page tables and EPT) points at a frame whose capability
//!   records exactly that mapping, so no mapping outlives its frame;
//! - the run queue holds only live, Ready threads, each once, by priority; the current
//!   thread (if any) is live, Ready and in no queue; every other Ready thread is queued;
//! - endpoint and notification queues hold only threads blocked on them, each thread in
//!   at most one queue, and every blocked thread is in its object's queue;
//! - a vCPU's pending VMCS writes name only fields a VMM may write (the validator let
//!   nothing else through).

use std::collections::{HashMap, HashSet};

use crate::project::{describable, diff, project, sched_of, schedulables};
use crate::syscalls::{vmx_flag, Info, Kind, Op, Reader, Word};
use kernel::cap::{Cap, Mapping};
use kernel::cnode::{self, Slot, SLOT_BITS};
use kernel::paging::{FrameSize, PhysMemory, ADDR_MASK, HUGE, PRESENT};
use kernel::schedulable::Kind as SchedKind;
use kernel::state::Next;
use kernel::store::fake::AddrMap;
use kernel::store::{cnode_slot, tcb_slot, Store, TcbSlot};
use kernel::store::{ENDPOINT_BITS, FRAME_BITS, NOTIFICATION_BITS, REPLY_BITS, TCB_BITS};
use kernel::tcb::ThreadState;
use kernel::testbed::{self, slot, Testbed, ROOT_CNODE, ROOT_TCB, ROOT_VSPACE, USER_PAGE};
use kernel::vcpu::VCPU_BITS;
use kernel_model::{Event, Outcome};
use protocols::ipc::MsgInfo;
use protocols::object::{map, vm, Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::Syscall;
use protocols::vmcs::Field;
use protocols::vmexit::{EventInjection, ExitMessage, ExitReason, ExitReply, TransferMask};
use protocols::vmx_failure::{InstructionError, VmxError, VmxFailure, VmxInstruction};

/// Operations per input: enough for a few threads and a vCPU round trip.
const MAX_OPS: usize = 96;
/// The physical page the testbed maps at `USER_PAGE` at boot (no frame capability).
const BOOT_PAGE: u64 = 0x50_0000;

/// The current thread, if it is an ordinary thread that can make syscalls.
fn user_thread(t: &mut Testbed) -> Option<u64> {
    let cur = t.k.current;
    (cur != 0 && t.k.store.sched(cur).kind != SchedKind::VCpu).then_some(cur)
}

/// Whether `cap` is of the kind a live selector looks for.
fn is_kind(kind: Kind, cap: &Cap) -> bool {
    match kind {
        Kind::Any => *cap != Cap::Null,
        Kind::Untyped => matches!(cap, Cap::Untyped { .. }),
        Kind::CNode => matches!(cap, Cap::CNode { .. }),
        Kind::Tcb => matches!(cap, Cap::Tcb { .. }),
        Kind::Endpoint => matches!(cap, Cap::Endpoint { .. }),
        Kind::Notification => matches!(cap, Cap::Notification { .. }),
        Kind::Frame => matches!(cap, Cap::Frame { .. }),
        Kind::Reply => matches!(cap, Cap::Reply { .. }),
        Kind::IrqHandler => matches!(cap, Cap::IrqHandler { .. }),
        Kind::VCpu => matches!(cap, Cap::VCpu { .. }),
        Kind::VSpace => matches!(cap, Cap::VSpace { .. }),
        Kind::IrqControl => matches!(cap, Cap::IrqControl),
        Kind::IoPorts => matches!(cap, Cap::IoPorts { .. }),
        Kind::GuestSpace => matches!(cap, Cap::GuestSpace { .. }),
        Kind::Ipc => matches!(cap, Cap::Endpoint { .. } | Cap::Notification { .. }),
    }
}

/// Resolve a live reference against the current thread's CSpace root (the first 256
/// slots): the index picks among the slots that match, modulo their number, so the word
/// keeps naming something of its kind whatever came before.
fn resolve(t: &mut Testbed, w: Word) -> Word {
    let Some((kind, index)) = w.reference() else { return w };
    let root = t.k.store.slots.get(&tcb_slot(t.k.current, TcbSlot::CSpace)).map(|s| s.cap);
    let (addr, radix) = match root {
        Some(Cap::CNode { addr, radix }) => (addr, radix),
        _ => (ROOT_CNODE, testbed::ROOT_RADIX),
    };
    let fits: Vec<u64> = (0..(1u64 << radix).min(256))
        .filter(|i| {
            let c = t.k.store.slots.get(&cnode_slot(addr, *i)).map(|s| s.cap).unwrap_or_default();
            match kind {
                Some(k) => is_kind(k, &c),
                None => c == Cap::Null,
            }
        })
        .collect();
    match fits.len() {
        0 => Word(u64::from(index)),
        n => Word(fits[usize::from(index) % n]),
    }
}

std::thread_local! {
    /// Whether kernel entries are compared with the model: not inside a `Chain`, whose
    /// hundreds of entries on a state of hundreds of slots would cost more than the rest
    /// of the input (it exercises deletion across kernel entries, which the model leaves
    /// out anyway).
    static MODEL: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// One kernel entry, checked against the reference model: the model starts from the
/// kernel's state before the entry (as `project` abstracts it), and its prediction must
/// equal the kernel's state after it: every status and message in the threads'
/// registers, the capabilities and their derivation, thread states, queues, and the
/// thread that runs next. Entries the model leaves out, and deletions that take more than
/// one entry, are checked only by the invariants.
fn entered(t: &mut Testbed, event: Event, run: impl FnOnce(&mut Testbed) -> Next) -> Next {
    if !MODEL.get() {
        return run(t);
    }
    let cur = t.k.current;
    let rip = t.k.store.tcbs.get(&cur).map_or(0, |x| x.context.rip);
    let before = describable(t).then(|| project(t));
    let next = run(t);
    let Some(mut model) = before else { return next };
    // A delete or revoke that ran out of budget rewinds its thread to the `syscall`
    // instruction, its partial work done; that work may have woken a thread that now
    // runs instead (a waiter on a deleted endpoint). The next step starts from the
    // kernel's state again, so the model only skips this one.
    let restarted = t.k.store.tcbs.get(&cur).is_some_and(|x| x.context.rip == rip.wrapping_sub(2));
    if restarted || !describable(t) {
        return next;
    }
    let outcome = model.step(event);
    let shut = matches!(next, Next::Shutdown(_));
    match outcome {
        Outcome::Unmodeled(_) => {}
        Outcome::Shutdown => assert!(shut, "the model shuts down after {event:?}, the kernel not"),
        Outcome::Done => {
            assert!(!shut, "the kernel shuts down after {event:?}, the model not");
            if let Some(d) = diff(&project(t), &model) {
                panic!("the kernel and the model differ after {event:?} by {cur:#x}: {d}");
            }
        }
    }
    next
}

/// The syscall in the current thread's registers, through the fastpath first when
/// `fast`. A call the fastpath takes is also made on a copy of the kernel through the
/// slow path alone: the two must agree on everything, the next thread included.
fn enter_syscall(t: &mut Testbed, fast: bool) -> Next {
    let number = t.k.store.tcb(t.k.current).context.rax;
    let eligible = number == Syscall::Call as u64 || number == Syscall::ReplyRecv as u64;
    if !fast {
        return t.k.syscall(&mut t.out);
    }
    if !eligible {
        // Declined at once: the fastpath handles only these two.
        assert!(!t.k.fastpath().taken(), "the fastpath took syscall {number}");
        return t.k.syscall(&mut t.out);
    }
    let mut slow = t.clone();
    if !t.k.fastpath().taken() {
        return t.k.syscall(&mut t.out);
    }
    slow.k.syscall(&mut slow.out);
    if let Some(d) = diff(&project(t), &project(&mut slow)) {
        panic!("the fastpath and the slow path differ on syscall {number}: {d}");
    }
    Next::Run
}

/// One syscall by the current thread, as the entry stub makes it.
#[allow(clippy::too_many_arguments)]
fn sys(
    t: &mut Testbed,
    number: u64,
    rdi: u64,
    rsi: u64,
    w: [u64; 4],
    r12: u64,
    r13: u64,
    fast: bool,
) -> Next {
    let Some(cur) = user_thread(t) else { return Next::Run };
    let revoked = revoke_target(t, number, rdi, rsi, w[0]);
    let c = &mut t.k.store.tcb(cur).context;
    c.rax = number;
    (c.rdi, c.rsi, c.rdx, c.r10, c.r8, c.r9, c.r12, c.r13) =
        (rdi, rsi, w[0], w[1], w[2], w[3], r12, r13);
    let next = entered(t, Event::Syscall, |t| enter_syscall(t, fast));
    if let Some((at, before)) = revoked {
        if t.k.store.tcb(cur).context.rax == 0 {
            assert_eq!(
                cnode::first_descendant(&mut t.k.store, at),
                None,
                "revoke left a descendant"
            );
            for d in before {
                assert_eq!(
                    t.k.store.slot(d).cap,
                    Cap::Null,
                    "slot {d:#x} survived the revoke of {at:#x}"
                );
            }
            if let Cap::Untyped { free, .. } = t.k.store.slot(at).cap {
                assert_eq!(free, 0, "a revoked untyped keeps its watermark");
            }
        }
    }
    next
}

/// An invocation by the current thread.
fn invoke(t: &mut Testbed, cptr: u64, inv: Invocation, w: &[u64]) -> Next {
    let mut words = [0; 4];
    for (d, s) in words.iter_mut().zip(w) {
        *d = *s;
    }
    let info = MsgInfo::new(inv as u64, w.len().min(4) as u8).to_raw();
    sys(t, Syscall::Call as u64, cptr, info, words, 0, 0, false)
}

/// If the syscall is a `CNodeRevoke`, the slot it names and the slots descending from it.
fn revoke_target(
    t: &mut Testbed,
    number: u64,
    cptr: u64,
    rsi: u64,
    w0: u64,
) -> Option<(u64, Vec<u64>)> {
    let info = MsgInfo::from_raw(rsi)?;
    if number != Syscall::Call as u64
        || info.label != Invocation::CNodeRevoke as u64
        || info.len < 1
    {
        return None;
    }
    let root = t.k.store.slot(tcb_slot(t.k.current, TcbSlot::CSpace)).cap;
    let Cap::CNode { addr, radix } = root else { return None };
    if cptr >> radix != 0 {
        return None;
    }
    let Cap::CNode { addr, radix } = t.k.store.slot(addr + (cptr << SLOT_BITS)).cap else {
        return None;
    };
    if w0 >> radix != 0 {
        return None;
    }
    let at = cnode_slot(addr, w0);
    let depth = t.k.store.slot(at).depth;
    let mut below = Vec::new();
    let mut n = t.k.store.slot(at).next;
    while n != 0 && t.k.store.slot(n).depth > depth && below.len() < 100_000 {
        below.push(n);
        n = t.k.store.slot(n).next;
    }
    Some((at, below))
}

/// The frame capability in the root CNode's slot `i`.
fn frame_in(t: &mut Testbed, i: Word) -> Option<u64> {
    match t.k.store.slot(cnode_slot(ROOT_CNODE, i.0 & 0xff)).cap {
        Cap::Frame { addr, .. } => Some(addr),
        _ => None,
    }
}

fn write_words(t: &mut Testbed, frame: u64, words: &[u64]) {
    let page = t.k.store.frame(frame);
    for (chunk, w) in page[vm::REPLY_OFFSET..].chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
}

fn field(index: u8, raw: Word) -> u32 {
    match Field::ALL.get(usize::from(index)) {
        Some(f) => *f as u32,
        None => (raw.0 >> 32) as u32,
    }
}

/// The current vCPU exits (what `arch::vcpu_run::run` does after the guest ran).
fn exit(t: &mut Testbed, op: &Op) -> Next {
    let Op::Exit {
        kind,
        reason,
        qualification,
        len,
        real,
        cr0,
        cr4,
        rflags,
        rip,
        interruptibility,
        gprs,
    } = op
    else {
        return Next::Run;
    };
    let v = t.k.current;
    if v == 0 || t.k.store.sched(v).kind != SchedKind::VCpu {
        return Next::Run;
    }
    // The entry: the initial VMCS and the pending writes are consumed.
    let data = t.k.store.vcpu(v);
    data.init = None;
    data.pending.clear();
    data.launched = true;
    data.gprs.regs[0] = gprs[0].0;
    data.gprs.regs[usize::from(*interruptibility) % 16] = gprs[1].0;
    let reason = if reason.0 < 0x100 {
        ExitReason::ALL[reason.0 as usize % ExitReason::ALL.len()] as u32
    } else {
        reason.0 as u32
    };
    match kind % 8 {
        6 => return t.k.preempt(),
        7 => {
            // A VMX instruction failed; which and how come from the operation's fields.
            let instruction = VmxInstruction::ALL[reason as usize % VmxInstruction::ALL.len()];
            let error = match len % 3 {
                0 => VmxError::FailInvalid,
                1 => VmxError::FailValid(InstructionError::from_number(qualification.0 as u32)),
                _ => VmxError::Unsupported,
            };
            let field = (instruction == VmxInstruction::Vmwrite)
                .then(|| Field::ALL[rip.0 as usize % Field::ALL.len()]);
            return t.k.vcpu_failed(VmxFailure { instruction, field, error });
        }
        _ if reason & 0xffff == ExitReason::ExternalInterrupt as u32 => return t.k.preempt(),
        _ => {}
    }
    let now = data.cached;
    let (cr0, cr4, rflags, rip) = if *real {
        (now.cr0, now.cr4, now.rflags, now.rip)
    } else {
        (cr0.0, cr4.0, rflags.0, rip.0)
    };
    let msg = ExitMessage {
        reason,
        instruction_len: u32::from(*len),
        qualification: qualification.0,
        interruptibility: u32::from(*interruptibility) & 0x1f,
        rip,
        rflags,
        cr0,
        cr4,
        transfer: data.transfer,
        gprs: data.gprs,
        ..ExitMessage::default()
    };
    t.k.vcpu_exit(&msg)
}

/// Perform one operation; `None` once the machine is off.
fn step(t: &mut Testbed, op: &Op) -> Option<()> {
    let op = &op.map_words(|w| resolve(t, w));
    let next = match op {
        Op::Syscall { number, rdi, info, words, r12, r13, fast } => {
            let w = words.map(|w| w.0);
            sys(t, u64::from(*number % 16), rdi.0, info.raw(), w, r12.0, r13.0, *fast)
        }
        Op::Invoke { which, slot, len, words } => {
            let label = Invocation::ALL.get(usize::from(*which) % Invocation::ALL.len());
            let label = if *which == 0xff { 0 } else { label.map_or(0, |l| *l as u64) };
            let info = Info { label: Word(label), flags: len % 5 };
            sys(t, Syscall::Call as u64, slot.0, info.raw(), words.map(|w| w.0), 0, 0, false)
        }
        Op::Retype { untyped, ty, bits, dst, count } => invoke(
            t,
            untyped.0,
            Invocation::UntypedRetype,
            // At most 16 at a time (and 0, refused): every later step walks each object.
            &[u64::from(*ty % 11), u64::from(*bits), dst.0, u64::from(*count % 17)],
        ),
        Op::Chain { untyped, dst, depth } => {
            let (u, top, new) = (untyped.0, dst.0, dst.0.wrapping_add(1));
            let cnode = |t: &mut Testbed, at| {
                invoke(t, u, Invocation::UntypedRetype, &[ObjectType::CNode as u64, 1, at, 1])
            };
            MODEL.set(false);
            let mut next = cnode(t, top);
            for _ in 1..*depth {
                cnode(t, new);
                invoke(t, new, Invocation::CNodeMove, &[top, 0]);
                next = invoke(t, slot::CNODE, Invocation::CNodeMove, &[new, top]);
            }
            MODEL.set(true);
            next
        }
        Op::Spawn { dst, cspace, vspace, fault, priority } => {
            let d = dst.0;
            invoke(t, slot::UNTYPED, Invocation::UntypedRetype, &[ObjectType::Tcb as u64, 0, d, 1]);
            invoke(t, d, Invocation::TcbConfigure, &[cspace.0, vspace.0, fault.0]);
            invoke(t, d, Invocation::TcbSetPriority, &[u64::from(*priority)]);
            invoke(t, d, Invocation::TcbResume, &[])
        }
        Op::VcpuSetup { base, mode, priority, mask, controls } => {
            let b = base.0;
            let objects = [
                (ObjectType::VCpu, 0),
                (ObjectType::GuestSpace, 14),
                (ObjectType::Endpoint, 0),
                (ObjectType::Frame, 0),
                (ObjectType::Frame, 0),
            ];
            for (i, (ty, bits)) in objects.into_iter().enumerate() {
                let dst = b.wrapping_add(i as u64);
                invoke(t, slot::UNTYPED, Invocation::UntypedRetype, &[ty as u64, bits, dst, 1]);
            }
            let s = |i: u64| b.wrapping_add(i);
            invoke(t, s(4), Invocation::FrameMapGuest, &[s(1), 0x1000, map::WRITE | map::EXECUTE]);
            let mask = u64::from(*mask) & TransferMask::ALL.bits();
            invoke(t, b, Invocation::VCpuConfigure, &[s(1), s(2), s(3), mask]);
            let start =
                u64::from(mode % 4) | u64::from(*priority) << 8 | u64::from(*controls) << 16;
            invoke(t, b, Invocation::VCpuStart, &[start, 0x1000, 0x8000, 0])
        }
        Op::Exit { .. } => exit(t, op),
        Op::ReplyArea { frame, flags, count, gpr_mask, injection, gprs, writes } => {
            let Some(f) = frame_in(t, *frame) else { return Some(()) };
            let inj = injection.0;
            let mut r = ExitReply::new();
            // Bit 4 is no defined flag: the kernel must refuse it.
            r.flags = bytemuck::cast(u32::from(*flags & 0x1f));
            r.count = u32::from(*count);
            r.gpr_mask = *gpr_mask;
            r.injection = EventInjection::from_raw(inj as u32);
            r.injection_error = (inj >> 32) as u32;
            for (i, reg) in r.gprs.regs.iter_mut().enumerate() {
                *reg = gprs[i % 2].0;
            }
            for (slot, (index, value)) in r.writes.iter_mut().zip(writes) {
                (slot.field, slot.value) = (field(*index, *value), value.0);
            }
            if let Some(area) = protocols::vcpu_page::reply_mut(t.k.store.frame(f)) {
                *area = r;
            }
            Next::Run
        }
        Op::ReplyRaw { frame, words } => {
            let Some(f) = frame_in(t, *frame) else { return Some(()) };
            let w: Vec<u64> = words.iter().map(|w| w.0).collect();
            write_words(t, f, &w);
            Next::Run
        }
        Op::Tick => entered(t, Event::Tick, |t| t.k.preempt()),
        Op::Cpu { which } => {
            let cpu = usize::from(*which) % t.k.cpus;
            t.k.enter_on(cpu);
            entered(t, Event::Reschedule, |t| t.k.schedule())
        }
        Op::Irq { lines } => {
            let fired = *lines & t.out.unmasked;
            entered(t, Event::Irqs(fired), |t| t.k.interrupts(&mut t.out, fired))
        }
        Op::Fault { vector, error, addr } => match user_thread(t) {
            Some(_) => {
                let (vector, error, address) = (u64::from(*vector), error.0, addr.0);
                entered(t, Event::Fault { vector, error, address }, |t| {
                    t.k.fault(vector, error, address)
                })
            }
            None => Next::Run,
        },
    };
    // What the hardware layer does before user code runs again.
    t.k.tlb_stale = false;
    t.k.ept_stale = false;
    t.k.vmcs_released = false;
    match next {
        Next::Shutdown(_) => None,
        _ => Some(()),
    }
}

/// Where an object lives, as its capability says: `(address, size bits, type)`.
fn region(cap: &Cap) -> Option<(u64, u8, ObjectType)> {
    Some(match *cap {
        Cap::Untyped { base, size_bits, .. } => (base, size_bits, ObjectType::Untyped),
        Cap::CNode { addr, radix } => (addr, radix + SLOT_BITS, ObjectType::CNode),
        Cap::Tcb { addr } => (addr, TCB_BITS, ObjectType::Tcb),
        Cap::Endpoint { addr, .. } => (addr, ENDPOINT_BITS, ObjectType::Endpoint),
        Cap::Notification { addr, .. } => (addr, NOTIFICATION_BITS, ObjectType::Notification),
        Cap::Frame { addr, size: FrameSize::Small, .. } => (addr, FRAME_BITS, ObjectType::Frame),
        Cap::Frame { addr, size: FrameSize::Large, .. } => {
            (addr, FrameSize::Large.bits(), ObjectType::LargeFrame)
        }
        Cap::VSpace { addr, size_bits } => (addr, size_bits, ObjectType::VSpace),
        Cap::VCpu { addr } => (addr, VCPU_BITS, ObjectType::VCpu),
        Cap::GuestSpace { addr, size_bits } => (addr, size_bits, ObjectType::GuestSpace),
        Cap::Reply { addr } => (addr, REPLY_BITS, ObjectType::Reply),
        // Capabilities that name no memory (I/O ports, IRQs).
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

fn end(addr: u64, bits: u8) -> u64 {
    addr + (1u64 << bits)
}

fn badge(cap: &Cap) -> Option<u64> {
    match *cap {
        Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } => Some(badge),
        _ => None,
    }
}

/// The derivation tree's shape, rights, badges and untyped containment (`slots` holds
/// only occupied slots).
fn check_tree(slots: &AddrMap<Slot>) {
    let live = slots;
    for (at, s) in live {
        if s.next != 0 {
            let n =
                live.get(&s.next).unwrap_or_else(|| panic!("{at:#x} links to empty {:#x}", s.next));
            assert_eq!(n.prev, *at, "next/prev disagree at {at:#x}");
        }
        if s.prev != 0 {
            let p = live
                .get(&s.prev)
                .unwrap_or_else(|| panic!("{at:#x} links back to empty {:#x}", s.prev));
            assert_eq!(p.next, *at, "prev/next disagree at {at:#x}");
        }
    }
    let mut seen = 0usize;
    for (head, h) in live.iter().filter(|(_, s)| s.prev == 0) {
        assert_eq!(h.depth, 0, "list head {head:#x} has depth {}", h.depth);
        // Ancestors of the node being visited, by depth.
        let mut stack: Vec<(u64, Cap)> = Vec::new();
        let mut at = *head;
        while at != 0 {
            seen += 1;
            assert!(seen <= live.len(), "the derivation lists have a cycle");
            let s = live[&at];
            let d = s.depth as usize;
            assert!(d <= stack.len(), "depth jumps from {} to {d} at {at:#x}", stack.len());
            stack.truncate(d);
            if let Some((parent_at, parent)) = stack.last() {
                let (cap, parent) = (s.cap, *parent);
                assert!(
                    parent.rights().contains(cap.rights()),
                    "rights escalated: {cap:?} in {at:#x} derives from {parent:?} in {parent_at:#x}"
                );
                // Memory comes only from untyped; authorities that name no memory (IRQ
                // control, I/O ports) hand out other capabilities of their own kind.
                let factory = matches!(parent, Cap::Untyped { .. }) || region(&parent).is_none();
                assert!(
                    factory || cap.same_object(&parent),
                    "{cap:?} in {at:#x} derives from an unrelated {parent:?}"
                );
                if let (Some(b), Some(pb)) = (badge(&cap), badge(&parent)) {
                    assert!(pb == 0 || b == pb, "badge {pb:#x} lost in a copy: {cap:?}");
                }
            }
            // Every object lies below the watermark of the nearest untyped above it.
            let above = stack.iter().rev().find_map(|(_, c)| match *c {
                Cap::Untyped { base, free, .. } => Some((base, free)),
                _ => None,
            });
            if let (Some((base, free)), Some((addr, bits, _))) = (above, region(&s.cap)) {
                assert!(
                    addr >= base && end(addr, bits) <= base + free,
                    "{:?} at {at:#x} lies outside its untyped's used part [{base:#x}, +{free:#x})",
                    s.cap
                );
            }
            stack.push((at, s.cap));
            at = s.next;
        }
    }
    assert_eq!(seen, live.len(), "capabilities outside every derivation list");
}

/// Indexes over the retype log (`FakeStore::created`), kept from step to step since the
/// log only grows: the last time each exact object was made, the last creation of each
/// block (in address order), and the block sizes in use.
#[derive(Default)]
struct RetypeLog {
    seen: usize,
    last_made: HashMap<(u8, u64, u8), usize, Fx>,
    last_block: std::collections::BTreeMap<(u64, u8), usize>,
    sizes: std::collections::BTreeSet<u8>,
}

impl RetypeLog {
    fn update(&mut self, created: &[(ObjectType, u64, u8)]) {
        for (i, &(ty, addr, bits)) in created.iter().enumerate().skip(self.seen) {
            assert!(
                bits < 64 && addr.trailing_zeros() >= u32::from(bits),
                "misaligned {ty:?} at {addr:#x}"
            );
            self.last_made.insert((ty as u8, addr, bits), i);
            self.last_block.insert((addr, bits), i);
            self.sizes.insert(bits);
        }
        self.seen = created.len();
    }
}

/// A fast hasher for the checker's maps (addresses and small keys; no adversary here).
#[derive(Clone, Copy, Default)]
struct Fx;

impl std::hash::BuildHasher for Fx {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A live object: where it is and which retype made it (`None`: made at boot).
#[derive(Clone, Copy, Debug)]
struct Object {
    addr: u64,
    bits: u8,
    ty: ObjectType,
    made: Option<usize>,
    /// For an untyped: its watermark.
    free: u64,
}

fn boot_objects() -> [(u64, u8, ObjectType); 4] {
    [
        (ROOT_TCB, TCB_BITS, ObjectType::Tcb),
        (ROOT_CNODE, testbed::ROOT_RADIX + SLOT_BITS, ObjectType::CNode),
        (ROOT_VSPACE, 16, ObjectType::VSpace),
        (testbed::UNTYPED_BASE, testbed::UNTYPED_BITS, ObjectType::Untyped),
    ]
}

/// Every capability names a made object; live objects never overlap, except untyped
/// regions and what was made from them; nothing lies in the part of an untyped region
/// that is still free (which the next retype would hand out again).
fn check_objects(t: &Testbed, log: &mut RetypeLog) -> Vec<Object> {
    let s = &t.k.store;
    log.update(&s.created);
    let (last_made, last_block, sizes) = (&log.last_made, &log.last_block, &log.sizes);
    // Untyped capabilities are never copied, so each is its own object (a region retyped
    // into an untyped of its own size gives two with one address and size).
    let mut untyped: Vec<Object> = Vec::new();
    let mut objects: HashMap<(u64, u8, u8), Object, Fx> = HashMap::default();
    for sl in s.slots.values() {
        let Some((addr, bits, ty)) = region(&sl.cap) else { continue };
        let made = last_made.get(&(ty as u8, addr, bits)).copied();
        let boot = boot_objects().contains(&(addr, bits, ty));
        assert!(made.is_some() || boot, "{:?} names memory never made into a {ty:?}", sl.cap);
        match sl.cap {
            Cap::Untyped { free, .. } => {
                assert!(free <= 1u64 << bits, "{:?}: watermark past the end", sl.cap);
                untyped.push(Object { addr, bits, ty, made: None, free });
            }
            _ => {
                objects.insert((addr, bits, ty as u8), Object { addr, bits, ty, made, free: 0 });
            }
        }
    }
    // Nothing made after a (non-untyped) object overlaps it. Blocks are naturally
    // aligned powers of two, so an overlapping block lies inside the object or contains it.
    for o in objects.values() {
        let after = |i: usize| o.made.is_none_or(|m| i > m);
        for (&(addr, bits), &i) in last_block.range((o.addr, 0)..(end(o.addr, o.bits), 0)) {
            let own = (addr, bits) == (o.addr, o.bits) && Some(i) == o.made;
            assert!(own || !after(i), "retype #{i} (2^{bits} at {addr:#x}) overlaps live {o:?}");
        }
        for &bits in sizes.iter().filter(|b| **b > o.bits) {
            let addr = o.addr & !((1u64 << bits) - 1);
            if let Some(&i) = last_block.get(&(addr, bits)) {
                assert!(!after(i), "retype #{i} (2^{bits} at {addr:#x}) covers live {o:?}");
            }
        }
    }
    // Live objects are pairwise disjoint.
    let mut list: Vec<Object> = objects.into_values().collect();
    list.sort_by_key(|o| o.addr);
    for w in list.windows(2) {
        assert!(
            end(w[0].addr, w[0].bits) <= w[1].addr,
            "live objects overlap: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    // Every object inside an untyped region lies in its used part; of two overlapping
    // regions one holds the other in its used part.
    let used = |u: &Object, o: &Object| o.addr >= u.addr && end(o.addr, o.bits) <= u.addr + u.free;
    for u in &untyped {
        let from = list.partition_point(|o| end(o.addr, o.bits) <= u.addr);
        for o in list[from..].iter().take_while(|o| o.addr < end(u.addr, u.bits)) {
            assert!(used(u, o), "{o:?} lies in the free part of untyped {u:?}");
        }
    }
    for (i, a) in untyped.iter().enumerate() {
        for b in untyped.iter().skip(i + 1) {
            let overlaps = a.addr < end(b.addr, b.bits) && b.addr < end(a.addr, a.bits);
            assert!(
                !overlaps || used(a, b) || used(b, a),
                "untyped regions overlap: {a:?} and {b:?}"
            );
        }
    }
    list.extend(untyped);
    list
}

/// Present leaf entries of the 4-level table at `root` (`entries` of the top level):
/// `(virtual address, physical address)`, and every table visited.
fn walk(t: &mut Testbed, root: u64, top: usize, ept: bool) -> (Vec<(u64, u64)>, Vec<u64>) {
    let present = |e: u64| if ept { e & 7 != 0 } else { e & PRESENT != 0 };
    let mut leaves = Vec::new();
    let mut tables = vec![root];
    let mut todo = vec![(root, 3u32, 0u64)];
    while let Some((table, level, base)) = todo.pop() {
        let limit = if level == 3 { top } else { 512 };
        // One copy of the table, scanned eight entries at a time: tables are sparse, and
        // every comparison here costs a coverage callback.
        let page = *t.k.store.frame(table & ADDR_MASK);
        let words: Vec<u64> = page
            .chunks_exact(8)
            .take(limit)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let mut entries = Vec::new();
        for (g, group) in words.chunks(8).enumerate() {
            if group.iter().fold(0, |acc, e| acc | e) == 0 {
                continue;
            }
            for (j, e) in group.iter().enumerate() {
                if present(*e) {
                    entries.push((g * 8 + j, *e));
                }
            }
        }
        for (i, e) in entries {
            let va = base | (i as u64) << (12 + 9 * level);
            if level == 0 || (e & HUGE != 0 && level < 3) {
                leaves.push((va, e & ADDR_MASK));
            } else {
                tables.push(e & ADDR_MASK);
                todo.push((e & ADDR_MASK, level - 1, va));
            }
        }
    }
    (leaves, tables)
}

/// Every mapping points at a frame whose capability records it; tables stay in their
/// space's object.
fn check_mappings(t: &mut Testbed, objects: &[Object]) {
    let mut mapped: HashSet<(u64, u64, u64)> = HashSet::new();
    for s in t.k.store.slots.values() {
        if let Cap::Frame { addr, mapped: Some(Mapping { vspace, vaddr }), .. } = s.cap {
            mapped.insert((vspace, vaddr, addr));
        }
    }
    for o in objects {
        let ept = match o.ty {
            ObjectType::VSpace => false,
            ObjectType::GuestSpace => true,
            _ => continue,
        };
        if !t.k.vspaces.is_live(o.addr) {
            continue;
        }
        let (leaves, tables) = walk(t, o.addr, if ept { 512 } else { 256 }, ept);
        for table in tables {
            assert!(
                table >= o.addr && table < end(o.addr, o.bits),
                "a table of {o:?} at {table:#x} lies outside it"
            );
        }
        for (va, pa) in leaves {
            let boot = o.addr == ROOT_VSPACE && va == USER_PAGE && pa == BOOT_PAGE;
            assert!(
                boot || mapped.contains(&(o.addr, va, pa)),
                "{va:#x} in {o:?} maps {pa:#x}, which no frame capability records"
            );
        }
    }
}

/// Threads named by a live capability.
fn live_threads(objects: &[Object]) -> HashSet<u64> {
    objects
        .iter()
        .filter(|o| matches!(o.ty, ObjectType::Tcb | ObjectType::VCpu))
        .map(|o| o.addr)
        .collect()
}

/// Walk a thread queue without changing it.
fn queue(t: &mut Testbed, head: u64, bound: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut n = head;
    while n != 0 {
        assert!(out.len() <= bound, "a thread queue has a cycle");
        out.push(n);
        n = sched_of(t, n).map_or(0, |x| x.next);
    }
    out
}

/// Run queue, current thread and IPC queues.
fn check_threads(t: &mut Testbed, objects: &[Object], pending: u64) {
    let threads = live_threads(objects);
    let all = schedulables(t);
    let bound = all.len();
    // The run queues are private: dequeue from a copy and put the links back.
    let links: HashMap<u64, u64> =
        all.iter().filter_map(|a| Some((*a, sched_of(t, *a)?.next))).collect();
    let mut sched = t.k.sched.clone();
    let mut queued = HashSet::new();
    let mut orders = Vec::new();
    for cpu in 0..kernel::acpi::MAX_CPUS {
        let mut order = Vec::new();
        while let Some(th) = sched.dequeue(&mut t.k.store, cpu) {
            assert!(links.contains_key(&th), "the run queue holds {th:#x}, which is no thread");
            assert!(queued.insert(th), "thread {th:#x} queued twice");
            order.push(th);
            assert!(queued.len() <= bound, "the run queue does not end");
        }
        assert!(cpu < t.k.cpus || order.is_empty(), "CPU {cpu}, not online, has a run queue");
        orders.push(order);
    }
    for (a, n) in &links {
        t.k.store.sched(*a).next = *n;
    }
    for (cpu, order) in orders.iter().enumerate() {
        let mut last = u8::MAX;
        for th in order {
            let tcb = t.k.store.sched(*th);
            assert_eq!(tcb.state, ThreadState::Ready, "thread {th:#x} in a run queue is not Ready");
            assert!(threads.contains(th), "the run queue holds a destroyed thread {th:#x}");
            assert!(tcb.priority <= last, "CPU {cpu}'s run queue out of priority order");
            assert_eq!(usize::from(tcb.cpu), cpu, "thread {th:#x} waits in another CPU's queue");
            last = tcb.priority;
        }
    }
    // One current thread per CPU, each ready, of that CPU, in no queue; none outranked
    // by a thread queued on its CPU unless a reschedule IPI is on its way there.
    let mut running = HashSet::new();
    for (cpu, order) in orders.iter().enumerate().take(t.k.cpus) {
        let cur = t.k.running_on(cpu);
        let top = order.first().map(|th| t.k.store.sched(*th).priority);
        if pending & (1 << cpu) == 0 {
            let outranked = match cur {
                0 => top.is_some(),
                _ => top.is_some_and(|p| p > t.k.store.sched(cur).priority),
            };
            assert!(!outranked, "CPU {cpu} runs {cur:#x} while a thread of priority {top:?} waits");
        }
        if cur == 0 {
            continue;
        }
        assert!(running.insert(cur), "{cur:#x} runs on two CPUs");
        assert!(threads.contains(&cur), "the current thread {cur:#x} was destroyed");
        let s = *t.k.store.sched(cur);
        assert_eq!(s.state, ThreadState::Ready, "the current thread {cur:#x} is not Ready");
        assert_eq!(usize::from(s.cpu), cpu, "{cur:#x} runs on CPU {cpu}, not its own");
        assert!(!queued.contains(&cur), "the current thread {cur:#x} is also queued");
    }
    // IPC queues: only threads blocked there, each in one queue, and none missing.
    let mut waiting: HashMap<u64, ThreadState> = HashMap::new();
    let endpoints: Vec<u64> =
        objects.iter().filter(|o| o.ty == ObjectType::Endpoint).map(|o| o.addr).collect();
    for ep in endpoints {
        let e = *t.k.store.endpoint(ep);
        let q = queue(t, e.queue.head, bound);
        assert_eq!(q.last().copied().unwrap_or(0), e.queue.tail, "endpoint {ep:#x} tail");
        use kernel::endpoint::EndpointState;
        assert_eq!(
            e.state == EndpointState::Idle,
            q.is_empty(),
            "endpoint {ep:#x} state {:?}",
            e.state
        );
        for th in q {
            let st = sched_of(t, th).map(|x| x.state);
            let ok = match (e.state, st) {
                (EndpointState::Sending, Some(ThreadState::BlockedSend { ep: on, .. })) => on == ep,
                (EndpointState::Receiving, Some(ThreadState::BlockedRecv { ep: on })) => on == ep,
                _ => false,
            };
            assert!(ok, "endpoint {ep:#x} ({:?}) queues {th:#x} in state {st:?}", e.state);
            assert!(threads.contains(&th), "endpoint {ep:#x} queues a destroyed thread");
            assert!(waiting.insert(th, st.unwrap_or_default()).is_none(), "{th:#x} in two queues");
        }
    }
    let ntfns: Vec<u64> =
        objects.iter().filter(|o| o.ty == ObjectType::Notification).map(|o| o.addr).collect();
    for n in ntfns {
        let w = t.k.store.notification(n).waiters;
        let q = queue(t, w.head, bound);
        assert_eq!(q.last().copied().unwrap_or(0), w.tail, "notification {n:#x} tail");
        for th in q {
            let st = sched_of(t, th).map(|x| x.state);
            assert_eq!(
                st,
                Some(ThreadState::BlockedNotification { ntfn: n }),
                "notification {n:#x} queues {th:#x}"
            );
            assert!(threads.contains(&th), "notification {n:#x} queues a destroyed thread");
            assert!(waiting.insert(th, st.unwrap_or_default()).is_none(), "{th:#x} in two queues");
        }
    }
    for th in &threads {
        let tcb = sched_of(t, *th).copied().unwrap_or_default();
        if tcb.kind == SchedKind::Thread {
            // An IPC buffer is a frame the kernel may write.
            let buffer = t.k.store.slots.get(&tcb_slot(*th, TcbSlot::IpcBuffer)).map(|s| s.cap);
            assert!(
                matches!(buffer, None | Some(Cap::Null))
                    || matches!(buffer, Some(Cap::Frame { rights, .. }) if rights.contains(Rights::WRITE)),
                "thread {th:#x} has IPC buffer {buffer:?}"
            );
        }
        // A message the kernel sends for a thread is pending exactly while it waits to be
        // delivered (or, for a fault or a VM exit, answered: directly, or through the
        // Reply object its handler saved the reply in).
        if let Some(m) = tcb.message {
            let ok = match tcb.state {
                ThreadState::BlockedSend { call, .. } => call == m.awaits_reply(),
                ThreadState::BlockedReply { .. } | ThreadState::BlockedSavedReply { .. } => {
                    m.awaits_reply()
                }
                _ => false,
            };
            assert!(ok, "{th:#x} ({:?}) holds a kernel message {m:?}", tcb.state);
        }
        match tcb.state {
            ThreadState::Ready => {
                assert!(
                    running.contains(th) || queued.contains(th),
                    "Ready thread {th:#x} is neither running nor queued"
                );
            }
            ThreadState::BlockedSend { .. }
            | ThreadState::BlockedRecv { .. }
            | ThreadState::BlockedNotification { .. } => {
                assert!(
                    waiting.contains_key(th),
                    "blocked thread {th:#x} ({:?}) is in no queue",
                    tcb.state
                );
                assert!(!queued.contains(th), "blocked thread {th:#x} is in the run queue");
            }
            ThreadState::BlockedSavedReply { reply } => {
                let live = objects.iter().any(|o| o.ty == ObjectType::Reply && o.addr == reply);
                assert!(live, "{th:#x} waits on a reply object {reply:#x} that is gone");
                let holder = t.k.store.replies.get(&reply).map_or(0, |r| r.caller);
                assert_eq!(holder, *th, "reply object {reply:#x} does not hold its caller");
                assert!(!queued.contains(th) && !waiting.contains_key(th), "{th:#x} is queued");
            }
            ThreadState::BlockedReply { .. } | ThreadState::Inactive => {
                assert!(
                    !queued.contains(th) && !waiting.contains_key(th),
                    "{th:#x} ({:?}) is queued",
                    tcb.state
                );
            }
        }
    }
    // A reply object holds nobody, or a live caller waiting on exactly it.
    for o in objects.iter().filter(|o| o.ty == ObjectType::Reply) {
        let caller = t.k.store.replies.get(&o.addr).map_or(0, |r| r.caller);
        if caller != 0 {
            assert!(
                threads.contains(&caller),
                "reply object {:#x} holds a destroyed thread",
                o.addr
            );
            let st = sched_of(t, caller).map(|x| x.state);
            assert_eq!(st, Some(ThreadState::BlockedSavedReply { reply: o.addr }));
        }
    }
    // A vCPU's pending writes passed the validator: no host state, no pointers.
    for o in objects.iter().filter(|o| o.ty == ObjectType::VCpu) {
        if let Some(data) = t.k.store.vcpus.get(&o.addr) {
            for (f, v) in data.pending() {
                assert!(f.vmm_writable(), "vCPU {:#x} would write {f} = {v:#x}", o.addr);
            }
        }
    }
}

/// Check every invariant; `pending`: the CPUs a reschedule IPI is on its way to.
fn check(t: &mut Testbed, log: &mut RetypeLog, pending: u64) {
    // The fake store makes an empty slot on every lookup; an empty slot and a missing one
    // are the same to the kernel, so drop them (after checking they are really empty) to
    // keep every later walk short.
    t.k.store.slots.retain(|at, s| {
        if s.cap == Cap::Null {
            assert_eq!(*s, Slot::default(), "empty slot {at:#x} still linked");
        }
        s.cap != Cap::Null
    });
    check_tree(&t.k.store.slots);
    let objects = check_objects(t, log);
    check_mappings(t, &objects);
    check_threads(t, &objects, pending);
    check_pass_through(t, &objects);
}

/// A guest reaches without exiting only ports its VCpu still holds an `IoPorts`
/// capability for, once the kernel has checked them as it does before every entry.
fn check_pass_through(t: &mut Testbed, objects: &[Object]) {
    use kernel::store::{vcpu_pass_slot, VCPU_PASS_SLOTS};
    use kernel::vcpu::IO_BITMAP_OFFSET;
    for o in objects.iter().filter(|o| o.ty == ObjectType::VCpu) {
        t.k.refresh_pass_through(o.addr);
        let held: Vec<(u16, u16)> = (0..VCPU_PASS_SLOTS)
            .filter_map(|i| match t.k.store.slots.get(&vcpu_pass_slot(o.addr, i)).map(|s| s.cap) {
                Some(Cap::IoPorts { first, last }) => Some((first, last)),
                _ => None,
            })
            .collect();
        for half in 0..2u64 {
            let Some(map) = t.k.store.frames.get(&(o.addr + IO_BITMAP_OFFSET + half * 0x1000))
            else {
                continue;
            };
            // Eight bytes at a time: almost every word is all ones (every port exits).
            let words =
                map.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0xff; 8])));
            for (index, word) in words.enumerate().filter(|(_, w)| *w != u64::MAX) {
                for bit in (0..64).filter(|b| word & (1 << b) == 0) {
                    let port = (half as usize * 0x8000 + index * 64 + bit) as u16;
                    assert!(
                        held.iter().any(|&(f, l)| (f..=l).contains(&port)),
                        "vCPU {:#x} passes port {port:#x} through without a capability",
                        o.addr
                    );
                }
            }
        }
    }
}

/// `SYSCALLS_TRACE=1` prints each operation, its status and the next current thread
/// (to read a crashing input or a seed).
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SYSCALLS_TRACE").is_some())
}

/// Run one input: panics (with the first difference or broken invariant) on a finding.
pub fn run(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let mut t = if vmx_flag(first) { Testbed::with_vmx() } else { Testbed::new() };
    // Two CPUs: threads stay on the first unless moved; `Op::Cpu` interleaves them.
    t.k.cpus = CPUS;
    let mut r = Reader::new(rest);
    let mut log = RetypeLog::default();
    // CPUs asked to reschedule and not yet switched to (their IPI is on its way).
    let mut pending = 0u64;
    check(&mut t, &mut log, pending);
    for _ in 0..MAX_OPS {
        if r.done() {
            break;
        }
        let op = r.op();
        if t.k.current == 0 && !matches!(op, Op::Irq { .. } | Op::Cpu { .. }) {
            // The CPU idles: only an interrupt can happen.
            continue;
        }
        if let Op::Cpu { which } = op {
            pending &= !(1 << (usize::from(which) % CPUS));
        }
        let running = t.k.current;
        if trace() {
            eprintln!("{running:#x}: {op:?} ...");
        }
        let go = step(&mut t, &op);
        if trace() {
            let rax = t.k.store.tcbs.get(&running).map_or(0, |x| x.context.rax);
            eprintln!("{running:#x}: {op:?} -> rax {rax}, now {:#x}", t.k.current);
        }
        if go.is_none() {
            break;
        }
        pending |= core::mem::take(&mut t.k.reschedule);
        check(&mut t, &mut log, pending);
    }
}

/// CPUs the harness runs.
const CPUS: usize = 2;
