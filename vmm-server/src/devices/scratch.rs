//! Scratch registers: 256 bytes of device memory that read back what was written. Test
//! tooling (built only with `test-modes`): the first device on the MMIO bus, so the whole
//! path from an EPT violation through the instruction decoder to a device and back into a
//! guest register is exercised before the real MMIO devices (LAPIC, IOAPIC) exist.

use crate::bus::BusDevice;

/// Bytes of scratch registers.
pub const SIZE: u64 = 0x100;
/// Where a test-modes VMM maps them for a test guest (never for Linux): the last 2 MiB
/// of the first GiB, which the 64-bit test guests identity-map and no test VM has RAM at.
pub const TEST_BASE: u64 = 0x3fe0_0000;

/// The register file.
#[derive(Clone, Debug)]
pub struct Scratch {
    bytes: [u8; SIZE as usize],
}

impl Default for Scratch {
    fn default() -> Self {
        Self { bytes: [0; SIZE as usize] }
    }
}

impl Scratch {
    /// The register file's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl BusDevice for Scratch {
    /// Bytes past the end read as all-ones, like an undriven bus.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut at = usize::try_from(offset).ok();
        for b in data.iter_mut() {
            *b = at.and_then(|i| self.bytes.get(i)).copied().unwrap_or(0xff);
            at = at.and_then(|i| i.checked_add(1));
        }
    }

    /// Bytes past the end are dropped.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut at = usize::try_from(offset).ok();
        for &b in data {
            if let Some(slot) = at.and_then(|i| self.bytes.get_mut(i)) {
                *slot = b;
            }
            at = at.and_then(|i| i.checked_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Scratch, SIZE};
    use crate::bus::BusDevice;

    #[test]
    fn reads_back_writes_and_ones_past_the_end() {
        let mut s = Scratch::default();
        s.write(0x30, &[1, 2, 3, 4]);
        let mut b = [0u8; 4];
        s.read(0x30, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        s.write(SIZE - 2, &[9; 4]);
        s.read(SIZE - 2, &mut b);
        assert_eq!(b, [9, 9, 0xff, 0xff]);
        s.read(u64::MAX, &mut b);
        assert_eq!(b, [0xff; 4]);
    }
}
