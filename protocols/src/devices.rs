//! The devices of a VM: which kinds exist, where each sits on the PC, which of them can
//! move, and the rules a VM's list must keep. The build tool, the root task and the VMM
//! all check a list with [`DeviceSet::check`], so the three cannot disagree.
//!
//! A manifest's `[[vm]]` may list its devices ([`Device`], as written: a kind and, for
//! the kinds that move, a place); without a list a VM gets [`DeviceSet::STANDARD`], the
//! PC every VM had before lists existed. A checked list is a [`DeviceSet`]: which kinds
//! are present and where the movable ones sit. Each kind appears at most once (one UART
//! per VM), which keeps the set a few words and the VMM's buses fixed-size. The root task
//! hands the set to the VMM in its `VmDescription` as a [`table::DeviceTable`].
//!
//! Only the 16550 (its 8 ports and IRQ line), the I/O APIC (its 4 KiB window) and the
//! debug-exit port (its 4 ports) move; every other kind sits at its PC address and
//! refuses a place. The local APIC and the 8259 pair are always present: the vCPU's
//! interrupts reach it through them. The I/O APIC needs the ACPI PM registers: only the
//! ACPI tables (whose FADT declares those registers) tell a guest where it is.

use serde::{Deserialize, Serialize};

pub mod table;

/// The most devices a VM lists: one per kind.
pub const MAX_DEVICES: usize = Kind::ALL.len();

/// COM1: the standard 16550's base port and IRQ line.
pub const COM1: u16 = 0x3f8;
/// See [`COM1`].
pub const COM1_IRQ: u8 = 4;
/// Ports of a 16550.
pub const UART_PORTS: u16 = 8;
/// The I/O APIC's standard window.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Bytes of the I/O APIC's window (and of any MMIO device's page here).
pub const MMIO_PAGE: u64 = 0x1000;
/// Where an I/O APIC may sit: the chipset's hole below 4 GiB, above any VM's RAM.
pub const IOAPIC_WINDOW: (u64, u64) = (0xfe00_0000, 0xfeff_ffff);
/// The local APIC's page after reset (the guest may move it by IA32_APIC_BASE).
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// The debug-exit device's standard first port.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Ports of the debug-exit device.
pub const DEBUG_EXIT_PORTS: u16 = 4;
/// The ACPI PM registers' first port (PM1 event, PM1 control, PM timer).
pub const ACPI_PM_PORT: u16 = 0x600;
/// Ports of the ACPI PM registers.
pub const ACPI_PM_PORTS: u16 = 12;
/// The SCI's ISA IRQ, as on a PIIX4.
pub const SCI_IRQ: u8 = 9;
/// The 8259 pair's cascade line.
pub const CASCADE_IRQ: u8 = 2;
/// The PIT's IRQ line.
pub const PIT_IRQ: u8 = 0;
/// The ISA lines: the 8259 pair's inputs.
pub const ISA_LINES: u8 = 16;

/// A kind of device. The discriminants are the table's `kind` bytes (docs/abi.md);
/// kinds are only ever appended.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// The 8259 pair (0x20-0x21, 0xa0-0xa1; IRQ 2 is its cascade). Always present.
    Pic8259 = 1,
    /// The local APIC (its xAPIC page at 0xfee00000 after reset). Always present.
    Lapic = 2,
    /// The I/O APIC (a 4 KiB window, 0xfec00000 by default; movable).
    Ioapic = 3,
    /// The 8254 PIT (0x40-0x43 and port B, 0x61; IRQ 0).
    Pit8254 = 4,
    /// The i8042 keyboard controller (0x60, 0x64; IRQs 1 and 12).
    I8042 = 5,
    /// The CMOS RTC (0x70-0x71; IRQ 8).
    CmosRtc = 6,
    /// The POST-code port 0x80 (Linux's I/O delay).
    PostCode = 7,
    /// The ACPI PM registers (0x600-0x60b; the SCI on IRQ 9).
    AcpiPm = 8,
    /// A 16550 UART (8 ports and one IRQ line; COM1, 0x3f8 and IRQ 4, by default).
    Uart16550 = 9,
    /// The debug-exit device (4 ports, 0xf4 by default): a write stops the VM.
    DebugExit = 10,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Self; 10] = [
        Self::Pic8259,
        Self::Lapic,
        Self::Ioapic,
        Self::Pit8254,
        Self::I8042,
        Self::CmosRtc,
        Self::PostCode,
        Self::AcpiPm,
        Self::Uart16550,
        Self::DebugExit,
    ];

    /// Its name in a manifest.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pic8259 => "pic8259",
            Self::Lapic => "lapic",
            Self::Ioapic => "ioapic",
            Self::Pit8254 => "pit8254",
            Self::I8042 => "i8042",
            Self::CmosRtc => "cmos_rtc",
            Self::PostCode => "post_code",
            Self::AcpiPm => "acpi_pm",
            Self::Uart16550 => "uart16550",
            Self::DebugExit => "debug_exit",
        }
    }

    /// The kind named `name` in a manifest.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind whose table byte is `raw`.
    pub fn from_raw(raw: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|&k| k as u8 == raw)
    }

    /// Its bit in [`DeviceSet`]'s presence mask.
    const fn bit(self) -> u16 {
        1 << (self as u8)
    }

    /// Whether a manifest may give this kind ports, an MMIO range, an IRQ line.
    const fn movable(self) -> (bool, bool, bool) {
        match self {
            Self::Uart16550 => (true, false, true),
            Self::Ioapic => (false, true, false),
            Self::DebugExit => (true, false, false),
            _ => (false, false, false),
        }
    }
}

/// One device as a manifest lists it: a kind, and for the kinds that move, where
/// (inclusive ranges; a key left out takes the kind's standard place).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// What it is.
    pub kind: Kind,
    /// Its ports, `first..=last`.
    pub ports: Option<(u16, u16)>,
    /// Its MMIO range, `first..=last`.
    pub mmio: Option<(u64, u64)>,
    /// Its IRQ line.
    pub irq: Option<u8>,
}

impl Device {
    /// `kind` at its standard place.
    pub const fn standard(kind: Kind) -> Self {
        Self { kind, ports: None, mmio: None, irq: None }
    }
}

/// A key of a device entry, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `ports`.
    Ports,
    /// `mmio`.
    Mmio,
    /// `irq`.
    Irq,
}

impl Key {
    const fn name(self) -> &'static str {
        match self {
            Self::Ports => "ports",
            Self::Mmio => "mmio",
            Self::Irq => "irq",
        }
    }
}

/// Why a device list was refused. Each names the device by its kind (a kind appears at
/// most once) and, where the list itself is at fault, its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// More devices than [`MAX_DEVICES`].
    TooMany {
        /// How many.
        count: usize,
    },
    /// A table byte that names no kind (only a table can say this; a manifest's unknown
    /// name is the build tool's refusal).
    UnknownKind {
        /// The entry.
        index: usize,
        /// The byte.
        raw: u8,
    },
    /// A kind listed twice.
    Twice {
        /// The second entry.
        index: usize,
        /// The kind.
        kind: Kind,
    },
    /// A place given to a kind that sits at its PC address.
    Fixed {
        /// The kind.
        kind: Kind,
        /// What was given.
        key: Key,
    },
    /// Ports the kind cannot take (a 16550: 8 ports from a multiple of 8; the debug-exit
    /// device: 4 from a multiple of 4).
    BadPorts {
        /// The kind.
        kind: Kind,
        /// The first port.
        first: u16,
        /// The last port.
        last: u16,
    },
    /// An MMIO range the kind cannot take (the I/O APIC: one aligned 4 KiB page inside
    /// [`IOAPIC_WINDOW`]).
    BadMmio {
        /// The kind.
        kind: Kind,
        /// The first byte.
        first: u64,
        /// The last byte.
        last: u64,
    },
    /// An IRQ line the kind cannot take (a 16550: an ISA line, not 0, which the I/O
    /// APIC sees on pin 2).
    BadIrq {
        /// The kind.
        kind: Kind,
        /// The line.
        irq: u8,
    },
    /// Two devices claim the same port.
    PortOverlap {
        /// The later device.
        kind: Kind,
        /// The earlier one.
        other: Kind,
        /// A port both claim.
        port: u16,
    },
    /// Two devices claim the same MMIO byte.
    MmioOverlap {
        /// The later device.
        kind: Kind,
        /// The earlier one.
        other: Kind,
        /// The address both claim.
        address: u64,
    },
    /// Two devices drive the same IRQ line.
    IrqConflict {
        /// The later device.
        kind: Kind,
        /// The earlier one.
        other: Kind,
        /// The line.
        irq: u8,
    },
    /// A kind every VM has is missing.
    Missing {
        /// The kind.
        kind: Kind,
    },
    /// A kind is listed without one it needs.
    Needs {
        /// The kind.
        kind: Kind,
        /// What it needs.
        needs: Kind,
    },
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::TooMany { count } => {
                write!(f, "{count} devices: at most {MAX_DEVICES}, one of each kind")
            }
            Self::UnknownKind { index, raw } => {
                write!(f, "device #{index}: kind {raw} is no known kind")
            }
            Self::Twice { index, kind } => write!(
                f,
                "device #{index} ({}): listed twice (one device of each kind)",
                kind.name()
            ),
            Self::Fixed { kind, key } => write!(
                f,
                "device {}: sits at its PC place and takes no {} (only uart16550 ports and \
                 irq, ioapic mmio and debug_exit ports move)",
                kind.name(),
                key.name()
            ),
            Self::BadPorts { kind, first, last } => {
                let need = match kind {
                    Kind::DebugExit => "4 ports from a multiple of 4",
                    _ => "8 ports from a multiple of 8",
                };
                write!(f, "device {}: ports {first:#x}..={last:#x}: it takes {need}", kind.name())
            }
            Self::BadMmio { kind, first, last } => write!(
                f,
                "device {}: mmio {first:#x}..={last:#x}: it takes one aligned 4 KiB page in \
                 {:#x}..={:#x}",
                kind.name(),
                IOAPIC_WINDOW.0,
                IOAPIC_WINDOW.1
            ),
            Self::BadIrq { kind, irq } => write!(
                f,
                "device {}: irq {irq}: it takes an ISA line 1..=15 (0 is the PIT's, wired to \
                 the I/O APIC's pin 2)",
                kind.name()
            ),
            Self::PortOverlap { kind, other, port } => write!(
                f,
                "device {}: its ports overlap those of {} (port {port:#x})",
                kind.name(),
                other.name()
            ),
            Self::MmioOverlap { kind, other, address } => write!(
                f,
                "device {}: its mmio overlaps that of {} (at {address:#x})",
                kind.name(),
                other.name()
            ),
            Self::IrqConflict { kind, other, irq } => {
                write!(f, "device {}: irq {irq} is {}'s already", kind.name(), other.name())
            }
            Self::Missing { kind } => write!(
                f,
                "the devices must include {} (every VM has the 8259 pair and the local APIC)",
                kind.name()
            ),
            Self::Needs { kind, needs } => write!(
                f,
                "device {} needs {} (the ACPI tables that tell the guest where the I/O APIC \
                 is declare the PM registers)",
                kind.name(),
                needs.name()
            ),
        }
    }
}

/// A checked device list: which kinds are present and where the movable ones sit. The
/// VMM builds its buses, interrupt lines and ACPI tables from this, once, at start. The
/// manifest carries a VM's list in this form (a few bytes, where the list as written
/// would be hundreds per VM in the root task's decoded manifest); a decoded one is input
/// and is checked again ([`DeviceSet::recheck`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSet {
    /// Bit `kind as u8` set: present.
    present: u16,
    /// The 16550's base port and IRQ line (meaningful while present).
    uart: (u16, u8),
    /// The I/O APIC's window (meaningful while present).
    ioapic: u64,
    /// The debug-exit device's first port (meaningful while present).
    debug_exit: u16,
}

/// One device's ports (up to two ranges), MMIO range and IRQ lines (up to two), placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The kind.
    pub kind: Kind,
    /// Its port ranges, inclusive.
    pub ports: [Option<(u16, u16)>; 2],
    /// Its MMIO range, inclusive.
    pub mmio: Option<(u64, u64)>,
    /// The ISA lines it drives or that its kind owns.
    pub irqs: [Option<u8>; 2],
}

impl Placed {
    const fn fixed(kind: Kind, ports: [Option<(u16, u16)>; 2], irqs: [Option<u8>; 2]) -> Self {
        Self { kind, ports, mmio: None, irqs }
    }
}

/// The last of `len` ports from `first`, if they fit.
fn last_port(first: u16, len: u16) -> Option<u16> {
    first.checked_add(len.checked_sub(1)?)
}

impl DeviceSet {
    /// The PC every VM gets without a list: every kind at its standard place.
    pub const STANDARD: Self = Self {
        present: {
            let mut bits = 0;
            let mut i = 0;
            while i < Kind::ALL.len() {
                bits |= Kind::ALL[i].bit();
                i += 1;
            }
            bits
        },
        uart: (COM1, COM1_IRQ),
        ioapic: IOAPIC_BASE,
        debug_exit: DEBUG_EXIT_PORT,
    };

    /// Check `list` whole: each entry's place, then the rules between them.
    pub fn check(list: &[Device]) -> Result<Self, DeviceError> {
        if list.len() > MAX_DEVICES {
            return Err(DeviceError::TooMany { count: list.len() });
        }
        let mut set = Self { present: 0, ..Self::STANDARD };
        for (index, d) in list.iter().enumerate() {
            if set.has(d.kind) {
                return Err(DeviceError::Twice { index, kind: d.kind });
            }
            set.place(d)?;
            let placed = set.placed(d.kind);
            for earlier in list.get(..index).unwrap_or_default() {
                conflict(&placed, &set.placed(earlier.kind))?;
            }
            set.present |= d.kind.bit();
        }
        for kind in [Kind::Pic8259, Kind::Lapic] {
            if !set.has(kind) {
                return Err(DeviceError::Missing { kind });
            }
        }
        if set.has(Kind::Ioapic) && !set.has(Kind::AcpiPm) {
            return Err(DeviceError::Needs { kind: Kind::Ioapic, needs: Kind::AcpiPm });
        }
        Ok(set)
    }

    /// Check a set that came as input (decoded from a manifest) as the list it stands
    /// for: the same set, or the rule it breaks.
    pub fn recheck(&self) -> Result<Self, DeviceError> {
        let mut list = heapless::Vec::<Device, MAX_DEVICES>::new();
        for d in self.listed() {
            // One device per kind: the list never holds more than the kinds.
            list.push(d).map_err(|_| DeviceError::TooMany { count: MAX_DEVICES + 1 })?;
        }
        Self::check(&list)
    }

    /// Take `d`'s place (its kind's standard one where it gives none).
    fn place(&mut self, d: &Device) -> Result<(), DeviceError> {
        let (ports, mmio, irq) = d.kind.movable();
        for (given, allowed, key) in [
            (d.ports.is_some(), ports, Key::Ports),
            (d.mmio.is_some(), mmio, Key::Mmio),
            (d.irq.is_some(), irq, Key::Irq),
        ] {
            if given && !allowed {
                return Err(DeviceError::Fixed { kind: d.kind, key });
            }
        }
        let kind = d.kind;
        let aligned_ports = |(first, last): (u16, u16), len: u16| {
            if first.is_multiple_of(len) && last_port(first, len) == Some(last) {
                Ok(first)
            } else {
                Err(DeviceError::BadPorts { kind, first, last })
            }
        };
        match kind {
            Kind::Uart16550 => {
                let base = d.ports.map_or(Ok(COM1), |p| aligned_ports(p, UART_PORTS))?;
                let irq = d.irq.unwrap_or(COM1_IRQ);
                if irq == PIT_IRQ || irq >= ISA_LINES {
                    return Err(DeviceError::BadIrq { kind, irq });
                }
                self.uart = (base, irq);
            }
            Kind::DebugExit => {
                self.debug_exit =
                    d.ports.map_or(Ok(DEBUG_EXIT_PORT), |p| aligned_ports(p, DEBUG_EXIT_PORTS))?;
            }
            Kind::Ioapic => {
                if let Some((first, last)) = d.mmio {
                    let inside = IOAPIC_WINDOW.0 <= first && last <= IOAPIC_WINDOW.1;
                    let page = first.checked_add(MMIO_PAGE - 1) == Some(last);
                    if !(inside && page && first.is_multiple_of(MMIO_PAGE)) {
                        return Err(DeviceError::BadMmio { kind, first, last });
                    }
                    self.ioapic = first;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the VM has a `kind`.
    #[inline]
    pub const fn has(&self, kind: Kind) -> bool {
        self.present & kind.bit() != 0
    }

    /// The 16550's base port and IRQ line, if the VM has one.
    pub const fn uart(&self) -> Option<(u16, u8)> {
        if self.has(Kind::Uart16550) {
            Some(self.uart)
        } else {
            None
        }
    }

    /// The I/O APIC's window, if the VM has one.
    pub const fn ioapic(&self) -> Option<u64> {
        if self.has(Kind::Ioapic) {
            Some(self.ioapic)
        } else {
            None
        }
    }

    /// The debug-exit device's first port, if the VM has one.
    pub const fn debug_exit(&self) -> Option<u16> {
        if self.has(Kind::DebugExit) {
            Some(self.debug_exit)
        } else {
            None
        }
    }

    /// The same set without `kind` (for tests and tools; the rules are not re-checked).
    pub const fn without(mut self, kind: Kind) -> Self {
        self.present &= !kind.bit();
        self
    }

    /// The same set with the debug-exit device at `port` (for tests and tools; the rules
    /// are not re-checked).
    pub const fn with_debug_exit(mut self, port: u16) -> Self {
        self.present |= Kind::DebugExit.bit();
        self.debug_exit = port;
        self
    }

    /// The present devices, in [`Kind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = Placed> + '_ {
        Kind::ALL.into_iter().filter(|&k| self.has(k)).map(|k| self.placed(k))
    }

    /// As a manifest would list it: each present kind, the movable ones with their place.
    pub fn listed(&self) -> impl Iterator<Item = Device> + '_ {
        Kind::ALL.into_iter().filter(|&k| self.has(k)).map(|kind| {
            let mut d = Device::standard(kind);
            match kind {
                Kind::Uart16550 => {
                    let (base, irq) = self.uart;
                    d.ports = last_port(base, UART_PORTS).map(|last| (base, last));
                    d.irq = Some(irq);
                }
                Kind::Ioapic => d.mmio = Some((self.ioapic, self.ioapic | (MMIO_PAGE - 1))),
                Kind::DebugExit => {
                    let first = self.debug_exit;
                    d.ports = last_port(first, DEBUG_EXIT_PORTS).map(|last| (first, last));
                }
                _ => {}
            }
            d
        })
    }

    /// Where `kind` sits in this set (whether or not it is present).
    pub fn placed(&self, kind: Kind) -> Placed {
        let one = |port: u16| Some((port, port));
        match kind {
            Kind::Pic8259 => Placed::fixed(
                kind,
                [Some((0x20, 0x21)), Some((0xa0, 0xa1))],
                [Some(CASCADE_IRQ), None],
            ),
            Kind::Lapic => Placed {
                kind,
                ports: [None, None],
                mmio: Some((LAPIC_BASE, LAPIC_BASE | (MMIO_PAGE - 1))),
                irqs: [None, None],
            },
            Kind::Ioapic => Placed {
                kind,
                ports: [None, None],
                mmio: Some((self.ioapic, self.ioapic | (MMIO_PAGE - 1))),
                irqs: [None, None],
            },
            Kind::Pit8254 => {
                Placed::fixed(kind, [Some((0x40, 0x43)), one(0x61)], [Some(PIT_IRQ), None])
            }
            Kind::I8042 => Placed::fixed(kind, [one(0x60), one(0x64)], [Some(1), Some(12)]),
            Kind::CmosRtc => Placed::fixed(kind, [Some((0x70, 0x71)), None], [Some(8), None]),
            Kind::PostCode => Placed::fixed(kind, [one(0x80), None], [None, None]),
            Kind::AcpiPm => {
                let last = ACPI_PM_PORT + (ACPI_PM_PORTS - 1);
                Placed::fixed(kind, [Some((ACPI_PM_PORT, last)), None], [Some(SCI_IRQ), None])
            }
            Kind::Uart16550 => {
                let (base, irq) = self.uart;
                let ports = last_port(base, UART_PORTS).map(|last| (base, last));
                Placed::fixed(kind, [ports, None], [Some(irq), None])
            }
            Kind::DebugExit => {
                let first = self.debug_exit;
                let ports = last_port(first, DEBUG_EXIT_PORTS).map(|last| (first, last));
                Placed::fixed(kind, [ports, None], [None, None])
            }
        }
    }
}

/// Whether two inclusive ranges meet: the first value both hold.
fn meet<T: Ord + Copy>(a: (T, T), b: (T, T)) -> Option<T> {
    (a.0 <= b.1 && b.0 <= a.1).then(|| a.0.max(b.0))
}

/// Refuse `new` if it claims a port, an MMIO byte or a line of `old`.
fn conflict(new: &Placed, old: &Placed) -> Result<(), DeviceError> {
    let (kind, other) = (new.kind, old.kind);
    for a in new.ports.iter().flatten() {
        if let Some(port) = old.ports.iter().flatten().find_map(|&b| meet(*a, b)) {
            return Err(DeviceError::PortOverlap { kind, other, port });
        }
    }
    if let (Some(a), Some(b)) = (new.mmio, old.mmio) {
        if let Some(address) = meet(a, b) {
            return Err(DeviceError::MmioOverlap { kind, other, address });
        }
    }
    if let Some(&irq) = new.irqs.iter().flatten().find(|l| old.irqs.contains(&Some(**l))) {
        return Err(DeviceError::IrqConflict { kind, other, irq });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
