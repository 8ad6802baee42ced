//! A debug-exit port: a guest ends its own run by writing an exit code, which the VMM
//! turns into a clean stop carrying that code. Test guests use it to report pass/fail
//! without a hypercall (it works from real mode and before any driver exists), the same
//! role QEMU's isa-debug-exit plays under TCG.

use crate::bus::BusDevice;

/// The conventional port (QEMU's isa-debug-exit default).
pub const DEFAULT_PORT: u16 = protocols::devices::DEBUG_EXIT_PORT;

/// The device: it remembers the first code written until the VMM takes it.
#[derive(Clone, Debug, Default)]
pub struct DebugExit {
    code: Option<u32>,
}

impl DebugExit {
    /// A device with no exit requested.
    pub const fn new() -> Self {
        Self { code: None }
    }

    /// The exit code written since the last call, if any.
    pub fn take_exit(&mut self) -> Option<u32> {
        self.code.take()
    }
}

impl BusDevice for DebugExit {
    /// Reads return zero: nothing to report.
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    /// The written bytes, little-endian, are the exit code (a 1-, 2- or 4-byte OUT).
    fn write(&mut self, _offset: u64, data: &[u8]) {
        let mut bytes = [0u8; 4];
        for (dst, src) in bytes.iter_mut().zip(data) {
            *dst = *src;
        }
        if self.code.is_none() {
            self.code = Some(u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BusDevice, DebugExit};

    #[test]
    fn first_write_wins_until_taken() {
        let mut d = DebugExit::new();
        assert_eq!(d.take_exit(), None);
        d.write(0, &[0x31]);
        d.write(0, &[0x99]);
        assert_eq!(d.take_exit(), Some(0x31));
        assert_eq!(d.take_exit(), None);
        d.write(0, &[0x01, 0x02, 0x03, 0x04, 0x05]);
        assert_eq!(d.take_exit(), Some(0x0403_0201));
        d.write(0, &[]);
        assert_eq!(d.take_exit(), Some(0));
        let mut b = [0xff; 2];
        d.read(0, &mut b);
        assert_eq!(b, [0, 0]);
    }
}
