//! Address-range buses for port I/O and MMIO.
//!
//! A `Bus` maps disjoint, non-empty ranges to small `Copy` keys chosen by the VMM, not to
//! device objects: the VMM owns its devices by value (no heap, no shared ownership) and
//! also needs typed access to them outside the bus — the PIC to decide injection, the
//! UART's interrupt line to feed the PIC. `Bus::read`/`Bus::write` resolve the address
//! and hand `(key, offset)` to a [`DeviceMap`], which the VMM implements with one `match`.
//! Devices themselves implement the small [`BusDevice`] trait.
//!
//! An access must lie entirely inside one range. An unclaimed read returns all-ones (an
//! undriven ISA/PCI bus reads as 0xFF); an unclaimed write is dropped and counted, so a
//! guest probing for absent hardware behaves as on a real PC and the VMM can report it.

/// A device model reached through a bus range. `offset` is relative to the range base;
/// `data.len()` is the access width (1, 2, 4 or 8 bytes in practice, any length allowed).
pub trait BusDevice {
    /// Fill `data` with the bytes the device returns for a read at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Accept the bytes the guest writes at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// The VMM's set of devices, addressed by the bus key a range was registered with.
pub trait DeviceMap<K> {
    /// Forward a read that hit the range registered with `key`.
    fn read(&mut self, key: K, offset: u64, data: &mut [u8]);
    /// Forward a write that hit the range registered with `key`.
    fn write(&mut self, key: K, offset: u64, data: &[u8]);
}

/// Why a range could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The range has length zero.
    Empty,
    /// `base + len` does not fit in 64 bits.
    Wraps,
    /// The range intersects the one registered at `existing_base`.
    Overlap {
        /// Base of the range already registered.
        existing_base: u64,
    },
    /// All slots of this fixed-capacity bus are taken.
    Full,
}

/// One registered range: `[base, base + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry<K> {
    base: u64,
    len: u64,
    key: K,
}

impl<K> Entry<K> {
    /// True when `[addr, addr + size)` lies inside this range; `size` is at least 1.
    fn contains(&self, addr: u64, size: u64) -> bool {
        match addr.checked_sub(self.base) {
            Some(off) => off < self.len && size <= self.len.wrapping_sub(off),
            None => false,
        }
    }
}

/// A fixed-capacity map from address ranges to device keys. `N` is the number of ranges.
#[derive(Clone, Debug)]
pub struct Bus<K: Copy, const N: usize> {
    entries: [Option<Entry<K>>; N],
    unclaimed_reads: u64,
    unclaimed_writes: u64,
    /// The entry the last access resolved to: a guest tends to hit one device many
    /// times in a row, and it is checked before the scan.
    last: core::cell::Cell<usize>,
}

impl<K: Copy, const N: usize> Default for Bus<K, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy, const N: usize> Bus<K, N> {
    /// An empty bus.
    pub const fn new() -> Self {
        Self {
            entries: [None; N],
            unclaimed_reads: 0,
            unclaimed_writes: 0,
            last: core::cell::Cell::new(0),
        }
    }

    /// Claim `[base, base + len)` for `key`. Ranges may touch but never overlap.
    pub fn insert(&mut self, base: u64, len: u64, key: K) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty);
        }
        let end = base.checked_add(len).ok_or(BusError::Wraps)?;
        let mut free = None;
        for (i, slot) in self.entries.iter().enumerate() {
            match slot {
                Some(e) => {
                    // Both ends are exclusive and neither range wraps, so this cannot overflow.
                    let e_end = e.base.saturating_add(e.len);
                    if base < e_end && e.base < end {
                        return Err(BusError::Overlap { existing_base: e.base });
                    }
                }
                None => {
                    if free.is_none() {
                        free = Some(i);
                    }
                }
            }
        }
        let slot = free.and_then(|i| self.entries.get_mut(i)).ok_or(BusError::Full)?;
        *slot = Some(Entry { base, len, key });
        Ok(())
    }

    /// Release the range that starts exactly at `base`; returns its key.
    pub fn remove(&mut self, base: u64) -> Option<K> {
        let slot = self.entries.iter_mut().find(|s| matches!(s, Some(e) if e.base == base))?;
        slot.take().map(|e| e.key)
    }

    /// The key and range-relative offset for an access of `size` bytes at `addr`, if one
    /// range contains all of it. A zero-sized access resolves like a one-byte access.
    pub fn resolve(&self, addr: u64, size: usize) -> Option<(K, u64)> {
        let size = u64::try_from(size).unwrap_or(u64::MAX).max(1);
        let hit = |e: &Entry<K>| (e.key, addr.wrapping_sub(e.base));
        if let Some(Some(e)) = self.entries.get(self.last.get()) {
            if e.contains(addr, size) {
                return Some(hit(e));
            }
        }
        let (i, e) = self
            .entries
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.as_ref().filter(|e| e.contains(addr, size)).map(|e| (i, e)))?;
        self.last.set(i);
        Some(hit(e))
    }

    /// Perform a guest read; returns whether a device claimed it.
    pub fn read<D: DeviceMap<K> + ?Sized>(
        &mut self,
        devices: &mut D,
        addr: u64,
        data: &mut [u8],
    ) -> bool {
        match self.resolve(addr, data.len()) {
            Some((key, offset)) => {
                devices.read(key, offset, data);
                true
            }
            None => {
                data.fill(0xff);
                self.unclaimed_reads = self.unclaimed_reads.wrapping_add(1);
                false
            }
        }
    }

    /// Perform a guest write; returns whether a device claimed it.
    pub fn write<D: DeviceMap<K> + ?Sized>(
        &mut self,
        devices: &mut D,
        addr: u64,
        data: &[u8],
    ) -> bool {
        match self.resolve(addr, data.len()) {
            Some((key, offset)) => {
                devices.write(key, offset, data);
                true
            }
            None => {
                self.unclaimed_writes = self.unclaimed_writes.wrapping_add(1);
                false
            }
        }
    }

    /// Reads that no range claimed (they returned all-ones).
    pub fn unclaimed_reads(&self) -> u64 {
        self.unclaimed_reads
    }

    /// Writes that no range claimed (they were dropped).
    pub fn unclaimed_writes(&self) -> u64 {
        self.unclaimed_writes
    }
}

#[cfg(test)]
mod tests {
    use super::{Bus, BusDevice, BusError, DeviceMap};

    /// A device that remembers the last access and reads back its offset.
    #[derive(Default)]
    struct Probe {
        last_write: Option<(u64, u8)>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data[0]));
        }
    }

    /// Two probes behind keys 0 and 1.
    #[derive(Default)]
    struct Two([Probe; 2]);

    impl DeviceMap<usize> for Two {
        fn read(&mut self, key: usize, offset: u64, data: &mut [u8]) {
            self.0[key].read(offset, data);
        }
        fn write(&mut self, key: usize, offset: u64, data: &[u8]) {
            self.0[key].write(offset, data);
        }
    }

    #[test]
    fn rejects_empty_wrapping_overlapping_and_full() {
        let mut bus: Bus<usize, 2> = Bus::new();
        assert_eq!(bus.insert(0x3f8, 0, 0), Err(BusError::Empty));
        assert_eq!(bus.insert(u64::MAX, 2, 0), Err(BusError::Wraps));
        bus.insert(0x3f8, 8, 0).unwrap();
        assert_eq!(bus.insert(0x3f8, 8, 1), Err(BusError::Overlap { existing_base: 0x3f8 }));
        assert_eq!(bus.insert(0x3f0, 9, 1), Err(BusError::Overlap { existing_base: 0x3f8 }));
        assert_eq!(bus.insert(0x3ff, 1, 1), Err(BusError::Overlap { existing_base: 0x3f8 }));
        assert_eq!(bus.insert(0x3f9, 1, 1), Err(BusError::Overlap { existing_base: 0x3f8 }));
        // Touching ranges are fine on both sides.
        bus.insert(0x400, 4, 1).unwrap();
        assert_eq!(bus.insert(0x3f0, 8, 1), Err(BusError::Full));
        assert_eq!(bus.remove(0x400), Some(1));
        bus.insert(0x3f0, 8, 1).unwrap();
        // The top of the address space is usable.
        let mut top: Bus<(), 1> = Bus::new();
        top.insert(u64::MAX - 1, 1, ()).unwrap();
    }

    #[test]
    fn routes_by_key_and_offset() {
        let mut bus: Bus<usize, 4> = Bus::new();
        let mut devs = Two::default();
        bus.insert(0x20, 2, 0).unwrap();
        bus.insert(0xa0, 2, 1).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(&mut devs, 0xa1, &mut b));
        assert_eq!(b, [1]);
        assert!(bus.write(&mut devs, 0x21, &[0x5a]));
        assert_eq!(devs.0[0].last_write, Some((1, 0x5a)));
        assert_eq!(bus.resolve(0xa0, 2), Some((1, 0)));
    }

    /// The last-hit shortcut never answers for another range: alternating, repeated and
    /// missing addresses resolve exactly as a full scan would.
    #[test]
    fn repeated_and_alternating_accesses_resolve_as_a_scan_would() {
        let mut bus: Bus<usize, 4> = Bus::new();
        bus.insert(0x20, 2, 0).unwrap();
        bus.insert(0x40, 4, 1).unwrap();
        bus.insert(0xa0, 2, 2).unwrap();
        for _ in 0..3 {
            assert_eq!(bus.resolve(0x43, 1), Some((1, 3)));
            assert_eq!(bus.resolve(0x43, 1), Some((1, 3)));
            assert_eq!(bus.resolve(0x43, 2), None, "runs off the end of the cached range");
            assert_eq!(bus.resolve(0x21, 1), Some((0, 1)));
            assert_eq!(bus.resolve(0x30, 1), None);
            assert_eq!(bus.resolve(0xa0, 2), Some((2, 0)));
        }
    }

    #[test]
    fn unclaimed_reads_all_ones_and_writes_are_counted() {
        let mut bus: Bus<usize, 4> = Bus::new();
        let mut devs = Two::default();
        bus.insert(0x60, 1, 0).unwrap();
        let mut w = [0u8; 4];
        assert!(!bus.read(&mut devs, 0x80, &mut w));
        assert_eq!(w, [0xff; 4]);
        // A wide access that runs off the end of a range is not claimed either.
        let mut w2 = [0u8; 2];
        assert!(!bus.read(&mut devs, 0x60, &mut w2));
        assert_eq!(w2, [0xff; 2]);
        assert!(!bus.write(&mut devs, 0x80, &[1]));
        assert!(!bus.write(&mut devs, u64::MAX, &[1, 2]));
        assert_eq!(bus.unclaimed_reads(), 2);
        assert_eq!(bus.unclaimed_writes(), 2);
        assert_eq!(devs.0[0].last_write, None);
    }

    #[test]
    fn mmio_sized_ranges() {
        let mut bus: Bus<usize, 1> = Bus::new();
        let mut devs = Two::default();
        bus.insert(0xfee0_0000, 0x1000, 1).unwrap();
        assert!(bus.write(&mut devs, 0xfee0_0ff8, &[7; 8]));
        assert_eq!(devs.0[1].last_write, Some((0xff8, 7)));
        assert!(!bus.write(&mut devs, 0xfee0_0ffc, &[7; 8]));
    }
}
