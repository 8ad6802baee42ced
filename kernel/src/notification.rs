//! Notification objects: a word of pending signal bits and the threads waiting for one.

use crate::queue::ThreadQueue;

/// An asynchronous notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Notification {
    /// Bits signalled and not yet received.
    pub word: u64,
    /// Threads waiting for a signal.
    pub waiters: ThreadQueue,
}
