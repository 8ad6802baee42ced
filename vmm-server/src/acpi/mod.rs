//! The ACPI tables the VMM writes into guest memory, so that an unmodified Linux finds its
//! local APICs, the IOAPIC and the ISA IRQ routing in the MADT, the PM timer and the
//! power-off register in the FADT, and the S5 sleep type in the DSDT, as on any PC.
//!
//! [`build`] writes every table into a buffer the guest sees at a guest-physical `base`
//! (the VMM uses [`STANDARD_BASE`], in the BIOS area that the e820 map reserves and that
//! Linux scans for the RSDP). The layout, from `base`:
//!
//! | table | offset | bytes |
//! |-------|--------|-------|
//! | RSDP  | 0      | 36    |
//! | RSDT  | 40     | 44    |
//! | XSDT  | 88     | 52    |
//! | FADT  | 144    | 276   |
//! | FACS  | 448    | 64 (64-byte aligned) |
//! | DSDT  | 512    | 50    |
//! | MADT  | 568    | 62 + 8 per CPU + 10 per override (90 for one CPU, two overrides) |
//!
//! Every table starts 8-byte aligned and the gaps are zero; the MADT comes last so that
//! the others stay where they are whatever the CPU count. The configuration is checked
//! whole before a byte is written ([`AcpiError`] names the check); writing cannot fail.
//! One file per table; the PM registers the FADT declares are
//! [`crate::devices::acpi_pm`], whose constants the FADT and the DSDT take.

pub mod dsdt;
mod error;
pub mod facs;
pub mod fadt;
pub mod madt;
pub mod rsdp;
pub mod sdt;
pub mod xsdt;

#[cfg(test)]
mod tests;

use crate::devices::{ioapic, lapic};
use crate::platform;
use protocols::devices::{DeviceSet, Kind};

pub use error::AcpiError;
pub use fadt::{PmPorts, ResetRegister};
pub use madt::{InterruptOverride, IoApic, Polarity, Trigger};

/// Where the VMM puts the tables: the start of the BIOS area (0xE0000-0xFFFFF), which
/// the e820 map reserves and where an OS without a pointer from the loader scans for the
/// RSDP.
pub const STANDARD_BASE: u64 = 0xe_0000;
/// The bytes of the BIOS area from [`STANDARD_BASE`] to 1 MiB.
pub const STANDARD_REGION_LEN: usize = 0x2_0000;
/// The local APICs' address (every CPU sees its own there): the model's page after reset.
pub const LAPIC_ADDRESS: u32 = lapic::DEFAULT_BASE as u32;
/// The IOAPIC at its PC address (the model's), inputs from GSI 0. Its ID is 0, the ID
/// register's reset value; 64-bit Linux compares IOAPIC IDs only with other IOAPICs.
pub const STANDARD_IOAPIC: IoApic =
    IoApic { id: 0, address: ioapic::DEFAULT_BASE as u32, gsi_base: 0 };
/// The SCI's ISA IRQ, as on a PIIX4.
pub const SCI_IRQ: u8 = protocols::devices::SCI_IRQ;
/// The overrides every PC has: the PIT's IRQ 0 on IOAPIC input 2 (edge, active high, as
/// the ISA bus is), and the SCI level-triggered, active high.
pub const STANDARD_OVERRIDES: [InterruptOverride; 2] = [
    InterruptOverride {
        isa_irq: platform::PIT_IRQ,
        gsi: platform::PIT_GSI as u32,
        polarity: Polarity::Conforming,
        trigger: Trigger::Conforming,
    },
    InterruptOverride {
        isa_irq: SCI_IRQ,
        gsi: SCI_IRQ as u32,
        polarity: Polarity::ActiveHigh,
        trigger: Trigger::Level,
    },
];
/// The alignment of every table after the RSDP.
pub const TABLE_ALIGN: usize = 8;
/// The alignment `base` must have: the FACS's (the RSDP's 16 follows).
pub const BASE_ALIGN: u64 = 64;
/// The most interrupt source overrides: one per ISA IRQ.
pub const MAX_OVERRIDES: usize = 16;

/// What the tables describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiConfig<'a> {
    /// The CPUs' APIC IDs; CPU `i` gets ACPI processor UID `i`. The first is the boot CPU.
    pub apic_ids: &'a [u8],
    /// The local APICs' guest-physical address.
    pub lapic_address: u32,
    /// The IOAPIC, if the VM has one.
    pub ioapic: Option<IoApic>,
    /// The ISA IRQs that do not reach the IOAPIC identity-mapped, edge, active high.
    pub overrides: &'a [InterruptOverride],
    /// The SCI's interrupt (an ISA IRQ in 8259 mode, the GSI with the IOAPIC).
    pub sci_irq: u8,
    /// The PM register blocks.
    pub pm: PmPorts,
    /// The reset register, if the FADT declares one.
    pub reset: Option<ResetRegister>,
    /// The FADT's IA-PC boot architecture flags ([`fadt::boot_arch`]).
    pub boot_arch: u16,
}

impl<'a> AcpiConfig<'a> {
    /// The VMM's PC with these CPUs: LAPIC and IOAPIC at their usual addresses, the
    /// standard overrides, SCI 9, the PM block at 0x600, reset through the i8042.
    pub const fn standard(apic_ids: &'a [u8]) -> Self {
        Self {
            apic_ids,
            lapic_address: LAPIC_ADDRESS,
            ioapic: Some(STANDARD_IOAPIC),
            overrides: &STANDARD_OVERRIDES,
            sci_irq: SCI_IRQ,
            pm: PmPorts::STANDARD,
            reset: Some(ResetRegister::I8042),
            boot_arch: fadt::BOOT_ARCH,
        }
    }

    /// The tables of a VM with `devices`: what is absent is not advertised. No tables at
    /// all without the ACPI PM registers (the FADT declares them; ACPI without them is
    /// no ACPI); no IOAPIC entry, and so no overrides, without an IOAPIC; the PIT's
    /// override only with a PIT; no i8042 flag or reset register without an i8042; the
    /// RTC declared absent without one.
    pub fn for_devices(apic_ids: &'a [u8], devices: &DeviceSet) -> Option<Self> {
        if !devices.has(Kind::AcpiPm) {
            return None;
        }
        let mut c = Self::standard(apic_ids);
        let address = devices.ioapic().and_then(|base| u32::try_from(base).ok());
        c.ioapic = address.map(|address| IoApic { address, ..STANDARD_IOAPIC });
        c.overrides = match (c.ioapic, devices.has(Kind::Pit8254)) {
            (None, _) => &[],
            (Some(_), true) => &STANDARD_OVERRIDES,
            (Some(_), false) => STANDARD_OVERRIDES.get(1..).unwrap_or_default(),
        };
        if !devices.has(Kind::I8042) {
            c.reset = None;
            c.boot_arch &= !fadt::boot_arch::I8042;
        }
        if !devices.has(Kind::CmosRtc) {
            c.boot_arch |= fadt::boot_arch::CMOS_RTC_NOT_PRESENT;
        }
        Some(c)
    }
}

/// Where [`build`] put each table, as guest-physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiLayout {
    /// The RSDP, at `base`: what the kernel finds by scanning the BIOS area, or what the
    /// loader may hand it in `boot_params.acpi_rsdp_addr`.
    pub rsdp: u64,
    /// The RSDT.
    pub rsdt: u64,
    /// The XSDT.
    pub xsdt: u64,
    /// The FADT.
    pub fadt: u64,
    /// The FACS.
    pub facs: u64,
    /// The DSDT.
    pub dsdt: u64,
    /// The MADT.
    pub madt: u64,
    /// Bytes used from `base` (through the MADT's end).
    pub len: usize,
}

/// Each table's offset from `base`.
#[derive(Clone, Copy, Debug)]
struct Offsets {
    rsdt: usize,
    xsdt: usize,
    fadt: usize,
    facs: usize,
    dsdt: usize,
    madt: usize,
    madt_len: usize,
    end: usize,
}

impl Offsets {
    /// The tables in order, each after the last at its alignment; `None` on overflow.
    fn new(madt_len: usize) -> Option<Self> {
        let after = |at: usize, len: usize, align: usize| {
            at.checked_add(len).and_then(|end| end.checked_next_multiple_of(align))
        };
        let rsdt = after(0, rsdp::LEN, TABLE_ALIGN)?;
        let xsdt = after(rsdt, xsdt::RSDT_LEN, TABLE_ALIGN)?;
        let fadt = after(xsdt, xsdt::XSDT_LEN, TABLE_ALIGN)?;
        let facs = after(fadt, fadt::LEN, facs::ALIGN)?;
        let dsdt = after(facs, facs::LEN, TABLE_ALIGN)?;
        let madt = after(dsdt, dsdt::LEN, TABLE_ALIGN)?;
        let end = madt.checked_add(madt_len)?;
        Some(Self { rsdt, xsdt, fadt, facs, dsdt, madt, madt_len, end })
    }
}

/// Check the configuration whole: every refusal before anything is written.
fn check(config: &AcpiConfig<'_>) -> Result<(), AcpiError> {
    let cpus = config.apic_ids.len();
    if cpus == 0 {
        return Err(AcpiError::NoCpus);
    }
    if cpus > madt::MAX_CPUS {
        return Err(AcpiError::TooManyCpus { cpus, max: madt::MAX_CPUS });
    }
    for (i, &id) in config.apic_ids.iter().enumerate() {
        if id == 0xff {
            return Err(AcpiError::BroadcastApicId);
        }
        if config.apic_ids.iter().skip(i.saturating_add(1)).any(|&other| other == id) {
            return Err(AcpiError::DuplicateApicId(id));
        }
    }
    let count = config.overrides.len();
    if count > MAX_OVERRIDES {
        return Err(AcpiError::TooManyOverrides { count, max: MAX_OVERRIDES });
    }
    if let Some(o) = config.overrides.iter().find(|o| usize::from(o.isa_irq) >= MAX_OVERRIDES) {
        return Err(AcpiError::NotAnIsaIrq(o.isa_irq));
    }
    Ok(())
}

/// Check `config` and `base` and place the tables.
fn place(config: &AcpiConfig<'_>, base: u64) -> Result<(Offsets, AcpiLayout), AcpiError> {
    check(config)?;
    if !base.is_multiple_of(BASE_ALIGN) {
        return Err(AcpiError::MisalignedBase(base));
    }
    let too_high = |end: u64| AcpiError::AboveFourGiB { end };
    let madt_len =
        madt::len(config.apic_ids.len(), config.ioapic.is_some(), config.overrides.len());
    let off = madt_len.and_then(Offsets::new).ok_or(too_high(u64::MAX))?;
    let at = |offset: usize| {
        u64::try_from(offset).ok().and_then(|o| base.checked_add(o)).ok_or(too_high(u64::MAX))
    };
    let end = at(off.end)?;
    if end > 1 << 32 {
        return Err(too_high(end));
    }
    let layout = AcpiLayout {
        rsdp: base,
        rsdt: at(off.rsdt)?,
        xsdt: at(off.xsdt)?,
        fadt: at(off.fadt)?,
        facs: at(off.facs)?,
        dsdt: at(off.dsdt)?,
        madt: at(off.madt)?,
        len: off.end,
    };
    Ok((off, layout))
}

/// The `len` bytes of `out` at `at`.
fn slot(out: &mut [u8], at: usize, len: usize) -> Option<&mut [u8]> {
    at.checked_add(len).and_then(|end| out.get_mut(at..end))
}

/// Where the tables for `config` would lie at `base`, without writing them: for sizing
/// the region before [`build`].
pub fn layout(config: &AcpiConfig<'_>, base: u64) -> Result<AcpiLayout, AcpiError> {
    place(config, base).map(|(_, layout)| layout)
}

/// Write the tables for `config` into `out`, which the guest sees at guest-physical
/// `base`: the RSDP at `out[0]`, then the others as the module's table shows. Bytes of
/// `out` past [`AcpiLayout::len`] are left as they were.
pub fn build(config: &AcpiConfig<'_>, base: u64, out: &mut [u8]) -> Result<AcpiLayout, AcpiError> {
    let (off, layout) = place(config, base)?;
    let have = out.len();
    let too_small = AcpiError::BufferTooSmall { need: off.end, have };
    let out = out.get_mut(..off.end).ok_or(too_small)?;
    // `place` kept every address below 4 GiB.
    let low = |addr: u64| u32::try_from(addr).map_err(|_| AcpiError::AboveFourGiB { end: addr });
    let (fadt32, madt32) = (low(layout.fadt)?, low(layout.madt)?);
    let (dsdt32, facs32, rsdt32) = (low(layout.dsdt)?, low(layout.facs)?, low(layout.rsdt)?);
    out.fill(0);
    rsdp::write(slot(out, 0, rsdp::LEN).ok_or(too_small)?, rsdt32, layout.xsdt);
    xsdt::write_rsdt(slot(out, off.rsdt, xsdt::RSDT_LEN).ok_or(too_small)?, &[fadt32, madt32]);
    xsdt::write_xsdt(
        slot(out, off.xsdt, xsdt::XSDT_LEN).ok_or(too_small)?,
        &[layout.fadt, layout.madt],
    );
    fadt::write(slot(out, off.fadt, fadt::LEN).ok_or(too_small)?, config, dsdt32, facs32);
    facs::write(slot(out, off.facs, facs::LEN).ok_or(too_small)?);
    dsdt::write(slot(out, off.dsdt, dsdt::LEN).ok_or(too_small)?);
    madt::write(
        slot(out, off.madt, off.madt_len).ok_or(too_small)?,
        config.lapic_address,
        config.apic_ids,
        config.ioapic.as_ref(),
        config.overrides,
    );
    Ok(layout)
}
