//! The Multiple APIC Description Table (ACPI 6 §5.2.12): where the local APICs and the
//! IOAPIC are, which CPUs exist, and how the ISA IRQs reach the IOAPIC's inputs.
//!
//! One Processor Local APIC entry per CPU (ACPI processor UID = its index, enabled), the
//! IOAPIC where the VM has one, the interrupt source overrides the VMM wires (a PC's IRQ 0 on GSI 2, the SCI
//! level-triggered), and one Local APIC NMI entry for all processors on LINT1, as every
//! PC has. PCAT_COMPAT is set: the 8259 pair exists, and the OS must mask it before it
//! uses the IOAPIC.

use super::sdt::{self, put};

/// The revision of ACPI 6.2-6.4's MADT.
pub const REVISION: u8 = 5;
/// The processor UID that means "all processors" in a Local APIC NMI entry.
pub const ALL_PROCESSORS: u8 = 0xff;
/// The LAPIC input the NMI is wired to.
pub const NMI_LINT: u8 = 1;
/// The most CPUs the table describes: UIDs are bytes and 0xFF means all processors.
pub const MAX_CPUS: usize = 255;

pub use protocols::acpi::madt::{entry, IoApic, FIXED_LEN, LAPIC_ENABLED, PCAT_COMPAT, SIGNATURE};

/// An override's input polarity (MPS INTI flags bits 1:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Polarity {
    /// As the bus specifies (ISA: active high).
    Conforming = 0,
    /// Active high.
    ActiveHigh = 1,
    /// Active low.
    ActiveLow = 3,
}

/// An override's trigger mode (MPS INTI flags bits 3:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Trigger {
    /// As the bus specifies (ISA: edge).
    Conforming = 0,
    /// Edge-triggered.
    Edge = 1,
    /// Level-triggered.
    Level = 3,
}

/// An ISA IRQ that reaches the IOAPIC on another input or with another polarity or
/// trigger mode than identity-mapped, edge, active high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptOverride {
    /// The ISA IRQ (0-15).
    pub isa_irq: u8,
    /// The global system interrupt it arrives on.
    pub gsi: u32,
    /// Its polarity.
    pub polarity: Polarity,
    /// Its trigger mode.
    pub trigger: Trigger,
}

impl InterruptOverride {
    /// The MPS INTI flags of the entry.
    pub const fn flags(&self) -> u16 {
        (self.polarity as u16) | ((self.trigger as u16) << 2)
    }
}

/// Bytes of a MADT with `cpus` processors, an IOAPIC or none and `overrides` overrides;
/// `None` past `usize`.
pub fn len(cpus: usize, ioapic: bool, overrides: usize) -> Option<usize> {
    let lapics = cpus.checked_mul(entry::LOCAL_APIC_LEN)?;
    let isos = overrides.checked_mul(entry::INTERRUPT_OVERRIDE_LEN)?;
    let ioapics = if ioapic { entry::IO_APIC_LEN } else { 0 };
    (sdt::HEADER_LEN + FIXED_LEN + entry::LOCAL_APIC_NMI_LEN)
        .checked_add(ioapics)?
        .checked_add(lapics)?
        .checked_add(isos)
}

/// Write the MADT into `out`, which is exactly [`len`] bytes for these CPUs, IOAPIC and
/// overrides.
pub fn write(
    out: &mut [u8],
    lapic_address: u32,
    apic_ids: &[u8],
    ioapic: Option<&IoApic>,
    overrides: &[InterruptOverride],
) {
    sdt::write_header(out, SIGNATURE, REVISION);
    put(out, sdt::HEADER_LEN, &lapic_address.to_le_bytes());
    put(out, sdt::HEADER_LEN.saturating_add(4), &PCAT_COMPAT.to_le_bytes());
    let mut at = sdt::HEADER_LEN.saturating_add(FIXED_LEN);
    let mut push = |bytes: &[u8]| {
        put(out, at, bytes);
        at = at.saturating_add(bytes.len());
    };
    for (uid, &apic_id) in (0..=u8::MAX).zip(apic_ids) {
        let flags = LAPIC_ENABLED.to_le_bytes();
        push(&[entry::LOCAL_APIC, entry::LOCAL_APIC_LEN as u8, uid, apic_id]);
        push(&flags);
    }
    if let Some(ioapic) = ioapic {
        push(&[entry::IO_APIC, entry::IO_APIC_LEN as u8, ioapic.id, 0]);
        push(&ioapic.address.to_le_bytes());
        push(&ioapic.gsi_base.to_le_bytes());
    }
    for iso in overrides {
        // Bus 0 is ISA.
        push(&[entry::INTERRUPT_OVERRIDE, entry::INTERRUPT_OVERRIDE_LEN as u8, 0, iso.isa_irq]);
        push(&iso.gsi.to_le_bytes());
        push(&iso.flags().to_le_bytes());
    }
    // Flags 0: LINT1's polarity and trigger conform to the APIC's (edge, active high).
    push(&[entry::LOCAL_APIC_NMI, entry::LOCAL_APIC_NMI_LEN as u8, ALL_PROCESSORS, 0, 0]);
    push(&[NMI_LINT]);
    sdt::seal(out);
}
