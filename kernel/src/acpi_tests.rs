//! The ACPI reader against the tables the VMM writes for its guests (which the `acpi`
//! crate reads in the VMM's own tests), and against every way to spoil them.

use crate::acpi::{Cpu, Error, IoApic, IsaRoute, Override, Platform, PmTimer, MAX_CPUS};
use vmm_server::acpi::{build, AcpiConfig, AcpiLayout, PmPorts, STANDARD_BASE};

/// Physical memory from 0 to just past the BIOS area.
const MEMORY: usize = 0x10_1000;
/// The checksum byte of a system description table.
const CHECKSUM: usize = 9;

struct Machine {
    memory: Vec<u8>,
    layout: AcpiLayout,
}

impl Machine {
    fn with_cpus(apic_ids: &[u8]) -> Self {
        let mut memory = vec![0u8; MEMORY];
        let base = STANDARD_BASE as usize;
        let layout = build(&AcpiConfig::standard(apic_ids), STANDARD_BASE, &mut memory[base..])
            .expect("the VMM's tables build");
        Self { memory, layout }
    }

    fn rsdp(&self) -> &[u8] {
        let at = self.layout.rsdp as usize;
        &self.memory[at..at + 36]
    }

    fn read(&self) -> Result<Platform, Error> {
        let phys = |at: u64, len: usize| {
            let at = usize::try_from(at).ok()?;
            self.memory.get(at..at.checked_add(len)?)
        };
        Platform::read(Some(self.rsdp()), &phys)
    }

    /// Change a table's byte and make its checksum right again.
    fn patch(&mut self, table: u64, offset: usize, value: u8) {
        let t = table as usize;
        self.memory[t + offset] = value;
        let len = u32::from_le_bytes(self.memory[t + 4..t + 8].try_into().unwrap()) as usize;
        self.memory[t + CHECKSUM] = 0;
        let sum = self.memory[t..t + len].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        self.memory[t + CHECKSUM] = sum.wrapping_neg();
    }

    /// Change the RSDP's byte and make both its checksums right again.
    fn patch_rsdp(&mut self, offset: usize, value: u8) {
        let r = self.layout.rsdp as usize;
        self.memory[r + offset] = value;
        for (at, len) in [(8, 20), (32, 36)] {
            self.memory[r + at] = 0;
            let sum = self.memory[r..r + len].iter().fold(0u8, |s, b| s.wrapping_add(*b));
            self.memory[r + at] = sum.wrapping_neg();
        }
    }
}

#[test]
fn reads_the_cpus_ioapic_overrides_and_pm_timer_the_vmm_writes() {
    for ids in [&[0u8][..], &[0, 1], &[0, 2, 4, 6]] {
        let p = Machine::with_cpus(ids).read().unwrap();
        let cpus: Vec<Cpu> =
            ids.iter().zip(0..).map(|(&id, uid)| Cpu { apic_id: id.into(), uid }).collect();
        assert_eq!(p.cpus.as_slice(), cpus.as_slice());
        assert_eq!(p.cpus_ignored, 0);
        assert_eq!(p.local_apic, 0xfee0_0000);
        assert_eq!(p.io_apics.as_slice(), [IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 }]);
        let sci = Override { irq: 9, gsi: 9, flags: 0b1101 }; // level, active high
        assert_eq!(p.overrides.as_slice(), [Override { irq: 0, gsi: 2, flags: 0 }, sci]);
        assert!(p.legacy_pics, "the VMM's MADT sets PCAT_COMPAT");
        assert_eq!(p.pm_timer, Some(PmTimer { port: PmPorts::STANDARD.pm_tmr, bits: 32 }));
    }
}

#[test]
fn an_acpi_1_rsdp_leads_through_the_rsdt() {
    let mut m = Machine::with_cpus(&[0, 1]);
    m.patch_rsdp(15, 0); // revision 0: no XSDT address, no extended checksum
    m.memory[m.layout.xsdt as usize] = b'Z'; // an XSDT read now would be refused
    assert_eq!(m.read().unwrap().cpus.len(), 2);
}

#[test]
fn cpus_past_the_limit_are_counted_and_disabled_ones_are_not_cpus() {
    let ids: Vec<u8> = (0..MAX_CPUS as u8 + 4).collect();
    let p = Machine::with_cpus(&ids).read().unwrap();
    assert_eq!((p.cpus.len(), p.cpus_ignored), (MAX_CPUS, 4));

    let mut m = Machine::with_cpus(&[0, 1, 2]);
    // The second Local APIC entry's flags (header, fixed part, one 8-byte entry, +4).
    m.patch(m.layout.madt, 36 + 8 + 8 + 4, 0);
    let p = m.read().unwrap();
    assert_eq!(p.cpus.iter().map(|c| c.apic_id).collect::<Vec<_>>(), [0, 2]);
}

#[test]
fn without_pcat_compat_there_are_no_8259s() {
    let mut m = Machine::with_cpus(&[0]);
    m.patch(m.layout.madt, 40, 0);
    assert!(!m.read().unwrap().legacy_pics);
}

#[test]
fn a_pm_timer_only_in_the_acpi_1_field_and_a_24_bit_one() {
    let mut m = Machine::with_cpus(&[0]);
    m.patch(m.layout.fadt, 208, 0); // X_PM_TMR_BLK's address space: memory, not I/O
    m.patch(m.layout.fadt, 113, 0); // FLAGS bits 15:8: TMR_VAL_EXT clear
    let timer = m.read().unwrap().pm_timer.unwrap();
    assert_eq!(timer, PmTimer { port: PmPorts::STANDARD.pm_tmr, bits: 24 });
    assert_eq!(timer.elapsed(0xff_fff0, 0x10), 0x20, "a 24-bit wrap");
    for at in 76..80 {
        m.patch(m.layout.fadt, at, 0);
    }
    assert_eq!(m.read().unwrap().pm_timer, None);
}

#[test]
fn refuses_bad_pointers_checksums_and_entries_naming_the_cause() {
    let m = Machine::with_cpus(&[0, 1]);
    assert_eq!(Platform::read(None, &|_, _| None), Err(Error::NoRsdp));
    let mut rsdp = m.rsdp().to_vec();
    rsdp[0] = b'X';
    assert_eq!(Platform::read(Some(&rsdp), &|_, _| None), Err(Error::BadRsdp));
    assert_eq!(m.read().map(|_| ()), Ok(()));
    assert_eq!(
        Platform::read(Some(m.rsdp()), &|_, _| None),
        Err(Error::Unreadable { address: m.layout.xsdt })
    );

    let mut bad = Machine::with_cpus(&[0, 1]);
    bad.memory[bad.layout.madt as usize + 44 + 3] ^= 1;
    assert_eq!(bad.read(), Err(Error::BadChecksum { signature: *b"APIC" }));

    let mut bad = Machine::with_cpus(&[0, 1]);
    bad.patch(bad.layout.madt, 44 + 1, 0); // the first entry's length: 0
    assert_eq!(bad.read(), Err(Error::BadMadtEntry { offset: 44 }));

    let mut bad = Machine::with_cpus(&[0, 1]);
    bad.patch(bad.layout.madt, 44 + 1, 4); // a Local APIC entry too short for its fields
    assert_eq!(bad.read(), Err(Error::BadMadtEntry { offset: 44 }));

    let mut bad = Machine::with_cpus(&[0]);
    bad.patch(bad.layout.madt, 0, b'Q'); // no table is a MADT any more
    assert_eq!(bad.read(), Err(Error::NoMadt));

    let mut bad = Machine::with_cpus(&[0]);
    bad.patch_rsdp(24, 0xff); // the XSDT address, past memory
    assert!(matches!(bad.read(), Err(Error::Unreadable { .. })));
}

#[test]
fn never_panics_on_spoiled_tables() {
    let clean = Machine::with_cpus(&[0, 1]);
    let start = clean.layout.rsdp as usize;
    let end = clean.layout.madt as usize + 62 + 16;
    for at in start..end {
        for flip in [0x01, 0x80, 0xff] {
            let mut m = Machine::with_cpus(&[0, 1]);
            m.memory[at] ^= flip;
            let _ = m.read();
        }
    }
}

#[test]
fn isa_irqs_route_through_their_overrides_and_an_overridden_input_is_taken() {
    let p = Machine::with_cpus(&[0]).read().unwrap();
    let edge = |gsi| Some(IsaRoute { gsi, level: false, active_low: false });
    assert_eq!(p.isa_route(0), edge(2), "the PIT on input 2");
    assert_eq!(p.isa_route(2), None, "input 2 is the PIT's");
    assert_eq!(p.isa_route(4), edge(4), "COM1 on its own input");
    assert_eq!(p.isa_route(9), Some(IsaRoute { gsi: 9, level: true, active_low: false }));
    let mut low = p.clone();
    low.overrides[1].flags = 0b1111; // level, active low (a PCI line)
    assert_eq!(low.isa_route(9), Some(IsaRoute { gsi: 9, level: true, active_low: true }));
    let mut swapped = p.clone();
    swapped.overrides[1] = Override { irq: 9, gsi: 4, flags: 0 };
    assert_eq!(swapped.isa_route(9), edge(4));
    assert_eq!(swapped.isa_route(4), None, "input 4 is IRQ 9's now");
}
