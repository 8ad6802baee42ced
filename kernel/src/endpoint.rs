//! Endpoint objects: a queue of senders or of receivers (never both).

use crate::queue::ThreadQueue;

/// Which kind of thread is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EndpointState {
    /// Nobody waits.
    #[default]
    Idle,
    /// Senders wait for a receiver.
    Sending,
    /// Receivers wait for a sender.
    Receiving,
}

/// A synchronous IPC endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Who waits.
    pub state: EndpointState,
    /// The waiting threads.
    pub queue: ThreadQueue,
}
