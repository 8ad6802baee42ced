//! The machine's ACPI tables as the kernel reads them at boot: which CPUs exist and where
//! the I/O APICs are (MADT), whether the PC's 8259 pair exists (the MADT's PCAT_COMPAT),
//! and the PM timer (FADT), a calibration reference that needs no legacy PIT.
//!
//! The tables come from firmware, so they are input like any other: every address is read
//! through `phys`, which answers only for memory the kernel maps; every length and
//! checksum is checked; a bad RSDP, MADT or FADT is a typed error, and the kernel then
//! boots as the one-CPU PC it assumes without ACPI. Other tables the root lists are never
//! read past their signature.

use heapless::Vec;
pub use protocols::acpi::madt::IoApic;
use protocols::acpi::{fadt, madt, rsdp, sdt};
use protocols::le::{u16_at, u32_at, u64_at};

/// The most CPUs the kernel records; the MADT's others are counted, not used.
pub const MAX_CPUS: usize = 16;
/// The most I/O APICs recorded.
const MAX_IO_APICS: usize = 8;
/// The most interrupt source overrides recorded (a PC has 16 ISA IRQs).
const MAX_OVERRIDES: usize = 16;
/// The most root-table entries looked at.
const MAX_TABLES: usize = 64;

/// Why the ACPI tables were not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The boot loader passed no RSDP.
    NoRsdp,
    /// The RSDP's signature, length or a checksum is wrong.
    BadRsdp,
    /// A table lies (partly) outside the memory the kernel maps.
    Unreadable {
        /// Its physical address.
        address: u64,
    },
    /// A table is shorter than its header and fixed fields.
    TooShort {
        /// Its signature.
        signature: [u8; 4],
    },
    /// A table's bytes do not sum to zero.
    BadChecksum {
        /// Its signature.
        signature: [u8; 4],
    },
    /// The RSDP points at something that is not an RSDT or XSDT.
    BadRoot,
    /// No MADT: the kernel cannot know the CPUs.
    NoMadt,
    /// A MADT entry runs past the table or is shorter than its type's fields.
    BadMadtEntry {
        /// Its offset in the MADT.
        offset: usize,
    },
}

/// A usable CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Its local APIC (or x2APIC) ID.
    pub apic_id: u32,
    /// Its ACPI processor UID.
    pub uid: u32,
}

/// An ISA IRQ that reaches the I/O APICs elsewhere than its own number, or not edge
/// triggered, active high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The ISA IRQ.
    pub irq: u8,
    /// The global system interrupt it arrives on.
    pub gsi: u32,
    /// MPS INTI flags: polarity in bits 1:0, trigger mode in bits 3:2.
    pub flags: u16,
}

/// The ACPI PM timer: a free-running 3.579545 MHz counter in an I/O port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    /// Its port.
    pub port: u16,
    /// Its width: 24 or 32 bits.
    pub bits: u8,
}

impl PmTimer {
    /// Its rate in Hz (ACPI 6.4 §4.8.3.3).
    pub const HZ: u64 = 3_579_545;

    /// Counts from `earlier` to `later`, across at most one wrap.
    pub fn elapsed(&self, earlier: u32, later: u32) -> u32 {
        let mask = if self.bits >= 32 { u32::MAX } else { (1 << self.bits) - 1 };
        later.wrapping_sub(earlier) & mask
    }
}

/// Where an ISA IRQ arrives at the I/O APICs, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaRoute {
    /// The global system interrupt.
    pub gsi: u32,
    /// Level-triggered (else edge).
    pub level: bool,
    /// Active low (else high).
    pub active_low: bool,
}

/// MPS INTI flags: polarity in bits 1:0 and trigger mode in bits 3:2; 3 means low or
/// level, anything else (bus default, high, edge) is what ISA lines are.
const INTI_LOW_OR_LEVEL: u16 = 3;

/// What the tables say about the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The usable CPUs, in the MADT's order (the boot CPU is conventionally first).
    pub cpus: Vec<Cpu, MAX_CPUS>,
    /// Usable CPUs past [`MAX_CPUS`].
    pub cpus_ignored: usize,
    /// The local APICs' physical address.
    pub local_apic: u64,
    /// The I/O APICs.
    pub io_apics: Vec<IoApic, MAX_IO_APICS>,
    /// The ISA IRQ overrides.
    pub overrides: Vec<Override, MAX_OVERRIDES>,
    /// The PC's 8259 pair exists.
    pub legacy_pics: bool,
    /// The PM timer, if the FADT declares one in I/O space.
    pub pm_timer: Option<PmTimer>,
}

fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
}

/// The system description table at `address`, checked: header, length and checksum.
fn table<'a>(
    phys: &dyn Fn(u64, usize) -> Option<&'a [u8]>,
    address: u64,
) -> Result<&'a [u8], Error> {
    let unreadable = Error::Unreadable { address };
    let header = phys(address, sdt::HEADER_LEN).ok_or(unreadable)?;
    let mut signature = [0; 4];
    signature.copy_from_slice(&header[sdt::offset::SIGNATURE..sdt::offset::SIGNATURE + 4]);
    let len = u32_at(header, sdt::offset::LENGTH).ok_or(unreadable)? as usize;
    if len < sdt::HEADER_LEN {
        return Err(Error::TooShort { signature });
    }
    let bytes = phys(address, len).ok_or(unreadable)?;
    if !sums_to_zero(bytes) {
        return Err(Error::BadChecksum { signature });
    }
    Ok(bytes)
}

/// The root table's entries: the XSDT's where the RSDP (revision 2 or later) names one,
/// else the RSDT's.
fn root_entries<'a>(
    rsdp_bytes: &[u8],
    phys: &dyn Fn(u64, usize) -> Option<&'a [u8]>,
) -> Result<impl Iterator<Item = u64> + 'a, Error> {
    let v1 = rsdp_bytes.get(..rsdp::V1_LEN).ok_or(Error::BadRsdp)?;
    if v1[..8] != rsdp::SIGNATURE || !sums_to_zero(v1) {
        return Err(Error::BadRsdp);
    }
    let mut xsdt = 0;
    if v1[rsdp::offset::REVISION] >= 2 {
        let len = u32_at(rsdp_bytes, rsdp::offset::LENGTH).ok_or(Error::BadRsdp)? as usize;
        let whole = rsdp_bytes.get(..len).filter(|_| len >= rsdp::LEN).ok_or(Error::BadRsdp)?;
        if !sums_to_zero(whole) {
            return Err(Error::BadRsdp);
        }
        xsdt = u64_at(whole, rsdp::offset::XSDT_ADDRESS).ok_or(Error::BadRsdp)?;
    }
    let (address, entry, signature) = if xsdt != 0 {
        (xsdt, 8, sdt::XSDT_SIGNATURE)
    } else {
        let rsdt = u32_at(v1, rsdp::offset::RSDT_ADDRESS).ok_or(Error::BadRsdp)?;
        (u64::from(rsdt), 4, sdt::RSDT_SIGNATURE)
    };
    let root = table(phys, address)?;
    if root[..4] != signature {
        return Err(Error::BadRoot);
    }
    let entries = root.get(sdt::HEADER_LEN..).unwrap_or_default();
    Ok(entries.chunks_exact(entry).take(MAX_TABLES).map(move |e| {
        let address = if entry == 4 { u32_at(e, 0).map(u64::from) } else { u64_at(e, 0) };
        address.unwrap_or(0)
    }))
}

impl Platform {
    /// Read the tables from the boot loader's copy of the RSDP.
    pub fn read<'a>(
        rsdp_bytes: Option<&[u8]>,
        phys: &dyn Fn(u64, usize) -> Option<&'a [u8]>,
    ) -> Result<Self, Error> {
        let (mut found_madt, mut found_fadt) = (None, None);
        for address in root_entries(rsdp_bytes.ok_or(Error::NoRsdp)?, phys)? {
            // Only the tables read here are checked; the others are never looked into.
            match phys(address, 4) {
                Some(s) if s == madt::SIGNATURE && found_madt.is_none() => {
                    found_madt = Some(table(phys, address)?);
                }
                Some(s) if s == fadt::SIGNATURE && found_fadt.is_none() => {
                    found_fadt = Some(table(phys, address)?);
                }
                _ => {}
            }
        }
        let mut platform = Self::from_madt(found_madt.ok_or(Error::NoMadt)?)?;
        platform.pm_timer = found_fadt.map(pm_timer).transpose()?.flatten();
        Ok(platform)
    }

    /// Where ISA IRQ `irq` arrives: its override's GSI, polarity and trigger, else its
    /// own number, edge, active high; `None` if another IRQ's override takes that input
    /// (the PIT's IRQ 0 on input 2 leaves the cascade's IRQ 2 none).
    pub fn isa_route(&self, irq: u8) -> Option<IsaRoute> {
        let own = self.overrides.iter().find(|o| o.irq == irq);
        let (gsi, flags) = own.map_or((u32::from(irq), 0), |o| (o.gsi, o.flags));
        let taken = self.overrides.iter().any(|o| o.gsi == gsi && o.irq != irq);
        (own.is_some() || !taken).then_some(IsaRoute {
            gsi,
            level: (flags >> 2) & 3 == INTI_LOW_OR_LEVEL,
            active_low: flags & 3 == INTI_LOW_OR_LEVEL,
        })
    }

    fn from_madt(table: &[u8]) -> Result<Self, Error> {
        let fixed = sdt::HEADER_LEN + madt::FIXED_LEN;
        let too_short = Error::TooShort { signature: madt::SIGNATURE };
        let local_apic = u32_at(table, sdt::HEADER_LEN).ok_or(too_short)?;
        let flags = u32_at(table, sdt::HEADER_LEN + 4).ok_or(too_short)?;
        let mut platform = Self {
            cpus: Vec::new(),
            cpus_ignored: 0,
            local_apic: u64::from(local_apic),
            io_apics: Vec::new(),
            overrides: Vec::new(),
            legacy_pics: flags & madt::PCAT_COMPAT != 0,
            pm_timer: None,
        };
        let mut offset = fixed;
        while offset < table.len() {
            let bad = Error::BadMadtEntry { offset };
            let (kind, len) = match table.get(offset..offset + 2) {
                Some(&[kind, len]) => (kind, usize::from(len)),
                _ => return Err(bad),
            };
            let e = table.get(offset..offset + len).filter(|_| len >= 2).ok_or(bad)?;
            platform.entry(kind, e).ok_or(bad)?;
            offset += len;
        }
        Ok(platform)
    }

    /// Take one MADT entry; `None` if it is shorter than its type's fields.
    fn entry(&mut self, kind: u8, e: &[u8]) -> Option<()> {
        use madt::entry;
        let mut cpu = |apic_id, uid, flags: u32| {
            if flags & madt::LAPIC_ENABLED != 0 && self.cpus.push(Cpu { apic_id, uid }).is_err() {
                self.cpus_ignored += 1;
            }
        };
        match kind {
            entry::LOCAL_APIC => cpu(u32::from(*e.get(3)?), u32::from(e[2]), u32_at(e, 4)?),
            entry::LOCAL_X2APIC => cpu(u32_at(e, 4)?, u32_at(e, 12)?, u32_at(e, 8)?),
            entry::IO_APIC => {
                let io = IoApic { id: *e.get(2)?, address: u32_at(e, 4)?, gsi_base: u32_at(e, 8)? };
                // Past the room, an I/O APIC's inputs are unused, never misrouted.
                let _ = self.io_apics.push(io);
            }
            entry::INTERRUPT_OVERRIDE => {
                let o = Override { irq: *e.get(3)?, gsi: u32_at(e, 4)?, flags: u16_at(e, 8)? };
                let _ = self.overrides.push(o);
            }
            entry::LAPIC_ADDRESS_OVERRIDE => self.local_apic = u64_at(e, 4)?,
            _ => {}
        }
        Some(())
    }
}

/// The FADT's PM timer: its extended (generic address) field where that names an I/O
/// port, else the ACPI 1.0 one; `None` if neither names one.
fn pm_timer(table: &[u8]) -> Result<Option<PmTimer>, Error> {
    let flags = u32_at(table, fadt::offset::FLAGS).unwrap_or(0);
    let bits = if flags & fadt::flags::TMR_VAL_EXT != 0 { 32 } else { 24 };
    let x = fadt::offset::X_PM_TMR_BLK;
    let extended = match (table.get(x), u64_at(table, x + 4)) {
        (Some(&fadt::gas::SYSTEM_IO), Some(port)) if port != 0 => Some(port),
        _ => None,
    };
    let legacy = u32_at(table, fadt::offset::PM_TMR_BLK)
        .ok_or(Error::TooShort { signature: fadt::SIGNATURE })?;
    let port = extended.unwrap_or(u64::from(legacy));
    Ok(u16::try_from(port).ok().filter(|p| *p != 0).map(|port| PmTimer { port, bits }))
}
