//! Messages the kernel sends on a thread's behalf, instead of the thread's registers.
//!
//! What becomes of a thread at run time (a fault, its exit, a vCPU's VMX failure) is
//! news for whoever supervises it, not kernel log: the kernel queues the thread on the
//! supervisor's endpoint with one of these pending, and the message is built from it at
//! the rendezvous. A fault and a vCPU's exit are calls (each waits for the reply that
//! resumes it); the others are the last word, a one-way send after which it is inactive.

use protocols::fault::FaultMessage;
use protocols::ipc::MsgInfo;
use protocols::object::vm;
use protocols::vmx_failure::VmxFailure;

/// A message pending for a thread that the kernel sends in its stead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelMessage {
    /// To its fault endpoint: a fault or its exit (`protocols::fault`).
    Thread(FaultMessage),
    /// To a vCPU's exit endpoint: a VM exit (reason, qualification, RIP, instruction
    /// length), when its VMM was not waiting for it.
    VmExit([u64; 4]),
    /// To a vCPU's exit endpoint: a VMX instruction failed while it ran.
    VmxFailure(VmxFailure),
}

impl KernelMessage {
    /// The delivered `MsgInfo` and words.
    pub fn encode(&self) -> (MsgInfo, [u64; 4]) {
        match self {
            Self::Thread(m) => {
                let (label, len, words) = m.encode();
                (MsgInfo::new(label, len), words)
            }
            Self::VmExit(words) => (MsgInfo::new(vm::EXIT_LABEL, 4), *words),
            Self::VmxFailure(f) => {
                (MsgInfo::new(vm::FAILURE_LABEL, VmxFailure::SIZE as u8), f.to_words())
            }
        }
    }

    /// Whether the thread waits for a reply (a call); otherwise it stops once the message
    /// is delivered.
    pub fn awaits_reply(&self) -> bool {
        matches!(self, Self::Thread(FaultMessage::Fault { .. }) | Self::VmExit(_))
    }
}

#[cfg(test)]
mod tests {
    use super::KernelMessage;
    use protocols::fault::{FaultMessage, EXIT_LABEL, FAULT_LABEL};
    use protocols::ipc::MsgInfo;
    use protocols::object::vm;
    use protocols::vmx_failure::{VmxError, VmxFailure, VmxInstruction};

    #[test]
    fn only_a_fault_and_a_vm_exit_wait_for_their_reply() {
        let fault = FaultMessage::Fault { vector: 13, error: 0, rip: 0x40_0000, address: 0 };
        let fault = KernelMessage::Thread(fault);
        let exit = KernelMessage::Thread(FaultMessage::Exit { code: 3 });
        let failure = KernelMessage::VmxFailure(VmxFailure {
            instruction: VmxInstruction::Vmlaunch,
            field: None,
            error: VmxError::FailInvalid,
        });
        let vm_exit = KernelMessage::VmExit([10, 0, 0x1000, 2]);
        assert!(fault.awaits_reply() && !exit.awaits_reply() && !failure.awaits_reply());
        assert!(vm_exit.awaits_reply());
        assert_eq!(vm_exit.encode(), (MsgInfo::new(vm::EXIT_LABEL, 4), [10, 0, 0x1000, 2]));
        assert_eq!(fault.encode(), (MsgInfo::new(FAULT_LABEL, 4), [13, 0, 0x40_0000, 0]));
        assert_eq!(exit.encode(), (MsgInfo::new(EXIT_LABEL, 1), [3, 0, 0, 0]));
        assert_eq!(failure.encode(), (MsgInfo::new(vm::FAILURE_LABEL, 4), [4, 1, 0, 0]));
    }
}
