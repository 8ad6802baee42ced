//! Test support shared by the dispatcher's unit tests and the `vmm_dispatch` fuzz target
//! (feature `fuzzing`): guest RAM from address 0, a Skylake-like host CPUID, and the
//! checks every reply to an exit must pass.

use std::collections::HashSet;
use std::vec::Vec;

use protocols::vmcs::Field;
use protocols::vmexit::{exception_has_error_code, EventType, ExitMessage, ExitReply, ReplyFlags};

use crate::cpuid::CpuidRegs;
use crate::guest_memory::{GuestMemory, MemoryError};

/// Guest RAM from guest-physical address 0.
pub struct Ram(pub Vec<u8>);

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let start = usize::try_from(gpa).map_err(|_| MemoryError { gpa })?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(MemoryError { gpa })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let start = usize::try_from(gpa).map_err(|_| MemoryError { gpa })?;
        let dst = start
            .checked_add(data.len())
            .and_then(|end| self.0.get_mut(start..end))
            .ok_or(MemoryError { gpa })?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

/// A Skylake-like host CPUID.
pub fn host_cpuid(leaf: u32, _sub: u32) -> CpuidRegs {
    let r = |eax, ebx, ecx, edx| CpuidRegs { eax, ebx, ecx, edx };
    match leaf {
        0 => r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
        1 => r(0x0009_06ea, 0x0810_0800, 0x7ffa_fbff, 0xbfeb_fbff),
        7 => r(0, 0x029c_6fbf, 0x4000_0000, 0xbc00_0400),
        0x8000_0000 => r(0x8000_0008, 0, 0, 0),
        0x8000_0001 => r(0, 0, 0x121, 0x2c10_0800),
        0x8000_0008 => r(0x3027, 0, 0, 0),
        _ => r(0, 0, 0, 0),
    }
}

/// Every rule a reply to `msg` must follow: it survives its own wire round trip; every
/// write names a known field the VMM may write, fits the field's width and appears once;
/// ADVANCE_RIP and an explicit RIP write never meet; an injection is valid, has no
/// reserved bits, is not combined with STOP or an explicit interruption-info write, and
/// obeys its type's rules (exceptions below 32 with the architectural error-code bit,
/// interrupts only with RFLAGS.IF set and outside an interrupt shadow, NMIs with vector
/// 2, never type 7); no injection leaves the injection words zero; STOP never asks for
/// an interrupt window.
#[allow(clippy::panic, reason = "test support: a broken rule is a test failure")]
pub fn assert_well_formed(msg: &ExitMessage, r: &ExitReply) {
    let mut words = [0u64; ExitReply::SIZE];
    let n = r.to_words(&mut words);
    let decoded = words.get(..n).map(ExitReply::from_words);
    assert_eq!(decoded, Some(Ok(*r)), "reply fails its wire round trip");
    let mut seen = HashSet::new();
    for w in r.writes() {
        let field = Field::from_raw(w.field).expect("reply writes an unknown field");
        assert!(field.vmm_writable(), "reply writes {field}, which the VMM may not");
        assert!(w.value <= field.width().max_value(), "{field} = {:#x} too wide", w.value);
        assert!(seen.insert(w.field), "{field} written twice");
    }
    let flags = r.flags;
    if flags.contains(ReplyFlags::ADVANCE_RIP) {
        assert!(!seen.contains(&(Field::GuestRip as u32)), "ADVANCE_RIP with a RIP write");
    }
    if flags.contains(ReplyFlags::INJECT_EVENT) {
        let inj = r.injection;
        assert!(inj.is_valid(), "invalid event injected: {:#x}", inj.raw());
        assert_eq!(inj.raw() & 0x7fff_f000, 0, "reserved injection bits");
        assert!(!seen.contains(&(Field::EntryInterruptionInfo as u32)), "two injections");
        assert!(!flags.contains(ReplyFlags::STOP_VCPU), "injection into a stopped vCPU");
        match inj.event_type().expect("reserved event type injected") {
            EventType::HardwareException => {
                assert!(inj.vector() < 32 && inj.vector() != 2, "exception {}", inj.vector());
                assert_eq!(inj.delivers_error_code(), exception_has_error_code(inj.vector()));
            }
            EventType::ExternalInterrupt => {
                assert_ne!(msg.rflags & 1 << 9, 0, "interrupt injected with IF = 0");
                // An emulation that sets RIP itself ends the shadow by writing it.
                let written =
                    r.writes().iter().find(|w| w.field == Field::GuestInterruptibility as u32);
                let shadow = written.map_or(u64::from(msg.interruptibility), |w| w.value) & 3 != 0;
                assert!(!shadow || flags.contains(ReplyFlags::ADVANCE_RIP), "in a shadow");
                assert!(!inj.delivers_error_code(), "interrupt with an error code for {msg:?}");
            }
            EventType::Nmi => {
                assert_eq!(inj.vector(), 2);
                assert!(!inj.delivers_error_code(), "NMI with an error code for {msg:?}");
            }
            EventType::Other => panic!("event type 7 injected"),
            _ => assert!(!inj.delivers_error_code(), "{inj:?} with an error code for {msg:?}"),
        }
        if !inj.delivers_error_code() {
            assert_eq!(r.injection_error, 0, "error code without the deliver bit");
        }
    } else {
        assert_eq!((r.injection.raw(), r.injection_error, r.injection_len), (0, 0, 0));
    }
    if flags.contains(ReplyFlags::STOP_VCPU) {
        assert!(!flags.contains(ReplyFlags::REQUEST_INTERRUPT_WINDOW), "STOP with a window");
    }
}
