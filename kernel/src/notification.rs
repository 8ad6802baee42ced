//! Notification objects: a word of pending signal bits and the threads waiting for one.

use crate::queue::ThreadQueue;

/// An asynchronous notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Notification {
    /// Bits signalled and not yet received.
    pub word: u64,
    /// Signalled since the last receive. A capability without a badge signals no bits,
    /// and that signal must still wake the next receiver (seL4's active state), or a
    /// thread that waits just after it sleeps for good.
    pub signalled: bool,
    /// Threads waiting for a signal.
    pub waiters: ThreadQueue,
}
