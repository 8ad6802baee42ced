//! The start batch of a Linux vCPU: what the 64-bit boot protocol puts in registers and
//! descriptor tables beyond the RIP, RSP and CR3 that `VCpuStart` takes itself. The VMM
//! writes it into the reply area and starts the vCPU with `vcpu_mode::WITH_BATCH`, so
//! the kernel validates it like any reply before the first entry.

use super::Entry;
use protocols::vmcs::Field;
use protocols::vmexit::{ExitReply, Gprs};

/// The batch: RSI = `boot_params`, GDTR = the boot GDT, CS = `__BOOT_CS`, DS/ES/SS =
/// `__BOOT_DS` (the selectors only: the kernel's long-mode set-up already holds flat
/// descriptors of the same kind).
pub fn start_batch(entry: &Entry) -> ExitReply {
    let mut r = ExitReply::new();
    let writes = [
        (Field::GuestGdtrBase, entry.gdt_base),
        (Field::GuestGdtrLimit, u64::from(entry.gdt_limit)),
        (Field::GuestCsSelector, u64::from(entry.cs)),
        (Field::GuestDsSelector, u64::from(entry.ds)),
        (Field::GuestEsSelector, u64::from(entry.ds)),
        (Field::GuestSsSelector, u64::from(entry.ds)),
    ];
    // Six writes and one register always fit an empty reply.
    for (field, value) in writes {
        let _ = r.write(field, value);
    }
    let _ = r.set_gpr(Gprs::RSI, entry.rsi);
    r
}

#[cfg(test)]
mod tests {
    use super::start_batch;
    use crate::linux_boot::tests::synthetic;
    use crate::linux_boot::{plan, LinuxImage};
    use protocols::vmcs::Field;
    use protocols::vmexit::Gprs;

    #[test]
    fn the_batch_hands_over_boot_params_and_the_boot_gdt() {
        let b = synthetic(0x2000);
        let image = LinuxImage::parse(&b).unwrap();
        let p = plan(&image, 64 << 20, b"console=ttyS0", 0).unwrap();
        let r = start_batch(&p.entry);
        assert_eq!(r.gpr_mask, 1 << Gprs::RSI);
        assert_eq!(r.gprs.regs[usize::from(Gprs::RSI)], p.boot_params);
        let value = |f: Field| r.writes().iter().find(|w| w.field == f as u32).map(|w| w.value);
        assert_eq!(value(Field::GuestGdtrBase), Some(p.entry.gdt_base));
        assert_eq!(value(Field::GuestGdtrLimit), Some(31));
        assert_eq!(value(Field::GuestCsSelector), Some(0x10));
        assert_eq!(value(Field::GuestSsSelector), Some(0x18));
        assert_eq!(r.writes().len(), 6);
    }
}
