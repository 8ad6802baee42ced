//! Building an [`ExitReply`] without fallible calls at every step.
//!
//! Handlers push VMCS writes and GPR loads into a [`ReplyBuilder`]; if a handler ever asks
//! for more than the batch holds, the builder remembers the overflow instead of returning
//! an error each time, and the dispatcher turns the whole reply into a stop. That keeps the
//! handlers linear and makes "every reply is well-formed" a property of one function.

use protocols::vmcs::Field;
use protocols::vmexit::{EventInjection, ExitReply, ReplyFlags};

/// An [`ExitReply`] under construction.
#[derive(Clone, Debug, Default)]
pub struct ReplyBuilder {
    reply: ExitReply,
    overflow: bool,
}

impl ReplyBuilder {
    /// An empty reply: resume unchanged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a VMCS write; a write to a field already queued replaces its value, so the
    /// batch never names a field twice.
    pub fn write(&mut self, field: Field, value: u64) {
        let raw = field as u32;
        let count = self.reply.writes().len();
        if let Some(w) =
            self.reply.writes.get_mut(..count).and_then(|ws| ws.iter_mut().find(|w| w.field == raw))
        {
            w.value = value;
            return;
        }
        if self.reply.write(field, value).is_err() {
            self.overflow = true;
        }
    }

    /// Load `value` into GPR `reg` (x86 encoding) on resume.
    pub fn set_gpr(&mut self, reg: u8, value: u64) {
        if self.reply.set_gpr(reg, value).is_err() {
            self.overflow = true;
        }
    }

    /// Add `flags`.
    pub fn flag(&mut self, flags: ReplyFlags) {
        self.reply.flags |= flags;
    }

    /// Whether all of `flags` are set.
    pub fn has(&self, flags: ReplyFlags) -> bool {
        self.reply.flags.contains(flags)
    }

    /// Inject `event` (with its error code and, for software events, the instruction
    /// length) on resume.
    pub fn inject(&mut self, event: EventInjection, error_code: u32, instruction_len: u32) {
        let error_code = if event.delivers_error_code() { error_code } else { 0 };
        let len = match event.event_type() {
            Some(t) if t.uses_instruction_length() => instruction_len,
            _ => 0,
        };
        self.reply.inject(event, error_code, len);
    }

    /// Whether an event is already queued for injection.
    pub fn injects(&self) -> bool {
        self.has(ReplyFlags::INJECT_EVENT)
    }

    /// Whether a handler overflowed the batch.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The GPR values queued so far (for tests and for handlers that read back).
    pub fn reply(&self) -> &ExitReply {
        &self.reply
    }

    /// The finished reply.
    pub fn finish(self) -> ExitReply {
        self.reply
    }
}

#[cfg(test)]
mod tests {
    use super::ReplyBuilder;
    use protocols::vmcs::Field;
    use protocols::vmexit::{EventInjection, ReplyFlags, MAX_WRITES};

    #[test]
    fn rewrites_replace_and_overflow_is_remembered() {
        let mut r = ReplyBuilder::new();
        r.write(Field::GuestCr0, 1);
        r.write(Field::GuestCr0, 2);
        assert_eq!(r.reply().writes().len(), 1);
        assert_eq!(r.reply().writes()[0].value, 2);
        for f in Field::ALL.iter().filter(|f| f.vmm_writable()).take(MAX_WRITES) {
            r.write(*f, 0);
        }
        assert!(r.overflowed());
        r.set_gpr(16, 0);
        assert!(r.overflowed());
    }

    #[test]
    fn injection_drops_meaningless_error_codes_and_lengths() {
        let mut r = ReplyBuilder::new();
        r.inject(EventInjection::interrupt(0x20), 5, 3);
        let reply = r.finish();
        assert!(reply.flags.contains(ReplyFlags::INJECT_EVENT));
        assert_eq!((reply.injection_error, reply.injection_len), (0, 0));
        let mut r = ReplyBuilder::new();
        r.inject(EventInjection::exception(13), 0, 3);
        assert_eq!(r.reply().injection_len, 0);
        assert!(r.injects());
    }
}
