//! A VMM's reply to a vCPU's exit: accepted or refused, and what becomes of the vCPU.
//!
//! The reply is the reply area of the vCPU's message frame (docs/abi.md). The model states
//! which frame that is, the header's rules, what a refusal does and whether the vCPU runs
//! on; whether the writes and the event suit the VMCS is the validator's verdict, given in
//! [`crate::VmReply::content`].

use crate::layout::{vcpu_slot, VCpuSlot};
use crate::syscall::{Stop, R};
use crate::{Cap, State, ThreadState};
use protocols::error::Error;
use protocols::vmexit::{BatchError, ExitReply, ReplyFlags, MAX_WRITES};
use protocols::x86::MAX_INSTRUCTION_LEN;

/// A refusal: the replier's error and the two words that say why.
type Refusal = (Error, u64, u64);

impl State {
    /// Answer vCPU `v`'s exit with the current thread's reply. An accepted reply lets the
    /// vCPU run (or stops it, if the reply says so); a refused one stops it, and the
    /// replier gets the error with the refusal's code and field in its first two words.
    pub(crate) fn answer_vcpu(&mut self, v: u64) -> R<()> {
        self.thread(v).message = None;
        match self.verdict(v)? {
            Ok(stop) => {
                if stop {
                    self.thread(v).state = ThreadState::Inactive;
                } else {
                    self.make_ready(v);
                }
                Ok(())
            }
            Err((error, code, field)) => {
                self.thread(v).state = ThreadState::Inactive;
                let cur = self.current;
                let r = &mut self.thread(cur).regs;
                (r.rdx, r.r10, r.r8) = (code, field, 0);
                Err(error.into())
            }
        }
    }

    /// Whether `v` takes the reply (and whether it then stops), or the refusal.
    fn verdict(&self, v: u64) -> R<Result<bool, Refusal>> {
        if !matches!(self.cdt.get(vcpu_slot(v, VCpuSlot::MessageFrame)), Some(Cap::Frame { .. })) {
            return Ok(Err((Error::InvalidCapability, 0, 0)));
        }
        if !self.vmx {
            return Ok(Err((Error::NotSupported, 0, 0)));
        }
        let reply = self.vm_replies.get(&v).ok_or(Stop::Unmodeled("a reply area not read"))?;
        let refused = |e: BatchError| {
            let field = e.field().map_or(0, u64::from);
            Err((Error::BatchRejected, u64::from(e.code()), field))
        };
        let Some(area) = reply.area else {
            return Ok(refused(BatchError::BadLength { expected: 0, got: 0 }));
        };
        if let Some(e) = header_refusal(&area) {
            return Ok(refused(e));
        }
        Ok(match reply.content {
            Ok(()) => Ok(area.flags.contains(ReplyFlags::STOP_VCPU)),
            Err((code, field)) => Err((Error::BatchRejected, code, field)),
        })
    }
}

/// What is wrong with the reply's header, if anything: unknown flags, more writes than
/// a reply holds, event words without an event to inject, or an instruction length to
/// skip that is out of range or comes without the flag that asks for it.
fn header_refusal(r: &ExitReply) -> Option<BatchError> {
    let raw = r.flags.bits();
    let Some(flags) = ReplyFlags::from_bits(raw) else {
        return Some(BatchError::BadFlags { flags: raw });
    };
    if r.count as usize > MAX_WRITES {
        return Some(BatchError::TooManyWrites { count: r.count });
    }
    let event_words = r.injection.raw() != 0
        || r.injection_error != 0
        || r.injection_len != 0
        || flags.contains(ReplyFlags::PAGE_FAULT_ADDRESS);
    if event_words && !flags.contains(ReplyFlags::INJECT_EVENT) {
        return Some(BatchError::BadInjection { info: r.injection.raw() });
    }
    let advance = r.advance_len;
    let skips = flags.contains(ReplyFlags::ADVANCE_RIP);
    if advance != 0 && !(skips && advance <= MAX_INSTRUCTION_LEN) {
        return Some(BatchError::BadAdvance { len: advance.into() });
    }
    None
}
