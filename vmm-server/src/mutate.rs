//! Mutated reply batches, for the VMM's mutating mode (`vmm::flags::MUTATE`): the real
//! reply to a real exit, changed at random by a seeded generator, so the kernel's
//! validator sees batches that are almost right as well as plainly hostile ones.
//!
//! A mutation works on the reply (extra writes of any field, host state and pointers
//! included; changed or dropped writes; random flags, injections and GPR masks) and then,
//! now and then, on its wire words (flags outside the defined ones, a write count past
//! the limit, reserved bits), which no `ExitReply` value can express. Every mutated batch
//! says whether the kernel must refuse it ([`Mutated::must_refuse`]): anything that does
//! not decode or names a field no VMM may write. Others may be refused for their values.
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

/// A mutated batch as wire words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mutated {
    /// The words to write at the reply offset of the message frame.
    pub words: [u64; ExitReply::SIZE],
    /// How many.
    pub len: usize,
    /// The kernel must refuse it: it does not decode, or it names a field no VMM may
    /// write (an unknown encoding, host state, a pointer, read-only exit information).
    pub must_refuse: bool,
    /// The batch asks to leave the vCPU stopped.
    pub stops: bool,
}

impl Mutated {
    /// The words.
    pub fn words(&self) -> &[u64] {
        self.words.get(..self.len).unwrap_or_default()
    }
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
    let mut words = [0u64; ExitReply::SIZE];
    let mut len = r.to_words(&mut words).min(ExitReply::SIZE);
    // Wire-level damage that no `ExitReply` can carry.
    if rng.one_in(8) {
        let bit = rng.below(64);
        let extra = rng.below(8);
        match (rng.below(4), words.first_mut()) {
            // A flag bit above the defined ones.
            (0, Some(w0)) => *w0 |= (1u64 << bit.max(4)) & 0xffff_fff0,
            // More writes than a batch may carry.
            (1, Some(w0)) => {
                *w0 = (*w0 & 0xffff_ffff)
                    | (MAX_WRITES as u64).saturating_add(extra).saturating_add(1) << 32
            }
            (2, _) => {
                let i = rng.below(len.max(1) as u64) as usize;
                if let Some(w) = words.get_mut(i) {
                    *w ^= 1u64 << bit;
                }
            }
            // A length that does not match the header.
            _ => len = rng.below(ExitReply::SIZE as u64).saturating_add(1) as usize,
        }
    }
    let decoded = words.get(..len).map(ExitReply::from_words);
    let must_refuse = match decoded {
        Some(Ok(d)) => d.writes().iter().any(|w| !writable(w.field)),
        _ => true,
    };
    let stops = matches!(decoded, Some(Ok(d)) if d.flags.contains(ReplyFlags::STOP_VCPU));
    Mutated { words, len, must_refuse, stops }
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
    use super::{mutate, writable, Rng};
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
    fn must_refuse_is_exactly_undecodable_or_forbidden() {
        let msg = ExitMessage { transfer: TransferMask::CONTROLS, ..ExitMessage::default() };
        let real = ExitReply::new();
        let mut rng = Rng::new(1);
        let (mut forbidden, mut allowed) = (0, 0);
        for _ in 0..2000 {
            let m = mutate(&mut rng, &msg, &real, false);
            match ExitReply::from_words(m.words()) {
                Ok(r) => {
                    let bad = r.writes().iter().any(|w| !writable(w.field));
                    assert_eq!(m.must_refuse, bad);
                    assert_eq!(m.stops, r.flags.contains(ReplyFlags::STOP_VCPU));
                }
                Err(_) => assert!(m.must_refuse),
            }
            if m.must_refuse {
                forbidden += 1;
            } else {
                allowed += 1;
            }
        }
        assert!(forbidden > 200 && allowed > 200, "{forbidden} forbidden, {allowed} allowed");
        assert!(!writable(Field::HostRip as u32) && writable(Field::GuestRip as u32));
    }

    #[test]
    fn the_watchdog_arms_the_preemption_timer_when_there_is_room() {
        let msg = ExitMessage { transfer: TransferMask::CONTROLS, ..ExitMessage::default() };
        let mut rng = Rng::new(3);
        let armed = (0..100)
            .filter(|_| {
                let m = mutate(&mut rng, &msg, &ExitReply::new(), true);
                ExitReply::from_words(m.words()).is_ok_and(|r| {
                    r.writes().iter().any(|w| w.field == Field::PreemptionTimerValue as u32)
                })
            })
            .count();
        assert!(armed > 50, "{armed}");
    }
}
