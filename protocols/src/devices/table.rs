//! The device list as the root task writes it into a VM's `VmDescription`: fixed size,
//! plain bytes (docs/abi.md gives the layout). The VMM reads it once at start and checks
//! it again with [`DeviceSet::check`] ([`DeviceTable::decode`]): the frame is input like
//! any other, so a bad table stops the VM with the device named, never a panic.

use super::{Device, DeviceError, DeviceSet, Kind, MAX_DEVICES};

/// One device: its kind and, where [`flags`] say so, its place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DeviceSlot {
    /// The [`Kind`]'s discriminant.
    pub kind: u8,
    /// The IRQ line (with [`flags::IRQ`]).
    pub irq: u8,
    /// Which of the place fields hold a value.
    pub flags: u16,
    /// The first port (with [`flags::PORTS`]).
    pub port_first: u16,
    /// The last port (with [`flags::PORTS`]).
    pub port_last: u16,
    /// The first MMIO byte (with [`flags::MMIO`]).
    pub mmio_first: u64,
    /// The last MMIO byte (with [`flags::MMIO`]).
    pub mmio_last: u64,
}

/// Bits of [`DeviceSlot::flags`].
pub mod flags {
    /// `port_first..=port_last` is given.
    pub const PORTS: u16 = 1 << 0;
    /// `mmio_first..=mmio_last` is given.
    pub const MMIO: u16 = 1 << 1;
    /// `irq` is given.
    pub const IRQ: u16 = 1 << 2;
    /// Every bit that means something.
    pub const ALL: u16 = PORTS | MMIO | IRQ;
}

/// A VM's devices: the first `count` slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DeviceTable {
    /// Slots in use.
    pub count: u32,
    /// Zero.
    pub reserved: u32,
    /// The devices.
    pub slots: [DeviceSlot; MAX_DEVICES],
}

/// Why a table does not decode (before the rules between devices are checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// `count` is over [`MAX_DEVICES`].
    Count(u32),
    /// A slot sets flag bits that mean nothing.
    Flags {
        /// The slot.
        index: usize,
        /// Its flags.
        flags: u16,
    },
    /// The rules refuse the list.
    Device(DeviceError),
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Count(n) => write!(f, "device table of {n} entries, over {MAX_DEVICES}"),
            Self::Flags { index, flags } => {
                write!(f, "device #{index}: flags {flags:#x} outside {:#x}", flags::ALL)
            }
            Self::Device(e) => e.fmt(f),
        }
    }
}

impl From<DeviceError> for TableError {
    fn from(e: DeviceError) -> Self {
        Self::Device(e)
    }
}

impl DeviceSlot {
    /// `d` as a slot.
    pub fn new(d: &Device) -> Self {
        let mut s = Self { kind: d.kind as u8, ..Self::default() };
        if let Some((first, last)) = d.ports {
            (s.port_first, s.port_last) = (first, last);
            s.flags |= flags::PORTS;
        }
        if let Some((first, last)) = d.mmio {
            (s.mmio_first, s.mmio_last) = (first, last);
            s.flags |= flags::MMIO;
        }
        if let Some(irq) = d.irq {
            s.irq = irq;
            s.flags |= flags::IRQ;
        }
        s
    }

    /// The slot as a manifest entry; slot `index` for messages.
    fn device(&self, index: usize) -> Result<Device, TableError> {
        if self.flags & !flags::ALL != 0 {
            return Err(TableError::Flags { index, flags: self.flags });
        }
        let kind =
            Kind::from_raw(self.kind).ok_or(DeviceError::UnknownKind { index, raw: self.kind })?;
        let has = |bit: u16| self.flags & bit != 0;
        Ok(Device {
            kind,
            ports: has(flags::PORTS).then_some((self.port_first, self.port_last)),
            mmio: has(flags::MMIO).then_some((self.mmio_first, self.mmio_last)),
            irq: has(flags::IRQ).then_some(self.irq),
        })
    }
}

impl DeviceTable {
    /// The table of `set`: every present device, the movable ones with their place.
    pub fn new(set: &DeviceSet) -> Self {
        let mut t = Self::default();
        for (slot, d) in t.slots.iter_mut().zip(set.listed()) {
            *slot = DeviceSlot::new(&d);
            t.count = t.count.wrapping_add(1);
        }
        t
    }

    /// Decode and check the table: the VMM's view of its devices.
    pub fn decode(&self) -> Result<DeviceSet, TableError> {
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        let slots = self.slots.get(..count).ok_or(TableError::Count(self.count))?;
        let mut list = [Device::standard(Kind::Lapic); MAX_DEVICES];
        for (i, (slot, d)) in slots.iter().zip(list.iter_mut()).enumerate() {
            *d = slot.device(i)?;
        }
        Ok(DeviceSet::check(list.get(..count).unwrap_or_default())?)
    }
}

#[cfg(test)]
mod tests {
    use super::{flags, DeviceSlot, DeviceTable, TableError};
    use crate::devices::{DeviceError, DeviceSet, Kind};

    #[test]
    fn the_standard_set_round_trips() {
        let t = DeviceTable::new(&DeviceSet::STANDARD);
        assert_eq!(t.count, 10);
        assert_eq!(t.decode(), Ok(DeviceSet::STANDARD));
        let bytes = bytemuck::bytes_of(&t);
        let back: DeviceTable = bytemuck::pod_read_unaligned(bytes);
        assert_eq!(back.decode(), Ok(DeviceSet::STANDARD));
    }

    /// The bytes docs/abi.md gives: the UART's slot is the ninth.
    #[test]
    fn the_layout_is_the_documented_one() {
        use core::mem::offset_of;
        assert_eq!(size_of::<DeviceSlot>(), 24);
        assert_eq!(offset_of!(DeviceSlot, flags), 2);
        assert_eq!(offset_of!(DeviceSlot, port_first), 4);
        assert_eq!(offset_of!(DeviceSlot, port_last), 6);
        assert_eq!(offset_of!(DeviceSlot, mmio_first), 8);
        assert_eq!(offset_of!(DeviceSlot, mmio_last), 16);
        assert_eq!(offset_of!(DeviceTable, slots), 8);
        assert_eq!(size_of::<DeviceTable>(), 8 + 24 * 10);
        let t = DeviceTable::new(&DeviceSet::STANDARD);
        let bytes = bytemuck::bytes_of(&t);
        let uart = &bytes[8 + 24 * 8..8 + 24 * 9];
        assert_eq!(uart[..8], [9, 4, 0b101, 0, 0xf8, 0x03, 0xff, 0x03]);
    }

    /// The VMM's check of what it was given: every fault is an error naming the slot or
    /// the device, never a panic.
    #[test]
    fn a_bad_table_is_refused_naming_the_device() {
        let good = DeviceTable::new(&DeviceSet::STANDARD);
        let mut t = good;
        t.count = 11;
        assert_eq!(t.decode(), Err(TableError::Count(11)));
        t.count = u32::MAX;
        assert_eq!(t.decode(), Err(TableError::Count(u32::MAX)));
        t = good;
        t.slots[3].kind = 77;
        let e = t.decode().unwrap_err();
        assert_eq!(e, TableError::Device(DeviceError::UnknownKind { index: 3, raw: 77 }));
        assert_eq!(e.to_string(), "device #3: kind 77 is no known kind");
        t = good;
        t.slots[4].flags = 0x80;
        assert_eq!(t.decode(), Err(TableError::Flags { index: 4, flags: 0x80 }));
        t = good;
        t.slots[8].irq = 1;
        let e = t.decode().unwrap_err();
        assert_eq!(e.to_string(), "device uart16550: irq 1 is i8042's already");
        t = good;
        t.slots[8].port_first = 0x60;
        t.slots[8].port_last = 0x67;
        assert!(matches!(
            t.decode(),
            Err(TableError::Device(DeviceError::PortOverlap { kind: Kind::Uart16550, .. }))
        ));
        t = good;
        t.slots[3].flags = flags::IRQ; // the PIT given a line
        assert!(t.decode().unwrap_err().to_string().starts_with("device pit8254: sits at"));
        t = good;
        t.slots[1] = t.slots[0]; // the PIC twice, no LAPIC
        assert_eq!(
            t.decode(),
            Err(TableError::Device(DeviceError::Twice { index: 1, kind: Kind::Pic8259 }))
        );
        t = good;
        t.count = 0;
        assert_eq!(
            t.decode(),
            Err(TableError::Device(DeviceError::Missing { kind: Kind::Pic8259 }))
        );
        // Arbitrary bytes decode or are refused; nothing else.
        let mut bytes = bytemuck::bytes_of(&good).to_vec();
        for i in 0..bytes.len() {
            bytes[i] = bytes[i].wrapping_mul(31).wrapping_add(i as u8);
            let t: DeviceTable = bytemuck::pod_read_unaligned(&bytes);
            let _ = t.decode();
        }
    }
}
