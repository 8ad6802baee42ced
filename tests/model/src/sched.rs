//! Scheduling: the highest-priority ready thread runs, first come first served among
//! equals; the running thread keeps the CPU unless a higher priority is ready.

use crate::layout::{tcb_slot, vcpu_slot, TcbSlot, VCpuSlot};
use crate::{Cap, State, ThreadState};

impl State {
    /// Whether `tcb` can run: a thread needs an address space; a vCPU a guest space and
    /// to have been started.
    pub(crate) fn runnable(&mut self, tcb: u64) -> bool {
        if self.thread(tcb).vcpu {
            let guest = matches!(
                self.cdt.get(vcpu_slot(tcb, VCpuSlot::GuestSpace)),
                Some(Cap::GuestSpace { .. })
            );
            return guest && self.thread(tcb).started;
        }
        matches!(self.cdt.get(tcb_slot(tcb, TcbSlot::VSpace)), Some(Cap::VSpace { .. }))
    }

    /// Queue `tcb` to run, behind every thread already ready.
    pub(crate) fn enqueue(&mut self, tcb: u64) {
        self.thread(tcb).state = ThreadState::Ready;
        self.ready.push(tcb);
    }

    /// Make `tcb` ready (queued, unless it is the running thread).
    pub(crate) fn make_ready(&mut self, tcb: u64) {
        if tcb == self.current {
            self.thread(tcb).state = ThreadState::Ready;
        } else {
            self.enqueue(tcb);
        }
    }

    /// The highest priority among threads queued on this CPU.
    fn highest(&mut self) -> Option<u8> {
        let (ready, cpu) = (self.ready.clone(), self.cpu);
        ready.iter().map(|t| *self.thread(*t)).filter(|x| x.cpu == cpu).map(|x| x.priority).max()
    }

    /// Take the first thread of the highest priority queued on this CPU.
    fn dequeue(&mut self) -> Option<u64> {
        let top = self.highest()?;
        let (ready, cpu) = (self.ready.clone(), self.cpu);
        let i = ready.iter().position(|t| {
            let x = self.thread(*t);
            x.cpu == cpu && x.priority == top
        })?;
        Some(self.ready.remove(i))
    }

    /// This step's CPU becomes `cpu` (what runs there is current).
    pub fn enter_on(&mut self, cpu: u8) {
        if cpu == self.cpu {
            return;
        }
        let here = core::mem::take(&mut self.current);
        if here != 0 {
            self.elsewhere.insert(self.cpu, here);
        }
        self.current = self.elsewhere.remove(&cpu).unwrap_or(0);
        self.cpu = cpu;
    }

    /// Take `t` off the other CPU it runs on, if any; one that stays ready goes back into
    /// its CPU's queue when `requeue`.
    pub(crate) fn stop_elsewhere(&mut self, t: u64, requeue: bool) {
        let Some(cpu) = self.elsewhere.iter().find(|(_, x)| **x == t).map(|(c, _)| *c) else {
            return;
        };
        self.elsewhere.remove(&cpu);
        if requeue && self.thread(t).state == ThreadState::Ready {
            self.enqueue(t);
        }
    }

    /// Take `tcb` out of the run queue; whether it was there.
    pub(crate) fn unlink(&mut self, tcb: u64) -> bool {
        let before = self.ready.len();
        self.ready.retain(|t| *t != tcb);
        self.ready.len() != before
    }

    /// Choose the thread to run.
    pub(crate) fn schedule(&mut self) {
        let cur = self.current;
        if cur != 0 && self.thread(cur).state == ThreadState::Ready && !self.runnable(cur) {
            self.thread(cur).state = ThreadState::Inactive;
        }
        if cur != 0 && self.thread(cur).state == ThreadState::Ready {
            let prio = self.thread(cur).priority;
            let moved = self.thread(cur).cpu != self.cpu;
            if !moved && self.highest().is_none_or(|p| p <= prio) {
                return;
            }
            self.enqueue(cur);
        }
        self.current = 0;
        while let Some(next) = self.dequeue() {
            if self.runnable(next) {
                self.current = next;
                self.thread(next).state = ThreadState::Ready;
                return;
            }
            self.thread(next).state = ThreadState::Inactive;
        }
    }

    /// A timer tick: the running thread goes behind its equals.
    pub(crate) fn preempt(&mut self) {
        let cur = self.current;
        if cur != 0 && self.thread(cur).state == ThreadState::Ready {
            self.enqueue(cur);
            self.current = 0;
        }
        self.schedule();
    }

    /// Interrupts on `lines`: each line's bound notification is signalled (with its
    /// badge, or the line's bit) and the line masked until acknowledged.
    pub(crate) fn interrupts(&mut self, lines: u16) {
        use protocols::io::{IRQ_LINES, IRQ_TIMER};
        for irq in (0..IRQ_LINES).filter(|i| lines & (1 << i) != 0 && *i != IRQ_TIMER) {
            self.irqs.unmasked &= !(1 << irq);
            let at = crate::layout::cnode_slot(self.irqs.node, u64::from(irq));
            if let Some(Cap::Notification { addr, badge, .. }) = self.cdt.get(at) {
                self.signal(addr, if badge != 0 { badge } else { 1 << irq });
            }
        }
        self.schedule();
    }
}
