//! Fixed-priority round-robin run queues, one set per CPU: a thread waits in its own
//! CPU's queues (`Schedulable::cpu`) and only that CPU runs it. The running thread is not
//! in a queue; a bitmap finds the highest non-empty priority in four word scans.

use crate::acpi::MAX_CPUS;
use crate::queue::ThreadQueue;
use crate::store::Store;
use crate::tcb::ThreadState;

/// `cpu` as an index of the per-CPU tables: one AND, no bounds check. No thread has a
/// CPU beyond them (`TcbSetAffinity` refuses it), so the wrap never happens.
#[inline(always)]
pub fn index(cpu: usize) -> usize {
    cpu % MAX_CPUS
}

const _: () = assert!(MAX_CPUS.is_power_of_two(), "a CPU index is masked, not checked");

/// Every CPU's queues.
#[derive(Clone, Debug)]
pub struct Scheduler {
    cpus: [RunQueues; MAX_CPUS],
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// No thread queued anywhere.
    pub const fn new() -> Self {
        Self { cpus: [RunQueues::EMPTY; MAX_CPUS] }
    }

    /// CPU `cpu`'s queues.
    #[inline(always)]
    pub fn on(&self, cpu: usize) -> &RunQueues {
        &self.cpus[index(cpu)]
    }

    /// Mark `tcb` ready and append it to its priority's queue on its CPU.
    pub fn enqueue(&mut self, store: &mut impl Store, tcb: u64) {
        let cpu = usize::from(store.sched(tcb).cpu);
        self.cpus[index(cpu)].enqueue(store, tcb);
    }

    /// Take the first thread of the highest priority on `cpu`.
    pub fn dequeue(&mut self, store: &mut impl Store, cpu: usize) -> Option<u64> {
        self.cpus[index(cpu)].dequeue(store)
    }

    /// Remove `tcb` from its run queue if it is in one.
    pub fn unlink(&mut self, store: &mut impl Store, tcb: u64) -> bool {
        let cpu = usize::from(store.sched(tcb).cpu);
        self.cpus[index(cpu)].unlink(store, tcb)
    }
}

/// One CPU's queues: one FIFO per priority.
#[derive(Clone, Debug)]
pub struct RunQueues {
    queues: [ThreadQueue; 256],
    bitmap: [u64; 4],
}

impl RunQueues {
    const EMPTY: Self = Self { queues: [ThreadQueue::EMPTY; 256], bitmap: [0; 4] };

    /// Mark `tcb` ready and append it to its priority's queue.
    fn enqueue(&mut self, store: &mut impl Store, tcb: u64) {
        let t = store.sched(tcb);
        t.state = ThreadState::Ready;
        let p = usize::from(t.priority);
        self.queues[p].push(store, tcb);
        self.bitmap[p / 64] |= 1 << (p % 64);
    }

    /// The highest priority with a queued thread.
    pub fn highest(&self) -> Option<u8> {
        (0..4).rev().find_map(|w| {
            let bits = self.bitmap[w];
            (bits != 0).then(|| (w * 64 + 63 - bits.leading_zeros() as usize) as u8)
        })
    }

    /// Whether a thread of priority above `prio` is queued. Only the bitmap words at and
    /// above `prio`'s are looked at: the fastpath's question, answered in a few steps.
    #[inline]
    pub fn any_above(&self, prio: u8) -> bool {
        let p = usize::from(prio);
        let (word, bit) = (p / 64, p % 64);
        // Bits strictly above `bit` in `prio`'s own word (none when `bit` is 63).
        let above = if bit == 63 { 0 } else { !0u64 << (bit + 1) };
        self.bitmap[word] & above != 0 || self.bitmap[word + 1..].iter().any(|w| *w != 0)
    }

    /// Whether a thread of priority `prio` or above is queued: the fastpath may switch to
    /// a thread of priority `prio` only when none is, since the slow path would queue that
    /// thread behind its equals (round robin) and run the first of them instead.
    #[inline]
    pub fn any_at_or_above(&self, prio: u8) -> bool {
        let p = usize::from(prio);
        let (word, bit) = (p / 64, p % 64);
        self.bitmap[word] & (!0u64 << bit) != 0 || self.bitmap[word + 1..].iter().any(|w| *w != 0)
    }

    /// Take the first thread of the highest priority.
    fn dequeue(&mut self, store: &mut impl Store) -> Option<u64> {
        let p = usize::from(self.highest()?);
        let tcb = self.queues[p].pop(store);
        self.update(p);
        tcb
    }

    /// Remove `tcb` from its run queue if it is in one.
    fn unlink(&mut self, store: &mut impl Store, tcb: u64) -> bool {
        let p = usize::from(store.sched(tcb).priority);
        let removed = self.queues[p].remove(store, tcb);
        self.update(p);
        removed
    }

    fn update(&mut self, p: usize) {
        if self.queues[p].is_empty() {
            self.bitmap[p / 64] &= !(1 << (p % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RunQueues, Scheduler};
    use crate::store::fake::FakeStore;
    use crate::store::Store;

    #[test]
    fn highest_priority_first_then_round_robin() {
        let mut s = FakeStore::default();
        let mut q = Scheduler::default();
        for (addr, prio) in [(0x1000, 10), (0x2000, 200), (0x3000, 10), (0x4000, 0)] {
            s.sched(addr).priority = prio;
            q.enqueue(&mut s, addr);
        }
        assert_eq!(q.on(0).highest(), Some(200));
        let order: Vec<u64> = std::iter::from_fn(|| q.dequeue(&mut s, 0)).collect();
        assert_eq!(order, [0x2000, 0x1000, 0x3000, 0x4000]);
        assert_eq!(q.on(0).highest(), None);
    }

    #[test]
    fn each_cpu_runs_only_its_own_threads() {
        let mut s = FakeStore::default();
        let mut q = Scheduler::default();
        for (addr, prio, cpu) in [(0x1000, 10, 0), (0x2000, 200, 1), (0x3000, 50, 1)] {
            s.sched(addr).priority = prio;
            s.sched(addr).cpu = cpu;
            q.enqueue(&mut s, addr);
        }
        assert_eq!(q.on(0).highest(), Some(10));
        assert_eq!(q.on(1).highest(), Some(200));
        assert!(q.unlink(&mut s, 0x2000));
        assert_eq!(q.dequeue(&mut s, 1), Some(0x3000));
        assert_eq!(q.dequeue(&mut s, 1), None);
        assert_eq!(q.dequeue(&mut s, 0), Some(0x1000));
    }

    #[test]
    fn any_above_agrees_with_highest() {
        let mut s = FakeStore::default();
        for prios in [vec![], vec![0], vec![63], vec![64], vec![200, 5], vec![255], vec![127, 128]]
        {
            let mut q = RunQueues::EMPTY;
            for (i, p) in prios.iter().enumerate() {
                let tcb = 0x1000 * (i as u64 + 1);
                s.sched(tcb).priority = *p;
                q.enqueue(&mut s, tcb);
            }
            for prio in 0..=255u8 {
                assert_eq!(
                    q.any_above(prio),
                    q.highest().is_some_and(|h| h > prio),
                    "{prios:?} {prio}"
                );
                assert_eq!(
                    q.any_at_or_above(prio),
                    q.highest().is_some_and(|h| h >= prio),
                    "{prios:?} {prio}"
                );
            }
        }
    }

    #[test]
    fn unlinking_the_last_clears_the_priority() {
        let mut s = FakeStore::default();
        let mut q = Scheduler::default();
        s.sched(0x1000).priority = 70;
        q.enqueue(&mut s, 0x1000);
        assert!(q.unlink(&mut s, 0x1000));
        assert_eq!(q.on(0).highest(), None);
    }
}
