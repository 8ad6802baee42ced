//! The kernel's state as the reference model (`kernel-model`) describes it: the
//! abstraction function of the `syscalls` target's refinement check. Each step starts the
//! model from the abstraction of the kernel's state before it and compares the model's
//! result with the abstraction of the kernel's state after it.

use kernel::cap::Cap as K;
use kernel::cnode::Slot;
use kernel::endpoint::EndpointState;
use kernel::kernel_message::KernelMessage as KM;
use kernel::paging::FrameSize;
use kernel::schedulable::{Kind, Schedulable};
use kernel::store::fake::AddrMap;
use kernel::store::Store;
use kernel::store::{vcpu_slot, VCpuSlot};
use kernel::tcb::ThreadState as KS;
use kernel::testbed::Testbed;
use kernel::vmx::validator::{decode_reply_into, ValidatedBatch};
use kernel_model::{Cap, Cdt, Endpoint, Irqs, KernelMessage, Notification, Queueing, Regs};
use kernel_model::{State, Thread, ThreadState, VmReply};
use protocols::ipc::IPC_BUFFER_WORDS;
use protocols::vcpu_page;
use std::collections::BTreeMap;

/// A kernel capability as the model has it; `None` for an empty slot or a zombie (which
/// the model has no notion of: the target compares no step while one exists).
pub fn cap(c: &K) -> Option<Cap> {
    Some(match *c {
        K::Null | K::Zombie { .. } => return None,
        K::Untyped { base, size_bits, free } => Cap::Untyped { base, bits: size_bits, free },
        K::CNode { addr, radix } => Cap::CNode { addr, radix },
        K::Tcb { addr } => Cap::Tcb { addr },
        K::Endpoint { addr, badge, rights } => Cap::Endpoint { addr, badge, rights },
        K::Notification { addr, badge, rights } => Cap::Notification { addr, badge, rights },
        K::Frame { addr, size, rights, mapped } => {
            let (large, mapped) = (size == FrameSize::Large, mapped.map(|m| (m.vspace, m.vaddr)));
            Cap::Frame { addr, large, rights, mapped }
        }
        K::VSpace { addr, size_bits } => Cap::VSpace { addr, bits: size_bits },
        K::VCpu { addr } => Cap::VCpu { addr },
        K::GuestSpace { addr, size_bits } => Cap::GuestSpace { addr, bits: size_bits },
        K::IoPorts { first, last } => Cap::IoPorts { first, last },
        K::IrqControl => Cap::IrqControl,
        K::IrqHandler { irq } => Cap::IrqHandler { irq },
        K::Reply { addr } => Cap::Reply { addr },
    })
}

fn state(s: KS) -> ThreadState {
    match s {
        KS::Inactive => ThreadState::Inactive,
        KS::Ready => ThreadState::Ready,
        KS::BlockedSend { ep, badge, call, grant } => {
            ThreadState::BlockedSend { ep, badge, call, grant }
        }
        KS::BlockedRecv { ep } => ThreadState::BlockedRecv { ep },
        KS::BlockedReply { server } => ThreadState::BlockedReply { server },
        KS::BlockedSavedReply { reply } => ThreadState::BlockedSavedReply { reply },
        KS::BlockedNotification { ntfn } => ThreadState::BlockedNotification { ntfn },
    }
}

/// The derivation tree: each list of the kernel's flattened tree, in order.
fn cdt(slots: &AddrMap<Slot>) -> Cdt {
    let mut list = Vec::new();
    let mut heads: Vec<u64> =
        slots.iter().filter(|(_, s)| s.cap != K::Null && s.prev == 0).map(|(a, _)| *a).collect();
    heads.sort_unstable();
    for h in heads {
        let mut at = h;
        while at != 0 && list.len() <= slots.len() {
            let Some(s) = slots.get(&at) else { break };
            if let Some(c) = cap(&s.cap) {
                list.push((at, s.depth, c));
            }
            at = s.next;
        }
    }
    Cdt::from_preorder(&list)
}

/// The scheduling part of the thread or vCPU at `a`, if one is there.
pub fn sched_of(t: &Testbed, a: u64) -> Option<&Schedulable> {
    t.k.store.tcbs.get(&a).map(|x| &x.sched).or_else(|| t.k.store.vcpu_heads.get(&a))
}

/// Every thread's and vCPU's address.
pub fn schedulables(t: &Testbed) -> Vec<u64> {
    t.k.store.tcbs.keys().chain(t.k.store.vcpu_heads.keys()).copied().collect()
}

fn queue(t: &Testbed, head: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut n = head;
    let most = t.k.store.tcbs.len() + t.k.store.vcpu_heads.len();
    while n != 0 && out.len() <= most {
        out.push(n);
        n = sched_of(t, n).map_or(0, |x| x.next);
    }
    out
}

/// The run queues in the order threads would be taken from them, CPU by CPU.
fn ready(t: &mut Testbed) -> Vec<u64> {
    // The queues are private: dequeue from a copy and put the links back.
    let links: Vec<(u64, u64)> =
        schedulables(t).into_iter().filter_map(|a| Some((a, sched_of(t, a)?.next))).collect();
    let mut sched = t.k.sched.clone();
    let mut order = Vec::new();
    for cpu in 0..kernel::acpi::MAX_CPUS {
        while let Some(th) = sched.dequeue(&mut t.k.store, cpu) {
            order.push(th);
            if order.len() > links.len() {
                break;
            }
        }
    }
    for (a, n) in links {
        t.k.store.sched(a).next = n;
    }
    order
}

/// Whether the model can describe this state (no deletion is half done).
pub fn describable(t: &Testbed) -> bool {
    t.k.dying == 0
}

/// The kernel's state as the model sees it.
pub fn project(t: &mut Testbed) -> State {
    let cdt = cdt(&t.k.store.slots);
    let mut threads = BTreeMap::new();
    for a in schedulables(t) {
        let Some(x) = sched_of(t, a) else { continue };
        let message = x.message.map(|m| match m {
            KM::Thread(f) => KernelMessage::Thread(f),
            KM::VmExit(words) => KernelMessage::VmExit(words),
            KM::VmxFailure(f) => KernelMessage::VmxFailure(f),
        });
        let vcpu = x.kind == Kind::VCpu;
        let mut th = Thread {
            state: state(x.state),
            priority: x.priority,
            caller: x.caller,
            message,
            vcpu,
            started: vcpu && t.k.store.vcpus.get(&a).is_some_and(|v| v.started),
            cpu: x.cpu,
            ..Thread::default()
        };
        // A vCPU has no ring-3 registers: the model's stay as they were made.
        if let Some(tcb) = t.k.store.tcbs.get(&a) {
            let c = &tcb.context;
            th.regs = Regs {
                rax: c.rax,
                rdi: c.rdi,
                rsi: c.rsi,
                rdx: c.rdx,
                r10: c.r10,
                r8: c.r8,
                r9: c.r9,
                r12: c.r12,
                r13: c.r13,
                rip: c.rip,
            };
            th.root_task = tcb.root_task;
        }
        threads.insert(a, th);
    }
    // The fake store makes a TCB on first use: a new one is all defaults.
    for (_, c) in cdt.iter() {
        if let Cap::Tcb { addr } | Cap::VCpu { addr } = c {
            let vcpu = matches!(c, Cap::VCpu { .. });
            threads.entry(addr).or_insert(Thread { vcpu, ..Thread::default() });
        }
    }
    let mut endpoints = BTreeMap::new();
    for (a, e) in &t.k.store.endpoints {
        let kind = match e.state {
            EndpointState::Idle => Queueing::Idle,
            EndpointState::Sending => Queueing::Senders,
            EndpointState::Receiving => Queueing::Receivers,
        };
        endpoints.insert(*a, Endpoint { kind, queue: queue(t, e.queue.head) });
    }
    let mut notifications = BTreeMap::new();
    for (a, n) in &t.k.store.notifications {
        notifications.insert(
            *a,
            Notification {
                word: n.word,
                signalled: n.signalled,
                waiters: queue(t, n.waiters.head),
            },
        );
    }
    let replies = t.k.store.replies.iter().map(|(a, r)| (*a, r.caller)).collect();
    let mut buffers = BTreeMap::new();
    for (_, c) in cdt.iter() {
        if let Cap::Frame { addr, .. } = c {
            let words = t.k.store.frames.get(&addr).map_or_else(
                || vec![0; IPC_BUFFER_WORDS],
                |f| {
                    f.chunks_exact(8)
                        .take(IPC_BUFFER_WORDS)
                        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
                        .collect()
                },
            );
            buffers.insert(addr, words);
        }
    }
    State {
        cdt,
        threads,
        endpoints,
        notifications,
        replies,
        buffers,
        ready: ready(t),
        current: t.k.current,
        cpu: t.k.cpu as u8,
        cpus: t.k.cpus as u8,
        elsewhere: (0..t.k.cpus)
            .filter(|c| *c != t.k.cpu && t.k.elsewhere[*c] != 0)
            .map(|c| (c as u8, t.k.elsewhere[c]))
            .collect(),
        irqs: Irqs {
            node: t.k.irqs.node,
            issued: t.k.irqs.issued(),
            unmasked: t.k.irqs.unmasked(),
        },
        space_room: t.k.vspaces.room(),
        vmx: t.k.vmx.is_some(),
        vm_replies: vm_replies(t),
    }
}

/// Each vCPU's reply area and the validator's verdict on it from the vCPU's state now:
/// what a reply would find.
fn vm_replies(t: &mut Testbed) -> BTreeMap<u64, VmReply> {
    let mut out = BTreeMap::new();
    let Some(vmx) = t.k.vmx.as_ref() else { return out };
    let vcpus: Vec<u64> = t.k.store.vcpu_heads.keys().copied().collect();
    for v in vcpus {
        let Some(K::Frame { addr, .. }) =
            t.k.store.slots.get(&vcpu_slot(v, VCpuSlot::MessageFrame)).map(|s| s.cap)
        else {
            continue;
        };
        // A frame never written is all zeros: so is its reply area.
        let area = match t.k.store.frames.get(&addr) {
            Some(page) => vcpu_page::reply(&page[..]).copied(),
            None => Some(bytemuck::Zeroable::zeroed()),
        };
        let content = match (&area, t.k.store.vcpus.get(&v)) {
            (Some(r), Some(data)) => {
                let mut scratch = ValidatedBatch::default();
                decode_reply_into(r, &vmx.caps, &vmx.policy, &data.cached, &mut scratch)
                    .map_err(|e| (u64::from(e.code()), e.field().map_or(0, u64::from)))
            }
            _ => Ok(()),
        };
        out.insert(v, VmReply { area, content });
    }
    out
}

/// The first difference between two normalised states, readably; `None` if equal.
pub fn diff(kernel: &State, model: &State) -> Option<String> {
    let (k, m) = (kernel.normalized(), model.normalized());
    if k == m {
        return None;
    }
    if k.current != m.current {
        return Some(format!("next thread: kernel {:#x}, model {:#x}", k.current, m.current));
    }
    if k.ready != m.ready {
        return Some(format!("run queue: kernel {:x?}, model {:x?}", k.ready, m.ready));
    }
    let keys: std::collections::BTreeSet<u64> =
        k.threads.keys().chain(m.threads.keys()).copied().collect();
    for a in keys {
        let (x, y) = (k.threads.get(&a), m.threads.get(&a));
        if x != y {
            return Some(format!("thread {a:#x}:\n  kernel {x:x?}\n  model  {y:x?}"));
        }
    }
    if k.cdt != m.cdt {
        let ks: Vec<_> = k.cdt.iter().collect();
        let ms: Vec<_> = m.cdt.iter().collect();
        for (a, c) in &ks {
            let other = m.cdt.get(*a);
            if other != Some(*c) || k.cdt.parent(*a) != m.cdt.parent(*a) {
                return Some(format!(
                    "slot {a:#x}: kernel {c:x?} (parent {:x?}), model {other:x?} (parent {:x?})",
                    k.cdt.parent(*a),
                    m.cdt.parent(*a)
                ));
            }
        }
        for (a, c) in &ms {
            if k.cdt.get(*a).is_none() {
                return Some(format!("slot {a:#x}: kernel empty, model {c:x?}"));
            }
        }
        return Some(format!("derivation order differs:\n  kernel {k:x?}\n  model  {m:x?}"));
    }
    if k.endpoints != m.endpoints {
        return Some(format!("endpoints: kernel {:x?}, model {:x?}", k.endpoints, m.endpoints));
    }
    if k.notifications != m.notifications {
        return Some(format!(
            "notifications: kernel {:x?}, model {:x?}",
            k.notifications, m.notifications
        ));
    }
    if k.replies != m.replies {
        return Some(format!("reply objects: kernel {:x?}, model {:x?}", k.replies, m.replies));
    }
    if k.buffers != m.buffers {
        return Some("IPC buffer contents differ".into());
    }
    Some(format!(
        "irqs or space room: kernel {:x?} {}, model {:x?} {}",
        k.irqs, k.space_room, m.irqs, m.space_room
    ))
}
