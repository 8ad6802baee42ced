//! What the kernel sends to a thread's fault endpoint (`TcbConfigure`'s third slot).
//!
//! A thread's fault endpoint is where its supervisor learns what became of it, so the
//! kernel prints nothing at run time: a fault arrives as a call the handler answers
//! (resuming the thread), an exit as a one-way message after which the thread is
//! inactive. A thread without a fault endpoint just stops in either case.

/// Label of a fault message, a call with words `[vector, error code, rip, fault
/// address]`. The thread waits for the reply, which resumes it unchanged, or moved on
/// with [`RESUME_AT`].
pub const FAULT_LABEL: u64 = 0xfa17;

/// Reply label that resumes a faulted thread at the address in word 0.
pub const RESUME_AT: u64 = 1;

/// Label of a thread's exit message, sent (not called) with word 0 = the exit code the
/// thread passed to `ThreadExit`. Once it is delivered the thread is inactive.
pub const EXIT_LABEL: u64 = 0xe417;

/// A message from a thread's fault endpoint, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMessage {
    /// The thread took an exception in ring 3 and waits for the reply.
    Fault {
        /// The exception vector.
        vector: u64,
        /// The error code the CPU pushed (0 for vectors without one).
        error: u64,
        /// Where it faulted.
        rip: u64,
        /// The faulting address (CR2) for a page fault, else 0.
        address: u64,
    },
    /// The thread called `ThreadExit` with this code and is now inactive.
    Exit {
        /// The exit code.
        code: u64,
    },
}

impl FaultMessage {
    /// Decode a received label and words; `None` for any other label.
    pub const fn decode(label: u64, words: [u64; 4]) -> Option<Self> {
        match label {
            FAULT_LABEL => {
                let [vector, error, rip, address] = words;
                Some(Self::Fault { vector, error, rip, address })
            }
            EXIT_LABEL => Some(Self::Exit { code: words[0] }),
            _ => None,
        }
    }

    /// Encode: `(label, length, words)`.
    pub const fn encode(&self) -> (u64, u8, [u64; 4]) {
        match *self {
            Self::Fault { vector, error, rip, address } => {
                (FAULT_LABEL, 4, [vector, error, rip, address])
            }
            Self::Exit { code } => (EXIT_LABEL, 1, [code, 0, 0, 0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FaultMessage, EXIT_LABEL, FAULT_LABEL, RESUME_AT};

    #[test]
    fn labels_are_distinct_from_each_other_and_from_the_resume_reply() {
        assert_ne!(FAULT_LABEL, EXIT_LABEL);
        assert_ne!(RESUME_AT, FAULT_LABEL);
        assert_ne!(RESUME_AT, EXIT_LABEL);
    }

    #[test]
    fn messages_round_trip_with_fixed_encodings() {
        let fault = FaultMessage::Fault { vector: 14, error: 6, rip: 0x40_1234, address: 0xdead };
        assert_eq!(fault.encode(), (0xfa17, 4, [14, 6, 0x40_1234, 0xdead]));
        let exit = FaultMessage::Exit { code: 42 };
        assert_eq!(exit.encode(), (0xe417, 1, [42, 0, 0, 0]));
        for m in [fault, exit] {
            let (label, _, words) = m.encode();
            assert_eq!(FaultMessage::decode(label, words), Some(m));
        }
        assert_eq!(FaultMessage::decode(0x5a, [0; 4]), None);
    }
}
