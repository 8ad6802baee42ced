//! Mutated reply batches, for the VMM's mutating mode (`vmm::flags::MUTATE`): the real
//! reply to a real exit, changed at random by a seeded generator, so the kernel's
//! validator sees batches that are almost right as well as plainly hostile ones.
//!
//! A mutation works on the reply (extra writes of any field, host state and pointers
//! included; changed or dropped writes; random flags, injections and GPR masks) and then,
//! now and then, on its bytes as the reply area holds them (flags outside the defined
//! ones, a write count past the limit, reserved fields, any bit). Every mutated batch says
//! whether the kernel must refuse it ([`Mutated::must_refuse`]): anything malformed or
//! naming a field no VMM may write. Others may be refused for their values.
//!
//! The generator is xorshift64*: tiny, and the same seed gives the same batches, so a
//! crash it provokes replays exactly.

use protocols::vmcs::{ctl::pin, Field};
use protocols::vmexit::{
    EventInjection, EventType, ExitMessage, ExitReply, ReplyFlags, TransferMask, MAX_WRITES,
};

pub use rt::rng::Rng;

/// The VMX-preemption timer value the mutating VMM arms in every batch, so a guest that
/// a mutation sent into a loop without exits still comes back to the VMM.
pub const WATCHDOG_TICKS: u64 = 0x4_0000;

/// A mutated batch, as the reply area of the vCPU state page holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mutated {
    /// The reply to put in the reply area.
    pub reply: ExitReply,
    /// The kernel must refuse it: it is malformed, or it names a field no VMM may write
    /// (an unknown encoding, host state, a pointer, read-only exit information).
    pub must_refuse: bool,
    /// The batch asks to leave the vCPU stopped.
    pub stops: bool,
}

/// Whether `r` is malformed as a whole: unknown flags, too many writes, an event without
/// [`ReplyFlags::INJECT_EVENT`], a reserved field set (the shape the kernel checks first).
pub fn malformed(r: &ExitReply) -> bool {
    let injects = r.flags.contains(ReplyFlags::INJECT_EVENT);
    let event = r.injection.raw() | r.injection_error | r.injection_len;
    ReplyFlags::from_bits(r.flags.bits()).is_none()
        || r.count as usize > MAX_WRITES
        || (!injects && event != 0)
        || ExitReply::check_advance(r.flags, r.advance_len).is_err()
        || r.writes().iter().any(|w| w.reserved != 0)
}

/// Whether a VMM may name `raw` in a batch at all.
pub fn writable(raw: u32) -> bool {
    Field::from_raw(raw).is_some_and(Field::vmm_writable)
}

/// Mutate `real`, the VMM's reply to `msg`. With `watchdog`, the batch also arms the
/// VMX-preemption timer (when the message shows the current pin-based controls and the
/// mutation left room for two writes).
pub fn mutate(rng: &mut Rng, msg: &ExitMessage, real: &ExitReply, watchdog: bool) -> Mutated {
    let mut r = *real;
    let rounds = rng.below(4).saturating_add(1);
    for _ in 0..rounds {
        match rng.below(8) {
            // Any field, known or not, forbidden or not.
            0 | 1 => {
                let field = match rng.below(8) {
                    0 => rng.bits() as u32 & 0xffff,
                    _ => Field::ALL
                        .get(rng.below(Field::ALL.len() as u64) as usize)
                        .map_or(0, |f| *f as u32),
                };
                let _ = r.write_raw(field, rng.value(0));
            }
            // Change or drop one of the real writes.
            2 => {
                let n = u64::from(r.count);
                if n > 0 {
                    let i = rng.below(n) as usize;
                    if rng.one_in(3) {
                        remove_write(&mut r, i);
                    } else if let Some(w) = r.writes.get_mut(i) {
                        w.value = rng.value(w.value);
                    }
                }
            }
            // Flags: any combination of the defined ones.
            3 => {
                let bits = rng.below(u64::from(ReplyFlags::ALL.bits()).saturating_add(1)) as u32;
                r.flags = ReplyFlags::from_bits(bits).unwrap_or(r.flags);
            }
            // An event, well-formed or not.
            4 => {
                let info = match rng.below(3) {
                    0 => EventInjection::exception(rng.below(32) as u8),
                    1 => EventInjection::new(rng.bits() as u8, event_type(rng), rng.one_in(2)),
                    _ => EventInjection::from_raw(rng.bits() as u32 | EventInjection::VALID),
                };
                r.inject(info, rng.value(0) as u32, rng.below(16) as u32);
            }
            // GPRs: a random mask (RSP included) and values.
            5 => {
                r.gpr_mask = rng.bits() as u16;
                for reg in &mut r.gprs.regs {
                    *reg = rng.value(*reg);
                }
            }
            // Guest RIP, RSP, RFLAGS or CR0/CR4 set to something odd.
            6 => {
                let fields = [
                    Field::GuestRip,
                    Field::GuestRsp,
                    Field::GuestRflags,
                    Field::GuestCr0,
                    Field::GuestCr4,
                ];
                let f = fields
                    .get(rng.below(fields.len() as u64) as usize)
                    .copied()
                    .unwrap_or(Field::GuestRip);
                let near = match f {
                    Field::GuestRip => msg.rip,
                    Field::GuestRflags => msg.rflags,
                    Field::GuestCr0 => msg.cr0,
                    Field::GuestCr4 => msg.cr4,
                    _ => 0,
                };
                let _ = r.write(f, rng.value(near));
            }
            // Nothing: the real reply goes through now and then.
            _ => {}
        }
    }
    let room = (r.count as usize).saturating_add(2) <= MAX_WRITES;
    if watchdog && msg.transfer.contains(TransferMask::CONTROLS) && room {
        let _ =
            r.write(Field::PinBasedControls, u64::from(msg.controls.pin | pin::PREEMPTION_TIMER));
        let _ = r.write(Field::PreemptionTimerValue, WATCHDOG_TICKS);
    }
    // Byte-level damage that the builder never makes.
    if rng.one_in(8) {
        let extra = rng.below(8) as u32;
        match rng.below(4) {
            // A flag bit above the defined ones.
            0 => r.flags |= unknown_flag(rng),
            // More writes than a batch may carry.
            1 => r.count = (MAX_WRITES as u32).saturating_add(extra).saturating_add(1),
            // A RIP advance too long for any instruction.
            2 => r.advance_len = 16 << rng.below(12),
            // Any bit of the area.
            _ => {
                let bytes = bytemuck::bytes_of_mut(&mut r);
                let i = rng.below(bytes.len() as u64) as usize;
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
    }
    let must_refuse = malformed(&r) || r.writes().iter().any(|w| !writable(w.field));
    let stops = !malformed(&r) && r.flags.contains(ReplyFlags::STOP_VCPU);
    Mutated { reply: r, must_refuse, stops }
}

/// A flag set holding one bit above the defined ones.
fn unknown_flag(rng: &mut Rng) -> ReplyFlags {
    let bit = rng.below(28).saturating_add(4) as u32;
    bytemuck::cast(1u32 << bit)
}

fn event_type(rng: &mut Rng) -> EventType {
    let types = [
        EventType::ExternalInterrupt,
        EventType::Nmi,
        EventType::HardwareException,
        EventType::SoftwareInterrupt,
        EventType::PrivilegedSoftwareException,
        EventType::SoftwareException,
        EventType::Other,
    ];
    types.get(rng.below(types.len() as u64) as usize).copied().unwrap_or(EventType::Nmi)
}

fn remove_write(r: &mut ExitReply, i: usize) {
    let n = r.count as usize;
    if i >= n {
        return;
    }
    if let Some(tail) = r.writes.get_mut(i..n) {
        tail.rotate_left(1);
    }
    r.count = r.count.saturating_sub(1);
}

#[cfg(test)]
mod tests {
    use super::{malformed, mutate, writable, Rng};
    use protocols::vmcs::Field;
    use protocols::vmexit::{ExitMessage, ExitReply, ReplyFlags, TransferMask};

    #[test]
    fn the_same_seed_gives_the_same_batches() {
        let msg = ExitMessage { transfer: TransferMask::CONTROLS, ..ExitMessage::default() };
        let mut real = ExitReply::new();
        real.flags = ReplyFlags::ADVANCE_RIP;
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50).map(|_| mutate(&mut rng, &msg, &real, true)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn must_refuse_is_exactly_malformed_or_forbidden() {
        let msg = ExitMessage { transfer: TransferMask::CONTROLS, ..ExitMessage::default() };
        let real = ExitReply::new();
        let mut rng = Rng::new(1);
        let (mut forbidden, mut allowed, mut malformed_seen) = (0, 0, 0);
        for _ in 0..2000 {
            let m = mutate(&mut rng, &msg, &real, false);
            let r = m.reply;
            let bad = malformed(&r);
            if bad {
                malformed_seen += 1;
            }
            let names_forbidden = !bad && r.writes().iter().any(|w| !writable(w.field));
            assert_eq!(m.must_refuse, bad || names_forbidden);
            assert_eq!(m.stops, !bad && r.flags.contains(ReplyFlags::STOP_VCPU));
            if m.must_refuse {
                forbidden += 1;
            } else {
                allowed += 1;
            }
        }
        assert!(forbidden > 200 && allowed > 200, "{forbidden} forbidden, {allowed} allowed");
        assert!(malformed_seen > 50, "{malformed_seen} malformed");
        assert!(!writable(Field::HostRip as u32) && writable(Field::GuestRip as u32));
    }

    #[test]
    fn the_watchdog_arms_the_preemption_timer_when_there_is_room() {
        let msg = ExitMessage { transfer: TransferMask::CONTROLS, ..ExitMessage::default() };
        let mut rng = Rng::new(3);
        let armed = (0..100)
            .filter(|_| {
                let m = mutate(&mut rng, &msg, &ExitReply::new(), true);
                m.reply.writes().iter().any(|w| w.field == Field::PreemptionTimerValue as u32)
            })
            .count();
        assert!(armed > 50, "{armed}");
    }
}
