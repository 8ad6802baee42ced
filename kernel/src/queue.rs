//! A FIFO of threads linked through `Tcb::next`, used by run queues, endpoints and
//! notifications. A thread is in at most one queue at a time.

use crate::store::Store;

/// Head and tail of a thread queue (0 = empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ThreadQueue {
    /// First thread.
    pub head: u64,
    /// Last thread.
    pub tail: u64,
}

impl ThreadQueue {
    /// No thread.
    pub const EMPTY: Self = Self { head: 0, tail: 0 };

    /// Whether no thread is queued.
    pub const fn is_empty(&self) -> bool {
        self.head == 0
    }

    /// Append `tcb`.
    pub fn push(&mut self, store: &mut impl Store, tcb: u64) {
        store.sched(tcb).next = 0;
        match self.tail {
            0 => self.head = tcb,
            last => store.sched(last).next = tcb,
        }
        self.tail = tcb;
    }

    /// Take the first thread.
    pub fn pop(&mut self, store: &mut impl Store) -> Option<u64> {
        let tcb = self.head;
        if tcb == 0 {
            return None;
        }
        self.head = store.sched(tcb).next;
        if self.head == 0 {
            self.tail = 0;
        }
        store.sched(tcb).next = 0;
        Some(tcb)
    }

    /// Remove `tcb` wherever it is; false if it was not queued here.
    pub fn remove(&mut self, store: &mut impl Store, tcb: u64) -> bool {
        let (mut prev, mut cur) = (0u64, self.head);
        while cur != 0 && cur != tcb {
            prev = cur;
            cur = store.sched(cur).next;
        }
        if cur == 0 {
            return false;
        }
        let next = store.sched(tcb).next;
        match prev {
            0 => self.head = next,
            prev => store.sched(prev).next = next,
        }
        if self.tail == tcb {
            self.tail = prev;
        }
        store.sched(tcb).next = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::ThreadQueue;
    use crate::store::fake::FakeStore;

    #[test]
    fn fifo_with_removal() {
        let mut s = FakeStore::default();
        let mut q = ThreadQueue::default();
        for a in [1, 2, 3, 4] {
            q.push(&mut s, a * 0x1000);
        }
        assert!(q.remove(&mut s, 0x2000));
        assert!(q.remove(&mut s, 0x4000));
        assert!(!q.remove(&mut s, 0x4000));
        q.push(&mut s, 0x5000);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop(&mut s)).collect();
        assert_eq!(order, [0x1000, 0x3000, 0x5000]);
        assert!(q.is_empty());
    }

    #[test]
    fn removing_the_head_or_a_middle_thread_keeps_the_tail() {
        let mut s = FakeStore::default();
        let mut q = ThreadQueue::default();
        for a in [1, 2, 3] {
            q.push(&mut s, a * 0x1000);
        }
        assert!(q.remove(&mut s, 0x2000));
        assert_eq!(q.tail, 0x3000);
        assert!(q.remove(&mut s, 0x1000));
        assert_eq!((q.head, q.tail), (0x3000, 0x3000));
        q.push(&mut s, 0x4000);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop(&mut s)).collect();
        assert_eq!(order, [0x3000, 0x4000]);
    }
}
