//! Building an [`ExitReply`] without fallible calls at every step.
//!
//! Handlers push VMCS writes and GPR loads into a [`ReplyBuilder`]; if a handler ever asks
//! for more than the batch holds, the builder remembers the overflow instead of returning
//! an error each time, and the dispatcher turns the whole reply into a stop. That keeps the
//! handlers linear and makes "every reply is well-formed" a property of one function.

use protocols::vmcs::Field;
use protocols::vmexit::{EventInjection, ExitReply, ReplyFlags};
use protocols::x86::PAGE_FAULT_VECTOR;

use crate::paging::PageFault;

/// An [`ExitReply`] under construction, in place: in the vCPU state page's reply area on
/// the exit path (nothing is built elsewhere and copied), or in a value of the caller's.
#[derive(Debug)]
pub struct ReplyBuilder<'a> {
    area: &'a mut ExitReply,
    overflow: bool,
}

impl<'a> ReplyBuilder<'a> {
    /// An empty reply built in `area` (the reply area of the vCPU state page). Only the
    /// header is reset: GPR values the mask does not name and writes past the count are
    /// never read, so they may stay as an earlier reply left them.
    pub fn within(area: &'a mut ExitReply) -> Self {
        area.flags = ReplyFlags::NONE;
        area.count = 0;
        area.gpr_mask = 0;
        area.advance_len = 0;
        area.injection = EventInjection::NONE;
        area.injection_error = 0;
        area.injection_len = 0;
        Self { area, overflow: false }
    }

    /// A builder that adds to the reply already in `area` (what follows the dispatcher's
    /// answer: waking a halted vCPU).
    pub fn extend(area: &'a mut ExitReply) -> Self {
        Self { area, overflow: false }
    }

    fn r(&mut self) -> &mut ExitReply {
        self.area
    }

    /// Queue a VMCS write; a write to a field already queued replaces its value, so the
    /// batch never names a field twice.
    pub fn write(&mut self, field: Field, value: u64) {
        let raw = field as u32;
        let reply = self.r();
        let count = reply.writes().len();
        if let Some(w) =
            reply.writes.get_mut(..count).and_then(|ws| ws.iter_mut().find(|w| w.field == raw))
        {
            w.value = value;
            return;
        }
        if reply.write(field, value).is_err() {
            self.overflow = true;
        }
    }

    /// The value queued for `field`, if a write to it is queued.
    pub fn written(&self, field: Field) -> Option<u64> {
        let raw = field as u32;
        self.reply().writes().iter().find(|w| w.field == raw).map(|w| w.value)
    }

    /// Load `value` into GPR `reg` (x86 encoding) on resume.
    pub fn set_gpr(&mut self, reg: u8, value: u64) {
        if self.r().set_gpr(reg, value).is_err() {
            self.overflow = true;
        }
    }

    /// Add `flags`.
    pub fn flag(&mut self, flags: ReplyFlags) {
        self.r().flags |= flags;
    }

    /// Skip `len` bytes of instruction on resume (ADVANCE_RIP with an explicit length,
    /// dropping an STI/MOV SS shadow as retiring it would): for exits whose instruction
    /// length the CPU does not report, such as the EPT violation of an emulated MMIO
    /// access. A length outside 1-15 would be refused by the kernel: it overflows here.
    pub fn advance_by(&mut self, len: u8) {
        if len == 0 || u16::from(len) > protocols::x86::MAX_INSTRUCTION_LEN {
            self.overflow = true;
            return;
        }
        let r = self.r();
        r.flags |= ReplyFlags::ADVANCE_RIP;
        r.advance_len = len.into();
    }

    /// Whether all of `flags` are set.
    pub fn has(&self, flags: ReplyFlags) -> bool {
        self.reply().flags.contains(flags)
    }

    /// Inject the #PF `fault` describes, the guest's CR2 naming its address.
    pub fn inject_page_fault(&mut self, fault: PageFault) {
        self.inject(EventInjection::exception(PAGE_FAULT_VECTOR), fault.error, 0);
        self.flag(ReplyFlags::PAGE_FAULT_ADDRESS);
        self.r().fault_address = fault.linear;
    }

    /// Inject `event` (with its error code and, for software events, the instruction
    /// length) on resume.
    pub fn inject(&mut self, event: EventInjection, error_code: u32, instruction_len: u32) {
        let error_code = if event.delivers_error_code() { error_code } else { 0 };
        let len = match event.event_type() {
            Some(t) if t.uses_instruction_length() => instruction_len,
            _ => 0,
        };
        self.r().inject(event, error_code, len);
    }

    /// Whether an event is already queued for injection.
    pub fn injects(&self) -> bool {
        self.has(ReplyFlags::INJECT_EVENT)
    }

    /// Whether a handler overflowed the batch.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The reply so far (for tests and for handlers that read back).
    pub fn reply(&self) -> &ExitReply {
        self.area
    }

    /// The finished reply, as a value.
    pub fn finish(self) -> ExitReply {
        *self.area
    }
}

#[cfg(test)]
mod tests {
    use super::ReplyBuilder;
    use protocols::vmcs::Field;
    use protocols::vmexit::ExitReply;
    use protocols::vmexit::{EventInjection, ReplyFlags, MAX_WRITES};

    #[test]
    fn rewrites_replace_and_overflow_is_remembered() {
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
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

    /// A #PF the VMM raises carries its address; the next reply built in the same area
    /// starts without the flag, so the address left there is no part of it.
    #[test]
    fn a_page_fault_names_its_address_once() {
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        r.inject_page_fault(crate::paging::PageFault { linear: 0x20_0000, error: 2 });
        let reply = r.finish();
        assert!(reply.flags.contains(ReplyFlags::INJECT_EVENT | ReplyFlags::PAGE_FAULT_ADDRESS));
        assert_eq!((reply.injection.vector(), reply.injection_error), (14, 2));
        assert_eq!(reply.fault_address, 0x20_0000);
        assert_eq!(ExitReply::check_fault_address(reply.flags, reply.injection), Ok(()));
        let next = ReplyBuilder::within(&mut area).finish();
        assert_eq!(next.flags, ReplyFlags::NONE);
    }

    #[test]
    fn injection_drops_meaningless_error_codes_and_lengths() {
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        r.inject(EventInjection::interrupt(0x20), 5, 3);
        let reply = r.finish();
        assert!(reply.flags.contains(ReplyFlags::INJECT_EVENT));
        assert_eq!((reply.injection_error, reply.injection_len), (0, 0));
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        r.inject(EventInjection::exception(13), 0, 3);
        assert_eq!(r.reply().injection_len, 0);
        assert!(r.injects());
    }
}
